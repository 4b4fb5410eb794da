"""The tier table validator: exact messages naming file, tier and field, one fixture per failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main as cli
from tollway.tiers import (
    LimiterKind,
    OnStoreError,
    OverQuota,
    TierError,
    load_tiers,
    parse_tiers,
)

HERE = Path(__file__).parent / "tiers"
KNOWN = (
    "auto_recharge, bill_statuses, buckets, burst, credit_packs, credits_expire_days, "
    "credits_per_request, credits_per_unit, "
    "currency, description, dry_run, features, free_signup, interval, "
    "lease_tokens, "
    "limiter, low_credits, max_concurrent, meter_event, monthly_quota, on_store_error, over_quota, overage_unit_amount, "
    "per_day, per_hour, prepaid, price_amount, refund_quota, report, requests_per_second, "
    "stripe_prices, "
    "usage_meter, "
    "usage_unit_amount"
)


def test_valid_table_loads_every_field():
    """A valid file yields typed tiers with defaults filled in."""
    table = load_tiers(HERE / "valid.toml")
    free, pro = table.get("free"), table.get("pro")
    assert free is not None and pro is not None
    assert (free.requests_per_second, free.burst, free.monthly_quota) == (2.0, 5, 1000)
    assert free.over_quota is OverQuota.BLOCK
    assert free.on_store_error is OnStoreError.DENY and free.dry_run is False
    assert free.features == frozenset() and free.stripe_prices == ()
    assert pro.features == frozenset({"reports"}) and pro.stripe_prices == ("price_pro",)
    assert pro.on_store_error is OnStoreError.ALLOW and pro.dry_run is True


def test_shipped_example_is_valid():
    """The tiers.toml that ships with the package passes its own validator."""
    from tollway.settings import DEFAULT_TIERS

    assert len(load_tiers(DEFAULT_TIERS)) >= 2


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("unknown_field.toml", [f'tier "free": field "burts": unknown field (known: {KNOWN})']),
        ("wrong_type.toml", ['tier "free": field "burst": must be an integer >= 1, got \'5\'']),
        (
            "negative_quota.toml",
            ['tier "free": field "monthly_quota": must be an integer >= 0 (0 = unlimited), got -1'],
        ),
        (
            "zero_rate.toml",
            ['tier "free": field "requests_per_second": must be a number > 0, got 0'],
        ),
        (
            "bad_choice.toml",
            ['tier "free": field "over_quota": must be "block" or "bill", got \'charge\''],
        ),
        ("missing_field.toml", ['tier "free": field "burst": is required']),
        (
            "duplicate_price.toml",
            ['tier "team": field "stripe_prices": price "price_1" is already used by tier "pro"'],
        ),
        ("no_tiers.toml", ['field "tiers": at least one [tiers.NAME] table is required']),
        (
            "bool_burst.toml",
            [
                'tier "free": field "burst": must be an integer >= 1, got True',
                'tier "free": field "dry_run": must be true or false, got \'yes\'',
            ],
        ),
        (
            "bad_features.toml",
            ['tier "free": field "features": must be a list of strings, got \'reports\''],
        ),
        (
            "bad_tier_name.toml",
            ['tier "Free Plan": tier names must match ^[a-z0-9][a-z0-9_-]{0,31}$'],
        ),
        (
            "unknown_top.toml",
            ['field "version": unknown top-level key (tiers go in [tiers.NAME] tables)'],
        ),
    ],
)
def test_invalid_tables_name_file_tier_and_field(fixture, expected):
    """Each failure mode is reported with the file, tier and field in an exact message."""
    path = HERE / fixture
    with pytest.raises(TierError) as err:
        load_tiers(path)
    assert err.value.problems == [f"{path}: {line}" for line in expected]


def test_overage_reporting_needs_a_quota():
    """report = "overage" with monthly_quota = 0 is a contradiction, named as such."""
    text = '[tiers.x]\nrequests_per_second = 1\nburst = 1\nmonthly_quota = 0\nover_quota = "bill"\nreport = "overage"\n'
    with pytest.raises(TierError) as err:
        parse_tiers(text, "t.toml")
    assert err.value.problems == [
        't.toml: tier "x": field "report": "overage" needs a monthly_quota > 0 to report usage past'
    ]
    ok = parse_tiers(text.replace("monthly_quota = 0", "monthly_quota = 10"), "t.toml")
    assert ok.get("x").report.value == "overage"


def test_not_toml_reports_the_parse_error():
    """A syntax error is reported against the file, not as a traceback."""
    path = HERE / "not_toml.toml"
    with pytest.raises(TierError) as err:
        load_tiers(path)
    assert err.value.problems[0].startswith(f"{path}: not valid TOML: ")


def test_missing_file_is_a_tier_error(tmp_path):
    """An unreadable path gives a TierError naming it."""
    with pytest.raises(TierError, match="cannot read"):
        load_tiers(tmp_path / "nope.toml")


def test_non_finite_rate_is_rejected():
    """inf and nan are valid TOML floats but not usable refill rates."""
    text = (
        '[tiers.x]\nrequests_per_second = inf\nburst = 1\nmonthly_quota = 0\nover_quota = "bill"\n'
    )
    with pytest.raises(TierError, match="must be a number > 0, got inf"):
        parse_tiers(text, "t.toml")


def test_cli_tiers_check_exit_codes(capsys):
    """`tollway tiers check` prints ok and exits 0, or prints every problem and exits 1."""
    assert cli(["tiers", "check", str(HERE / "valid.toml")]) == 0
    assert "2 tiers ok" in capsys.readouterr().out
    assert cli(["tiers", "check", str(HERE / "bool_burst.toml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith(str(HERE)) for line in out)


def test_cli_entry_point_runs_as_a_program():
    """The installed console script validates a file (exit 1 with messages on stdout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "tiers", "check", str(HERE / "zero_rate.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert 'field "requests_per_second"' in proc.stdout


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ('limiter = "leased"', 'field "limiter": must be "exact" or "lease", got \'leased\''),
        ("lease_tokens = 5", 'field "lease_tokens": only applies with limiter = "lease"'),
        ('limiter = "lease"\nlease_tokens = 0', 'field "lease_tokens": must be an integer >= 1, got 0'),
        ('limiter = "lease"\nlease_tokens = 11', 'field "lease_tokens": must be <= burst (10), got 11'),
    ],
)  # fmt: skip
def test_lease_fields_are_validated(fields, problem):
    text = f'[tiers.x]\nrequests_per_second = 1\nburst = 10\nmonthly_quota = 0\nover_quota = "bill"\n{fields}\n'
    with pytest.raises(TierError) as err:
        parse_tiers(text, "t.toml")
    assert err.value.problems == [f't.toml: tier "x": {problem}']


