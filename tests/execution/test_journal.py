"""The write-ahead journal: replay, torn tails, compaction, a writer killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trader.execution.journal import PREALLOCATED_BYTES, Journal, read_journal


def _intent(n: int) -> dict:
    return {"strategy": "s", "product_id": "BTC-USD", "side": "BUY", "size": f"0.{n:03d}"}


def test_entries_replay_with_their_latest_state(tmp_path: Path):
    journal = Journal(tmp_path / "journal.jsonl")
    assert journal.open().entries == {}
    journal.intent("a", _intent(1))
    journal.sent("a", "order-a")
    journal.intent("b", _intent(2))
    journal.unknown("b", "timeout")
    journal.intent("c", _intent(3))
    journal.final("c", "REJECTED", "post only would cross")
    journal.close()

    replay = Journal(tmp_path / "journal.jsonl").open()
    a, b, c = (replay.entries[k] for k in "abc")
    assert (a.state, a.order_id, a.intent) == ("sent", "order-a", _intent(1))
    assert b.state == "unknown" and b.order_id is None
    assert (c.state, c.status, c.open) == ("final", "REJECTED", False)
    assert [e.cid for e in replay.open_entries()] == ["a", "b"]


def test_a_repeated_intent_keeps_the_first_and_later_records_never_reopen(tmp_path: Path):
    journal = Journal(tmp_path / "j")
    journal.open()
    journal.intent("a", _intent(1))
    journal.intent("a", _intent(9))
    journal.final("a", "FILLED")
    journal.sent("a", "late-ack")
    journal.sent("ghost", "x")
    replay = read_journal(tmp_path / "j")
    entry = replay.entries["a"]
    assert entry.intent == _intent(1) and entry.state == "final" and entry.order_id is None
    assert replay.orphan_records == 1


def test_only_a_reopen_record_reopens_a_final_entry_and_compaction_keeps_it_open(
        tmp_path: Path):
    journal = Journal(tmp_path / "j")
    journal.open()
    journal.intent("a", _intent(1))
    journal.final("a", "REJECTED", "UNKNOWN_FAILURE_REASON")
    journal.reopen("a", "order-a")
    entry = read_journal(tmp_path / "j").entries["a"]
    assert (entry.state, entry.status, entry.order_id, entry.open) == ("sent", None,
                                                                       "order-a", True)
    journal.compact([entry])
    journal.final("a", "FILLED")
    journal.close()
    entry = read_journal(tmp_path / "j").entries["a"]
    assert (entry.state, entry.status, entry.order_id) == ("final", "FILLED", "order-a")


def _tear_at_records_end(path: Path, torn: bytes) -> None:
    data = path.read_bytes()
    end = data.rindex(b"\n") + 1
    assert len(data) - end >= PREALLOCATED_BYTES // 2 and data.count(0, end) == len(data) - end
    with path.open("r+b") as handle:  # the crash came mid-write, into the zeros ahead
        handle.seek(end)
        handle.write(torn)


def _tear_at_file_end(path: Path, torn: bytes) -> None:
    with path.open("ab") as handle:  # a file written before the zeros ahead: torn at its end
        handle.write(torn)


@pytest.mark.parametrize("tear", [_tear_at_records_end, _tear_at_file_end])
def test_a_torn_last_line_is_skipped_counted_and_zeroed_before_writing(tmp_path: Path, tear):
    path = tmp_path / "j"
    journal = Journal(path)
    journal.open()
    journal.intent("a", _intent(1))
    journal.close()
    tear(path, b'{"t":"intent","cid":"b","inte')
    journal = Journal(path)
    replay = journal.open()
    assert list(replay.entries) == ["a"] and replay.torn_lines == 1
    journal.sent("a", "order-a")
    journal.close()
    again = read_journal(path)
    assert again.torn_lines == 0 and again.entries["a"].order_id == "order-a"


def test_records_past_the_zeros_written_ahead_extend_the_file(tmp_path: Path):
    path = tmp_path / "j"
    journal = Journal(path)
    journal.open()
    pad = "x" * 1000
    n = 3 * PREALLOCATED_BYTES // 1000
    for i in range(n):
        journal.intent(f"c{i}", {"n": i, "pad": pad})
    journal.close()
    replay = Journal(path).open()
    assert len(replay.entries) == n and replay.torn_lines == 0
    assert [e.intent["n"] for e in replay.entries.values()] == list(range(n))


def test_compaction_keeps_open_entries_only_and_the_file_stays_appendable(tmp_path: Path):
    path = tmp_path / "j"
    journal = Journal(path)
    journal.open()
    for cid in "abc":
        journal.intent(cid, _intent(ord(cid)))
    journal.sent("a", "order-a")
    journal.unknown("b", "5xx")
    journal.final("c", "FILLED")
    journal.compact(read_journal(path).open_entries())
    journal.final("a", "CANCELLED")
    journal.close()
    replay = read_journal(path)
    assert set(replay.entries) == {"a", "b"}
    assert replay.entries["a"].state == "final" and replay.entries["b"].state == "unknown"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


WRITER = """
import sys
from pathlib import Path
from trader.execution.journal import Journal
journal = Journal(Path(sys.argv[1]))
journal.open()
n = 0
while True:
    journal.intent(f"cid-{n}", {"n": n, "pad": "x" * 200})
    journal.sent(f"cid-{n}", f"order-{n}")
    n += 1
"""


def test_a_writer_killed_at_random_moments_leaves_a_replayable_journal(tmp_path: Path):
    path = tmp_path / "j"
    for delay_s in (0.05, 0.11, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        replay = read_journal(path)
        assert replay.torn_lines <= 1 and replay.orphan_records == 0
        ids = sorted(int(cid.split("-")[1]) for cid in replay.entries)
        assert ids == list(range(len(ids)))  # every run restarts at 0: no gaps, no duplicates
        assert all(e.order_id in (None, f"order-{e.intent['n']}")
                   for e in replay.entries.values())
