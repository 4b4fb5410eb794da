"""TierSource: one tier table per process, replaced whole on a good reload, kept on a bad one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

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


SOLO = (
    '[tiers.solo]\nrequests_per_second = 1.0\nburst = 1\nmonthly_quota = 0\nover_quota = "bill"\n'
)


def configmap_volume(root, text: str, version: int) -> None:
    """Write ``text`` as a Kubernetes ConfigMap volume does: into a new timestamped directory,
    then swap the ``..data`` symlink to it atomically (rename over the old link). The file
    the service reads, ``tiers.toml``, is a symlink through ``..data``, made once."""
    data = root / f"..2026_12_03_00_00_0{version}"
    data.mkdir()
    (data / "tiers.toml").write_text(text)
    link = root / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    if not (root / "tiers.toml").is_symlink():
        (root / "tiers.toml").symlink_to("..data/tiers.toml")


async def until(check, timeout_s: float = 10.0) -> None:
    """Wait for ``check()`` to hold: the watch runs every 0.05 s, the bound is for busy hosts."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the watch did not see the change"
        await asyncio.sleep(0.02)


async def test_a_configmap_update_is_followed_and_a_bad_one_refused(tmp_path):
    """The ConfigMap's symlink swap is seen and the table reloaded, as SIGHUP would; a bad
    table swapped in is refused whole and counted, and the good one stays; a good one after
    it is taken."""
    configmap_volume(tmp_path, TEST_TIERS, 1)
    seen: list[TierTable] = []
    source = TierSource(tmp_path / "tiers.toml", on_change=seen.append)
    source.follow(asyncio.get_running_loop(), interval_s=0.05)
    try:
        ok, rejected = reloads("ok"), reloads("rejected")
        configmap_volume(tmp_path, SOLO, 2)
        await until(lambda: list(source().tiers) == ["solo"])
        assert seen == [source()] and reloads("ok") == ok + 1
        configmap_volume(tmp_path, "[tiers.broken]\nburst = -1\n", 3)
        await until(lambda: reloads("rejected") == rejected + 1)
        assert list(source().tiers) == ["solo"] and len(seen) == 1
        configmap_volume(tmp_path, TEST_TIERS, 4)
        await until(lambda: source().get("free") is not None)
        assert reloads("ok") == ok + 2 and reloads("rejected") == rejected + 1
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        assert source._watch is not None
        source._watch.cancel()


@contextlib.asynccontextmanager
async def watched(tmp_path):
    """A TierSource on tmp_path/tiers.toml (TEST_TIERS), watched every 0.05 s while in use."""
    path = tmp_path / "tiers.toml"
    path.write_text(TEST_TIERS)
    source = TierSource(path)
    task = asyncio.ensure_future(source.watch(0.05))
    try:
        yield path, source
    finally:
        task.cancel()


async def test_an_edit_in_place_is_followed(tmp_path):
    async with watched(tmp_path) as (path, source):
        await asyncio.sleep(0.1)
        assert source().get("free") is not None  # nothing changed: nothing reloaded
        path.write_text(SOLO)
        await until(lambda: list(source().tiers) == ["solo"])


async def test_a_vanished_file_keeps_the_table_until_one_is_back(tmp_path):
    async with watched(tmp_path) as (path, source):
        rejected = reloads("rejected")
        path.unlink()
        await asyncio.sleep(0.2)  # several polls with no file: nothing reloaded or refused
        assert source().get("free") is not None and reloads("rejected") == rejected
        path.write_text(SOLO)
        await until(lambda: list(source().tiers) == ["solo"])