def test_lease_size_defaults_to_a_tenth_of_the_burst():
    base = '[tiers.x]\nrequests_per_second = 1\nmonthly_quota = 0\nover_quota = "bill"\n'
    lease = parse_tiers(base + 'burst = 250\nlimiter = "lease"\n', "t").tiers["x"]
    assert (lease.limiter, lease.lease_tokens) == (LimiterKind.LEASE, 25)
    assert parse_tiers(base + 'burst = 5\nlimiter = "lease"\n', "t").tiers["x"].lease_tokens == 1
    assert parse_tiers(base + "burst = 250\n", "t").tiers["x"].lease_tokens == 0


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("price_amount = -1", 'field "price_amount": must be an integer >= 0 (minor units), got -1'),
        ("price_amount = 900", 'field "stripe_prices": a tier with price_amount needs a lookup key first'),
        ('price_amount = 900\nstripe_prices = ["x"]\ncurrency = "USD"', 'field "currency": must be a 3-letter'),
        ('price_amount = 900\nstripe_prices = ["x"]\ninterval = "week"', 'field "interval": must be "month" or "year"'),
        ('overage_unit_amount = "0.05"', 'field "overage_unit_amount": needs price_amount'),
        ('price_amount = 0\nstripe_prices = ["x"]\noverage_unit_amount = "-1"', 'field "overage_unit_amount": must be a decimal'),
    ],
)  # fmt: skip
def test_stripe_fields_are_validated(fields, problem):
    text = f'[tiers.x]\nrequests_per_second = 1\nburst = 10\nmonthly_quota = 0\nover_quota = "bill"\n{fields}\n'
    with pytest.raises(TierError) as err:
        parse_tiers(text, "t.toml")
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(
        f't.toml: tier "x": {problem}'
    )


