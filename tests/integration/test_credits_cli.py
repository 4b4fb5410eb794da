"""`tollway credits show|grant|adjust` against a real Redis: the balance and ledger, an
operator's moves with a reason, once per --ref, and clear errors."""

from __future__ import annotations

import json

import pytest

from cli.main import main as cli
from tollway import schema
from tollway.redis_client import connect_sync

pytestmark = pytest.mark.integration


@pytest.fixture
def run(redis_server, tiers_file, capsys):
    with connect_sync(redis_server) as r:
        r.flushdb()
        r.hset(schema.account_state("free_1"), mapping={"tier": "free", "customer": "free_1"})

    def go(*argv: str) -> tuple[int, str, str]:
        code = cli([*argv, "--redis-url", redis_server, "--tiers", str(tiers_file)])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_grant_adjust_and_show(run):
    """A grant and an adjustment move the balance, each once per --ref; show lists them."""
    assert run("credits", "grant", "free_1", "500", "--reason", "welcome", "--ref", "r1")[0] == 0
    code, _, err = run("credits", "grant", "free_1", "500", "--reason", "welcome", "--ref", "r1")
    assert code == 0 and "applied before; nothing moved" in err
    code, _, err = run("credits", "adjust", "free_1", "-120", "--reason", "double count")
    assert code == 0 and "-120 credits, balance 380" in err
    code, out, _ = run("credits", "show", "free_1", "--json")
    shown = json.loads(out)
    assert (shown["balance"], shown["ledger_sum"]) == (380, 380)
    assert [(e["kind"], e["credits"], e["reason"]) for e in shown["ledger"]] == [
        ("adjustment", -120, "double count"), ("grant", 500, "welcome")
    ]  # fmt: skip
    code, out, _ = run("credits", "show", "free_1")
    assert code == 0 and out.splitlines()[0] == "account free_1: balance 380 credits"
    code, out, _ = run("audit", "--json")
    actions = [e["action"] for e in map(json.loads, out.splitlines())]
    assert actions.count("credits_grant") == 1 and actions.count("credits_adjustment") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("grant", "free_1", "-5", "--reason", "x"), "credits must be a non-zero integer from 1"),
        (("adjust", "free_1", "0", "--reason", "x"), "credits must be a non-zero integer"),
        (("grant", "free_1", "5", "--reason", "  "), "give a reason"),
        (("grant", "free_nobody", "5", "--reason", "x"), "no account free_nobody"),
    ],
)
def test_bad_moves_are_one_line_errors_and_move_nothing(run, argv, message):
    code, out, err = run("credits", *argv)
    assert code == 1 and out == "" and message in err
    assert json.loads(run("credits", "show", "free_1", "--json")[1])["balance"] == 0
