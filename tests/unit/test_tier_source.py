"""TierSource: one tier table per process, replaced whole on a good reload, kept on a bad one."""

from __future__ import annotations

import pytest

from metering.settings import MeteringSettings
from tests.support import TEST_TIERS
from tollway.settings import SettingsError, load
from tollway.tier_source import RELOADS, TierSource
from tollway.tiers import TierError, TierTable


def reloads(result: str) -> float:
    return RELOADS.labels(result)._value.get()


def test_a_good_reload_replaces_the_table_and_tells_listeners(tmp_path):
    """A valid file becomes the table in force, each listener gets it, and it is counted."""
    path = tmp_path / "tiers.toml"
    path.write_text(TEST_TIERS)
    seen: list[TierTable] = []
    source = TierSource(path, on_change=seen.append)
    assert source().get("free") is not None
    path.write_text(
        '[tiers.solo]\nrequests_per_second = 1.0\nburst = 1\nmonthly_quota = 0\nover_quota = "bill"\n'
    )
    before = reloads("ok")
    assert source.reload() is True
    assert list(source().tiers) == ["solo"] and seen == [source()]
    assert reloads("ok") == before + 1


def test_a_bad_reload_keeps_the_old_table_and_is_counted(tmp_path):
    """An invalid file is rejected whole: the old table stays, no listener hears of it."""
    path = tmp_path / "tiers.toml"
    path.write_text(TEST_TIERS)
    seen: list[TierTable] = []
    source = TierSource(path, on_change=seen.append)
    old = source()
    path.write_text("[tiers.broken]\nburst = 'x'\n")
    before = reloads("rejected")
    assert source.reload() is False
    assert source() is old and seen == []
    assert reloads("rejected") == before + 1


def test_a_bad_file_at_start_raises(tmp_path):
    """A service does not start on a bad tier table: construction raises TierError."""
    path = tmp_path / "tiers.toml"
    path.write_text("not toml [")
    with pytest.raises(TierError):
        TierSource(path)


def test_metering_sink_must_be_known():
    """TOLLWAY_METERING_SINK takes v1 or stream; anything else names the variable."""
    assert load(MeteringSettings, {"TOLLWAY_METERING_SINK": "stream"}).sink == "stream"
    with pytest.raises(SettingsError, match="TOLLWAY_METERING_SINK='v3'"):
        load(MeteringSettings, {"TOLLWAY_METERING_SINK": "v3"})
