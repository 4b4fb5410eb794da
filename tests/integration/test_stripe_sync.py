"""`tollway stripe sync` against the Stripe stand-in: the first run creates Products, Prices and
the Billing Meter; the second changes nothing; a changed amount replaces one Price and moves
its lookup key; --dry-run changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from cli import stripe_sync
from cli.main import main as cli
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration
TIERS = """
[tiers.free]
requests_per_second = 1.0
burst = 5
monthly_quota = 1000
over_quota = "block"

[tiers.pro]
requests_per_second = 20.0
burst = 40
monthly_quota = 100000
over_quota = "bill"
stripe_prices = ["tollway_pro_monthly"]
price_amount = 2900
overage_unit_amount = "0.05"

[tiers.team]
requests_per_second = 50.0
burst = 100
monthly_quota = 0
over_quota = "bill"
stripe_prices = ["tollway_team_monthly"]
price_amount = 9900
interval = "year"
"""


def counts(world) -> tuple[int, int, int]:
    return (len(world.objects["product"]), len(world.objects["price"]),
            len(world.objects["billing.meter"]))  # fmt: skip


async def test_sync_creates_then_changes_nothing_then_replaces_a_price(standin):
    s, client, _ = standin
    table = parse_tiers(TIERS, "tiers.toml")
    first = await stripe_sync.plan(client, table)
    assert [(c.action, c.kind, c.key) for c in first] == [
        ("create", "meter", "api_requests"),
        ("create", "product", "tollway_pro"),
        ("create", "price", "tollway_pro_monthly"),
        ("create", "price", "tollway_pro_monthly_usage"),
        ("create", "product", "tollway_team"),
        ("create", "price", "tollway_team_monthly"),
    ]
    assert await stripe_sync.apply(client, first) == 6
    assert counts(s.world) == (2, 3, 1)  # the free tier gets nothing

    usage = (
        await client.v1.prices.list_async({"lookup_keys": ["tollway_pro_monthly_usage"]})
    ).data[0]
    assert usage.recurring.usage_type == "metered"
    assert usage.recurring.meter == next(iter(s.world.objects["billing.meter"]))
    assert [(t.up_to, str(t.unit_amount_decimal)) for t in usage.tiers] == [
        (100000, "0"),
        (None, "0.05"),
    ]

    second = await stripe_sync.plan(client, table)
    assert {c.action for c in second} == {"unchanged"} and len(second) == 6
    assert await stripe_sync.apply(client, second) == 0
    assert counts(s.world) == (2, 3, 1)

    changed = parse_tiers(TIERS.replace("price_amount = 2900", "price_amount = 3900"), "tiers.toml")
    third = await stripe_sync.plan(client, changed)
    assert [(c.action, c.key) for c in third if c.action != "unchanged"] == [
        ("replace", "tollway_pro_monthly")
    ]
    old = (await client.v1.prices.list_async({"lookup_keys": ["tollway_pro_monthly"]})).data[0]
    await stripe_sync.apply(client, third)
    new = (await client.v1.prices.list_async({"lookup_keys": ["tollway_pro_monthly"]})).data
    assert [p.unit_amount for p in new] == [3900] and new[0].id != old.id
    assert s.world.objects["price"][old.id]["lookup_key"] is None  # moved, not duplicated


async def test_the_cli_prints_the_plan_and_dry_run_changes_nothing(
    standin, tmp_path, monkeypatch, capsys
):
    s, _, base = standin
    path = tmp_path / "tiers.toml"
    path.write_text(TIERS)
    monkeypatch.setenv("TOLLWAY_STRIPE_API_BASE", base)

    async def sync(*flags: str) -> str:
        # The CLI runs its own event loop; this one keeps serving the stand-in meanwhile.
        assert await asyncio.to_thread(cli, ["stripe", "sync", "--tiers", str(path), *flags]) == 0
        return capsys.readouterr().out

    out = await sync("--dry-run")
    assert "create    product tollway_pro" in out and "nothing was applied" in out
    # Money in major units: 2900 cents is $29.00, an overage of 0.05 cents is $0.0005.
    assert "$29.00/month" in out and "then $0.0005 each" in out and "2900" not in out
    assert counts(s.world) == (0, 0, 0)
    assert "applied 6 change(s)" in await sync()
    assert "Stripe already matches the tier table." in await sync()
    assert counts(s.world) == (2, 3, 1)


async def test_a_tier_with_a_usage_meter_gets_that_meter_and_a_price_per_unit(standin):
    """usage_meter + usage_unit_amount: a second Billing Meter, and a metered per-unit Price
    on it, next to the flat one; a second run changes nothing."""
    s, client, _ = standin
    table = parse_tiers(
        """
[tiers.ai]
requests_per_second = 10.0
burst = 20
monthly_quota = 0
over_quota = "bill"
stripe_prices = ["tollway_ai_monthly"]
price_amount = 900
usage_meter = "tokens"
usage_unit_amount = "0.002"
""",
        "tiers.toml",
    )
    first = await stripe_sync.plan(client, table)
    assert [(c.action, c.kind, c.key) for c in first] == [
        ("create", "meter", "tokens"), ("create", "product", "tollway_ai"),
        ("create", "price", "tollway_ai_monthly"), ("create", "price", "tollway_ai_monthly_tokens"),
    ]  # fmt: skip
    await stripe_sync.apply(client, first)
    (price,) = (
        await client.v1.prices.list_async({"lookup_keys": ["tollway_ai_monthly_tokens"]})
    ).data
    (meter,) = [m for m in s.world.objects["billing.meter"].values() if m["event_name"] == "tokens"]
    assert price.recurring.usage_type == "metered" and price.recurring.meter == meter["id"]
    assert str(price.unit_amount_decimal) == "0.002"
    again = await stripe_sync.plan(client, table)
    assert {c.action for c in again} == {"unchanged"}


async def test_a_prepaid_tier_gets_a_one_time_price_per_pack(standin):
    """credit_packs: the tier's Product and a one-time Price per pack (lookup key
    tollway_<tier>_<pack>, the pack's amount); a second run changes nothing; a changed amount
    replaces that Price."""
    _, client, _ = standin
    text = """
[tiers.payg]
requests_per_second = 10.0
burst = 20
monthly_quota = 0
over_quota = "block"
prepaid = true
[tiers.payg.credit_packs.starter]
credits = 1000
price_amount = 500
"""
    first = await stripe_sync.plan(client, parse_tiers(text, "tiers.toml"))
    assert [(c.action, c.kind, c.key, c.detail) for c in first] == [
        ("create", "product", "tollway_payg", "tollway payg"),
        ("create", "price", "tollway_payg_starter", "$5.00 for 1,000 credits"),
    ]
    await stripe_sync.apply(client, first)
    (price,) = (await client.v1.prices.list_async({"lookup_keys": ["tollway_payg_starter"]})).data
    assert (price.type, price.unit_amount, price.recurring) == ("one_time", 500, None)
    again = await stripe_sync.plan(client, parse_tiers(text, "tiers.toml"))
    assert {c.action for c in again} == {"unchanged"}
    dearer = await stripe_sync.plan(
        client, parse_tiers(text.replace("price_amount = 500", "price_amount = 600"), "t")
    )
    assert [c.action for c in dearer if c.kind == "price"] == ["replace"]
