"""`tollway keys ...` against a real Redis: output, exit codes and state changes."""

from __future__ import annotations

import json

import pytest

from cli.main import main as cli
from tollway.keys import parse_key, pepper_fingerprint
from tollway.redis_client import connect_sync

pytestmark = pytest.mark.integration


@pytest.fixture
def run(redis_server, tiers_file, capsys):
    with connect_sync(redis_server) as r:
        r.flushdb()

    def go(*argv: str) -> tuple[int, str, str]:
        code = cli([*argv, "--redis-url", redis_server, "--tiers", str(tiers_file)])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_create_prints_only_the_key(run):
    """keys create prints exactly one line on stdout: a valid key."""
    code, out, err = run("keys", "create", "--tier", "pro", "--customer", "cus_42")
    assert code == 0
    assert len(out.splitlines()) == 1 and parse_key(out.strip()) is not None
    assert "cus_42" in err


def test_create_test_key(run):
    """--test issues a tw_test_ key."""
    code, out, _ = run("keys", "create", "--tier", "free", "--test")
    assert code == 0 and out.startswith("tw_test_")


def test_create_rejects_unknown_tier(run):
    """An unknown tier is exit 1 with a one-line error naming the tiers."""
    code, out, err = run("keys", "create", "--tier", "platinum")
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "tollway: unknown tier 'platinum' (tiers: free, pro, business, capped, resilient, shadow, big)"
    )


def test_show_by_key_and_by_id_never_prints_the_key(run):
    """keys show prints the record as JSON, without the key or its digest."""
    _, key, _ = run("keys", "create", "--tier", "pro", "--customer", "cus_7")
    key = key.strip()
    code, out, _ = run("keys", "show", key)
    record = json.loads(out)
    assert code == 0 and record["customer"] == "cus_7" and record["status"] == "active"
    assert "hash" not in record and key not in out
    code, out2, _ = run("keys", "show", record["key_id"])
    assert code == 0 and json.loads(out2) == record


def test_suspend_resume_revoke(run):
    """suspend and resume flip the status; revoke is final."""
    _, key, _ = run("keys", "create", "--tier", "pro")
    key = key.strip()
    for action, status in [("suspend", "suspended"), ("resume", "active"), ("revoke", "revoked")]:
        code, _, err = run("keys", action, key)
        assert code == 0 and err.strip().endswith(f"is now {status}")
    code, _, err = run("keys", "resume", key)
    assert code == 1 and "is revoked; that is final" in err


@pytest.mark.parametrize("arg", ["0123456789abcdef", "tw_live_not_a_key", "garbage"])
def test_unknown_or_malformed_keys_exit_1(run, arg):
    """A missing or malformed key is a one-line error with exit code 1."""
    code, out, err = run("keys", "show", arg)
    assert code == 1 and out == "" and len(err.splitlines()) == 1