def test_a_paid_tier_reads_its_stripe_fields():
    text = ('[tiers.pro]\nrequests_per_second = 1\nburst = 10\nmonthly_quota = 1000\nover_quota = "bill"\n'
            'stripe_prices = ["tollway_pro_monthly"]\nprice_amount = 2900\noverage_unit_amount = 0.05\n')  # fmt: skip
    tier = parse_tiers(text, "t").tiers["pro"]
    assert (tier.price_amount, tier.currency, tier.interval, tier.overage_unit_amount) == (
        2900,
        "usd",
        "month",
        "0.05",
    )


def test_free_signup_is_for_tiers_without_a_price():
    base = '[tiers.t]\nrequests_per_second = 1.0\nburst = 1\nmonthly_quota = 10\nover_quota = "block"\n'
    assert parse_tiers(base + "free_signup = true\n", "t").get("t").free_signup  # type: ignore[union-attr]
    for extra in ('free_signup = "yes"\n',
                  'free_signup = true\nstripe_prices = ["x_y"]\nprice_amount = 100\n'):  # fmt: skip
        with pytest.raises(TierError, match="free_signup"):
            parse_tiers(base + extra, "t")


@pytest.mark.parametrize(
    ("minor", "currency", "want"),
    [(2900, "usd", "$29.00"), ("0.05", "usd", "$0.0005"), (0, "usd", "$0.00"),
     (123456, "eur", "€1,234.56"), (500, "jpy", "¥500"), (500, "krw", "500 KRW"),
     ("1250", "chf", "12.50 CHF"), ("0.002", "gbp", "£0.00002")],
)  # fmt: skip
def test_money_is_labelled_in_major_units(minor, currency, want):
    """Minor units (and decimals of them) read as the currency's major unit, exactly."""
    from tollway.money import money

    assert money(minor, currency) == want


def test_the_readme_tier_example_is_the_one_derived_from_the_declarations():
    """Each tier field is declared once: the README's example is generated from it, names
    every field, and is itself a valid tier."""
    from tollway.tiers import TIER_FIELDS, tier_example

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = tier_example()
    assert f"```toml\n{example}\n```" in readme, "regenerate it: tollway.tiers.tier_example()"
    named = {line.lstrip("# ").split(" = ")[0] for line in example.splitlines()[1:]}
    assert named == {f.name for f in TIER_FIELDS}
    assert parse_tiers(example, "README").get("pro") is not None


def test_the_shipped_tier_file_documents_every_field():
    """The header of tollway/data/tiers.toml explains every field a tier can set."""
    from tollway.settings import DEFAULT_TIERS
    from tollway.tiers import TIER_FIELDS

    header = [line for line in DEFAULT_TIERS.read_text().splitlines() if line.startswith("#")]
    documented = " ".join(header)
    missing = [f.name for f in TIER_FIELDS if f.name not in documented]
    assert missing == []


def test_defaults_come_from_the_declaration():
    """A tier that sets only what is required gets each field's declared default."""
    from dataclasses import MISSING

    from tollway.tiers import TIER_FIELDS

    table = parse_tiers(
        '[tiers.t]\nrequests_per_second = 1\nburst = 2\nmonthly_quota = 0\nover_quota = "bill"',
        "t",
    )
    tier = table.get("t")
    assert tier is not None
    for f in TIER_FIELDS:
        if f.default is not MISSING:
            assert getattr(tier, f.name) == f.default, f.name


BASE = '[tiers.x]\nrequests_per_second = 1\nburst = 10\nmonthly_quota = 0\nover_quota = "bill"\n'


