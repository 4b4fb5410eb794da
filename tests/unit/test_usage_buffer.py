"""The in-memory usage buffer and its spool files (tollway/spool.py), each for one store."""

from __future__ import annotations

import json

from authz.usage_buffer import UsageBuffer
from tollway import spool


def test_counts_per_key_and_window(tmp_path):
    """Requests are grouped by key id and window start; save/load round-trips them."""
    buf = UsageBuffer(60)
    buf.add("k1", 120.5)
    buf.add("k1", 179.9)
    buf.add("k1", 180.0)
    buf.add("k2", 61)
    assert len(buf) == 4
    path = buf.save(tmp_path, "w0", "store-a")
    assert path is not None and len(buf) == 0
    again = UsageBuffer(60)
    assert again.load(tmp_path, "store-a") == (4, [])
    assert sorted(again._sent.values()) == [("k1", 120, 2), ("k1", 180, 1), ("k2", 60, 1)]
    assert list(tmp_path.iterdir()) == []


def test_a_claimed_spool_is_loaded_once(tmp_path):
    """Two workers loading the same directory never both take the same file."""
    buf = UsageBuffer(60)
    buf.add("k1", 0, n=5)
    buf.save(tmp_path, "w0", "s")
    first, second = UsageBuffer(60), UsageBuffer(60)
    assert first.load(tmp_path, "s")[0] + second.load(tmp_path, "s")[0] == 5


def test_unreadable_lines_are_skipped_and_logged(tmp_path, caplog):
    """A corrupt spool line is logged and the rest still loads."""
    header = json.dumps({"spool": 1, "store": "s", "written": 1, "by": "x"})
    (tmp_path / "w.jsonl").write_text(
        f'{header}\n{{"source": "k", "window": 0, "n": 2}}\nnot json\n'
    )
    buf = UsageBuffer(60)
    assert buf.load(tmp_path, "s")[0] == 2
    assert "unreadable spool lines" in caplog.text


def test_empty_buffer_saves_nothing(tmp_path):
    """Nothing pending means no spool file."""
    assert UsageBuffer(60).save(tmp_path, "w0", "s") is None
    assert list(tmp_path.iterdir()) == []


async def test_length_follows_adds_flushes_and_saves(tmp_path):
    """len() stays equal to the pending requests through add, a partial flush and save."""

    class Pipe:
        def __init__(self, buf) -> None:
            self.buf = buf

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc) -> None:
            return None

        def execute_command(self, *args) -> None:
            return None

        async def execute(self, raise_on_error: bool = True) -> list[int]:
            self.buf.add("k9", 0, n=2)  # counted while the flush is in flight: must stay
            return [1, 1]

    class Redis:
        def __init__(self, buf) -> None:
            self.buf = buf

        def pipeline(self, transaction: bool = False):
            return Pipe(self.buf)

        def register_script(self, source: str):
            return Script(self)

    class Script:  # redis-py's registered script, as tollway.scripts.run_many uses it
        sha = "sha"

        def __init__(self, client) -> None:
            self.registered_client = client

    buf = UsageBuffer(60)
    buf.add("k1", 0, n=3)
    buf.add("k2", 70)
    assert len(buf) == 4
    assert await buf.flush(Redis(buf)) == 4
    assert len(buf) == 2 == sum(buf._counts.values())
    buf.save(tmp_path, "w", "s")
    assert len(buf) == 0
    assert buf.load(tmp_path, "s")[0] == 2 and len(buf) == 2


def test_a_write_id_survives_the_spool(tmp_path):
    """Counts that carry a write id (a settlement that may have reached Redis) keep it through
    save and load, so that the eventual write still counts them once."""
    buf = UsageBuffer(60)
    buf.add("k1", 61, n=4, write_id="abc")
    buf.add("k1", 62, n=1)
    buf.save(tmp_path, "w0", "s")
    again = UsageBuffer(60)
    assert again.load(tmp_path, "s")[0] == 5
    assert again._sent["abc"] == ("k1", 60, 4) and len(again._sent) == 2


def test_a_spool_of_another_store_or_of_none_is_left_and_reported(tmp_path):
    """Only the store's own files load; another store's, and a file from before stores had
    ids (no header: store unknown), stay where they are and come back as foreign."""
    mine, theirs = UsageBuffer(60), UsageBuffer(60)
    mine.add("k1", 0, n=2)
    theirs.add("k1", 0, n=7)
    mine.save(tmp_path, "a", "store-a")
    theirs.save(tmp_path, "b", "store-b")
    (tmp_path / "old.jsonl").write_text('{"key_id": "k", "window": 0, "n": 3}\n')
    buf = UsageBuffer(60)
    loaded, foreign = buf.load(tmp_path, "store-a")
    assert loaded == 2
    assert sorted((f.store, f.requests) for f in foreign) == [("", 3), ("store-b", 7)]
    assert len(list(tmp_path.glob("*.jsonl"))) == 2  # still there
    assert buf.load(tmp_path, "")[0] == 0  # a process that never read its store's id loads none


def test_a_count_without_a_write_id_gets_the_same_one_on_every_read(tmp_path):
    """(So a load cut short and run again adds nothing twice.)"""
    path = tmp_path / "old.jsonl"
    path.write_text('{"key_id": "k", "window": 0, "n": 3}\n{"key_id": "k", "window": 60, "n": 1}\n')
    first, second = spool.read(path), spool.read(path)
    assert [r.write_id for r in first.rows] == [r.write_id for r in second.rows]
    assert len({r.write_id for r in first.rows}) == 2
