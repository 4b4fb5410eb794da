"""Random tier tables (hypothesis): a TierTable or a TierError naming the problem, nothing else."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tollway.tiers import TierError, TierTable, parse_tiers

scalars = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.booleans(),
                    st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3))  # fmt: skip
FIELDS = ["requests_per_second", "burst", "monthly_quota", "over_quota", "features", "stripe_prices",
          "on_store_error", "dry_run", "meter_event", "report", "limiter", "lease_tokens", "nonsense"]  # fmt: skip


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


@st.composite
def tables(draw: st.DrawFn) -> str:
    names = draw(
        st.lists(st.one_of(st.sampled_from(["free", "pro"]), st.text(max_size=8)), max_size=3)
    )
    out = []
    for name in names:
        out.append(f"[tiers.{toml_value(name)}]")
        for field in draw(st.lists(st.sampled_from(FIELDS), max_size=len(FIELDS), unique=True)):
            out.append(f"{field} = {toml_value(draw(scalars))}")
    return "\n".join(out)


def assert_clear(text: str) -> None:
    try:
        table = parse_tiers(text, "fuzz.toml")
    except TierError as err:
        assert err.problems and all(p.startswith("fuzz.toml:") for p in err.problems)
        event("rejected")
    else:
        assert isinstance(table, TierTable) and len(table) >= 1
        event("accepted")


@settings(max_examples=300, deadline=None)
@given(tables())
def test_random_tier_tables_are_accepted_or_rejected_clearly(text: str) -> None:
    assert_clear(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text_is_rejected_clearly(text: str) -> None:
    assert_clear(text)


def test_a_valid_table_from_the_same_generator_parses():
    """The generator can produce accepted tables too, so the property is not only about errors."""
    text = '[tiers."pro"]\nrequests_per_second = 1.5\nburst = 3\nmonthly_quota = 0\nover_quota = "bill"'
    assert "pro" in parse_tiers(text, "fuzz.toml").tiers