def test_unreachable_redis_is_a_clean_error(tiers_file, capsys):
    """No Redis: exit 1 and one line naming the URL, no traceback."""
    from devkit.stack import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    code = cli(["keys", "create", "--tier", "pro", "--redis-url", url, "--tiers", str(tiers_file)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"tollway: cannot reach Redis at {url}")
    assert len(err.strip().splitlines()) == 1


async def test_revocation_is_final_in_the_script(redis):
    """set_status.lua itself refuses to move a revoked key, whatever the caller checked first."""
    from tollway import schema, scripts
    from tollway.key_store import KeyStore
    from tollway.keys import KeyHasher
    from tollway.records import KeyStatus

    _, record = await KeyStore(redis, KeyHasher()).create("pro", "cus_1")
    script = scripts.register(redis, "set_status")
    name = schema.key_record(record.key_id, record.account)
    assert await script(keys=[name], args=[KeyStatus.REVOKED.value]) == scripts.Result.DONE
    assert await script(keys=[name], args=[KeyStatus.ACTIVE.value]) == scripts.Result.REVOKED
    assert await redis.hget(name, "status") == "revoked"
    missing = schema.key_directory("0123456789abcdef")
    assert await script(keys=[missing], args=["active"]) == scripts.Result.MISSING
    assert await redis.exists(schema.key_directory("0123456789abcdef")) == 0


def test_list_shows_prefix_and_state_never_the_key(run):
    """keys list --customer: one row per key, with its prefix; never the key itself."""
    keys = [run("keys", "create", "--tier", "pro", "--customer", "cus_l")[1].strip()
            for _ in range(2)]  # fmt: skip
    run("keys", "revoke", keys[0])
    code, out, _ = run("keys", "list", "--customer", "cus_l", "--json")
    rows = {r["prefix"]: r for r in json.loads(out)}  # issued in one second: any order
    assert code == 0 and set(rows) == {k[:12] for k in keys}
    assert [rows[k[:12]]["status"] for k in keys] == ["revoked", "active"]
    assert not any(k in out or k[12:20] in out for k in keys)
    code, out, _ = run("keys", "list", "--customer", "cus_l")
    assert code == 0 and out.count("tw_live_") == 2 and keys[0] not in out


def test_create_for_a_subscription_and_its_errors(run, redis_server):
    """--subscription takes the tier from the subscription's account; a subscription tollway
    has not heard of, or --tier beside it, is a one-line error."""
    code, _, err = run("keys", "create", "--subscription", "sub_unknown")
    assert code == 1 and "no state for subscription sub_unknown" in err
    with connect_sync(redis_server) as r:
        r.hset("tw:{sub_cli}:account", mapping={"customer": "cus_s", "subscription": "sub_cli",
                                                "tier": "business", "status": "active",
                                                "sync_version": "1"})  # fmt: skip
    code, _, err = run("keys", "create", "--subscription", "sub_cli", "--tier", "pro")
    assert code == 1 and "--tier comes from the subscription" in err
    code, out, err = run("keys", "create", "--subscription", "sub_cli")
    assert code == 0 and parse_key(out.strip()) and "tier business, account sub_cli" in err


def test_accounts_set_limits_validates_like_the_tier_table(run):
    run("keys", "create", "--tier", "pro", "--customer", "cus_v")
    code, _, err = run("accounts", "set-limits", "cus_v", "--burst", "0", "--rate", "fast")
    assert code == 1
    assert err.strip() == ('tollway: account cus_v: field "requests_per_second": must be a number '
                           "> 0, got 'fast'; account cus_v: field \"burst\": must be an integer "
                           ">= 1, got 0")  # fmt: skip
    assert run("accounts", "set-limits", "cus_none", "--burst", "2")[0] == 1
    assert run("accounts", "set-limits", "cus_v")[0] == 1  # nothing to set
    code, _, _ = run("accounts", "set-limits", "cus_v", "--quota", "10", "--features", "a,b")
    code, out, _ = run("accounts", "show", "cus_v", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["overrides"] == {"monthly_quota": "10", "features": "a,b"}
    assert shown["quota"] == 10 and shown["tier"] == "pro" and len(shown["keys"]) == 1


def test_accounts_set_tier_moves_a_customer_account(run):
    key = run("keys", "create", "--tier", "free", "--customer", "cus_t")[1].strip()
    code, _, err = run("keys", "create", "--tier", "pro", "--customer", "cus_t")
    assert code == 1 and "accounts set-tier cus_t TIER" in err
    assert run("accounts", "set-tier", "cus_t", "platinum")[0] == 1  # not in the table
    code, _, err = run("accounts", "set-tier", "cus_t", "pro")
    assert code == 0 and "(1 key(s))" in err
    code, out, _ = run("keys", "show", key)
    assert json.loads(out)["tier"] == "pro"
    assert run("keys", "create", "--tier", "pro", "--customer", "cus_t")[0] == 0


def test_accounts_suspend_and_resume(run):
    """accounts suspend lists every key of the account as suspended and refuses a new one;
    resume brings them back; an unknown account is one line and exit 1."""
    run("keys", "create", "--tier", "pro", "--customer", "cus_hold")
    code, _, err = run("accounts", "suspend", "cus_hold")
    assert code == 0 and "account cus_hold (1 key(s)) is suspended" in err
    _, out, _ = run("keys", "list", "--customer", "cus_hold", "--json")
    assert [r["status"] for r in json.loads(out)] == ["suspended"]
    code, _, err = run("keys", "create", "--tier", "pro", "--customer", "cus_hold")
    assert code == 1 and "account cus_hold is suspended by the operator" in err
    assert run("accounts", "resume", "cus_hold")[0] == 0
    _, out, _ = run("keys", "list", "--customer", "cus_hold", "--json")
    assert [r["status"] for r in json.loads(out)] == ["active"]
    code, _, err = run("accounts", "suspend", "cus_nobody")
    assert code == 1 and err.strip() == "tollway: no account cus_nobody"


def test_rotating_a_suspended_key_keeps_it_suspended(run):
    """keys suspend, then keys rotate --overlap 0: the successor lists as suspended."""
    _, key, _ = run("keys", "create", "--tier", "pro", "--customer", "cus_rot")
    run("keys", "suspend", key.strip())
    code, _, _ = run("keys", "rotate", key.strip(), "--overlap", "0")
    assert code == 0
    _, out, _ = run("keys", "list", "--customer", "cus_rot", "--json")
    assert sorted(r["status"] for r in json.loads(out)) == ["revoked", "suspended"]


def test_errors_are_one_line(run, monkeypatch):
    """No traceback: reconcile without Stripe, and a log level that is not one."""
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("TOLLWAY_STRIPE_API_BASE", raising=False)
    code, _, err = run("reconcile", "--customer", "cus_1", "--since", "2026-01-01")
    assert (
        code == 1
        and err == "tollway: set STRIPE_API_KEY (or TOLLWAY_STRIPE_API_BASE for the stand-in)\n"
    )
    monkeypatch.setenv("TOLLWAY_LOG_LEVEL", "verbose")
    code, _, err = run("keys", "list", "--customer", "cus_1")
    assert code == 1 and err.count("\n") == 1 and "TOLLWAY_LOG_LEVEL='verbose': expected one" in err


def test_a_redis_password_is_never_printed(capsys):
    code = cli(["keys", "list", "--customer", "c", "--redis-url", "redis://:hunter2@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert code == 1 and "hunter2" not in err and "redis://:***@127.0.0.1:1/0" in err
    assert err.count("\n") == 1


def test_a_closed_pipe_ends_quietly(redis_server, tiers_file, tmp_path):
    """`tollway keys list ... | head` after head exited: no "cannot reach Redis", no traceback."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cli", "keys", "list", "--customer", "cus_none",
             "--redis-url", redis_server, "--tiers", str(tiers_file)],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""


def test_peppers_counts_the_keys_still_under_an_earlier_pepper(run, monkeypatch):
    """keys peppers: the keys not revoked under each pepper; the earlier pepper becomes
    droppable once every such key was presented (here: shown by key) and moved."""
    p0, p1 = "cli-pepper-zero-0123456789", "cli-pepper-one-0123456789"
    monkeypatch.setenv("TOLLWAY_KEY_PEPPER", p0)
    keys = [
        run("keys", "create", "--tier", "free", "--customer", "cus_p")[1].strip() for _ in "abc"
    ]
    assert run("keys", "revoke", keys[2])[0] == 0
    monkeypatch.setenv("TOLLWAY_KEY_PEPPER", f"{p1},{p0}")
    f0, f1 = (pepper_fingerprint(p.encode()) for p in (p0, p1))

    def report() -> dict:
        code, out, _ = run("keys", "peppers")
        assert code == 0
        return json.loads(out)

    assert report() == {"in_force": f1, "earlier": [f0], "keys": {f0: 2},
                        "keys_unrecorded": 0, "droppable": []}  # fmt: skip
    assert run("keys", "show", keys[0])[0] == 0
    assert report()["keys"] == {f0: 1, f1: 1}
    assert run("keys", "show", keys[1])[0] == 0
    assert (report()["keys"], report()["droppable"]) == ({f1: 2}, [f0])