def test_the_issue_s_free_tier_can_be_written():
    """1,000 requests a day, 2 at a time, and /v1/reports at 1 per second (a report costs 5)."""
    free = parse_tiers(
        BASE + "per_day = 1000\nmax_concurrent = 2\n"
        "[tiers.x.buckets.reports]\nrequests_per_second = 5.0\nburst = 5\n",
        "t.toml",
    ).tiers["x"]
    assert (free.per_day, free.max_concurrent) == (1000, 2)
    reports = free.bucket("reports")
    assert reports is not None and (reports.requests_per_second, reports.burst) == (5.0, 5)
    assert free.bucket("search") is None and free.bucket(None) is None  # the default bucket
    shipped = load_tiers(Path(__file__).parents[2] / "tollway" / "data" / "tiers.toml")
    assert shipped.tiers["free"].bucket("reports") is not None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("max_concurrent = -1", 'field "max_concurrent": must be an integer >= 0 (0 = none), got -1'),
        ('max_concurrent = 2\nlimiter = "lease"',
         'field "max_concurrent": needs limiter = "exact": every request takes its slot in Redis at its check'),
        ("buckets = 3", 'field "buckets": must be a table of [buckets.NAME] tables, got 3'),
        ("[tiers.x.buckets.Reports]\nrequests_per_second = 1\nburst = 1",
         'field "buckets": bucket "Reports": bucket names must match ^[a-z0-9][a-z0-9_-]{0,31}$'),
        ("[tiers.x.buckets.r]\nrequests_per_second = 1",
         'field "buckets": bucket "r": takes exactly requests_per_second and burst; missing: burst'),
        ("[tiers.x.buckets.r]\nrequests_per_second = 1\nburst = 1\nrate = 2",
         'field "buckets": bucket "r": takes exactly requests_per_second and burst; unknown: rate'),
        ("[tiers.x.buckets.r]\nrequests_per_second = 0\nburst = 1",
         'field "buckets": bucket "r": must be a number > 0, got 0'),
        ("[tiers.x.buckets.r]\nrequests_per_second = 1\nburst = 0",
         'field "buckets": bucket "r": must be an integer >= 1, got 0'),
    ],
)  # fmt: skip
def test_concurrency_and_bucket_fields_are_validated(fields, problem):
    with pytest.raises(TierError) as err:
        parse_tiers(BASE + fields + "\n", "t.toml")
    assert err.value.problems == [f't.toml: tier "x": {problem}']


PREPAID = """
[tiers.payg]
requests_per_second = 5.0
burst = 10
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 2
credits_per_unit = 1
[tiers.payg.credit_packs.starter]
credits = 1000
price_amount = 500
"""


def test_a_prepaid_tier_reads_its_credits_and_packs():
    """A prepaid tier's fields read as written, and its packs are found by name."""
    tier = parse_tiers(PREPAID, "t.toml").get("payg")
    assert tier is not None and tier.prepaid
    assert (tier.credits_per_request, tier.credits_per_unit) == (2, 1)
    pack = tier.pack("starter")
    assert pack is not None and (pack.credits, pack.price_amount) == (1000, 500)
    assert tier.pack("nope") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('prepaid = false', 'field "credits_per_request": only applies with prepaid = true'),
        ('stripe_prices = ["x"]',
         'field "prepaid": a prepaid tier is paid by its credits: it has no stripe_prices'),
        ('usage_meter = "tokens"',
         'field "prepaid": a prepaid tier is paid by its credits: it has no usage_meter'),
        ('credits_per_request = 0', 'field "credits_per_request": must be an integer >= 1, got 0'),
        ('credit_packs = { big = { credits = 0, price_amount = 5 } }',
         'field "credit_packs": credit pack "big": credits must be an integer from 1 to '
         '1000000000000, got 0'),
        ('credit_packs = { big = { credits = 5 } }',
         'field "credit_packs": credit pack "big": takes exactly credits and price_amount; '
         'missing: price_amount'),
    ],
)  # fmt: skip
def test_prepaid_tier_problems_are_named(change, problem):
    """A prepaid tier's contradictions and bad packs are named in the tier table's words."""
    base = PREPAID.split("[tiers.payg.credit_packs")[0]
    key = change.split(" = ")[0]
    lines = [line for line in base.splitlines() if not line.startswith(key + " ")]
    text = "\n".join(lines) + "\n" + change + "\n"
    with pytest.raises(TierError) as err:
        parse_tiers(text, "t.toml")
    assert err.value.problems == [f't.toml: tier "payg": {problem}']
