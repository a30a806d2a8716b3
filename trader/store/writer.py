"""The daemon's event sink: rows into PostgreSQL in batches, never blocking the engine.

`write()` appends a row to its table's deque and returns. A flush task sends a table's rows once
`batch_rows` wait or the oldest is `flush_interval_ms` old; `Database` commits them (binary
COPY, or a staging upsert for keys already stored; see `trader.store.database`).

During an outage the connection is retried with capped full-jitter backoff while rows pile up;
past `max_buffer_rows` a table's oldest rows are spilled, in order, to `state_dir/spill/`
(format and crash safety: `trader.store.spill`). Spill files are replayed oldest first, before
any buffered row, also at the next start, and deleted once committed. A file that cannot be
read, and rows the database refuses, are kept as `*.failed` and reported, never dropped.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any

from trader.backoff import Backoff
from trader.config import StorageConfig
from trader.errors import describe_error
from trader.store.database import Database, Outage
from trader.store.schema import TABLES
from trader.store.spill import (
    SPILL_DIR,
    SpillError,
    SpillFile,
    read_spill,
    scan_spill_dir,
    write_spill,
)

log = logging.getLogger(__name__)


class Writer:
    """Buffers rows per table and commits them in batches (see the module docstring)."""

    name = "storage"

    def __init__(self, dsn: str, section: StorageConfig, state_dir: Path, *,
                 rng: random.Random | None = None, backoff_base_s: float = 0.25,
                 backoff_cap_s: float = 30.0, connect_timeout_s: float = 10.0,
                 command_timeout_s: float = 60.0, connections: int = 2,
                 monotonic: Callable[[], float] = time.monotonic,
                 observe_flush: Callable[[str, float], None] | None = None) -> None:
        self.dsn = dsn
        self.section = section
        self._batch_rows, self._max_rows = section.batch_rows, section.max_buffer_rows
        self.spill_dir = Path(state_dir) / SPILL_DIR
        self.last_error: str | None = None
        self.last_spill_error: str | None = None
        self.counters = collections.Counter[str]()
        self.rows_written = collections.Counter[str]()
        self._db = Database(dsn, connect_timeout_s=connect_timeout_s,
                            command_timeout_s=command_timeout_s, connections=connections,
                            counters=self.counters, rows_written=self.rows_written)
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self._monotonic = monotonic
        self._observe_flush = observe_flush  # (table, seconds a batch commit took)
        self._buffers: dict[str, collections.deque[tuple]] = {
            name: collections.deque() for name in TABLES}
        self._widths = {name: len(table.columns) for name, table in TABLES.items()}
        self._oldest_at: dict[str, float] = {}  # when each non-empty buffer got its oldest row
        self._pending: list[SpillFile] = []  # spill files to replay, in sequence order
        self._next_seq: int | None = None  # known once the spill directory was read
        self._head = asyncio.Lock()  # the oldest rows of a buffer: flushed or spilled, not both
        self._wake, self._pressure, self._settled = (asyncio.Event() for _ in range(3))
        self._draining = False
        self._rates = _Rates(monotonic)

    @property
    def mode(self) -> str | None:
        """The schema's mode, known once connected."""
        return self._db.mode

    # ---- intake (synchronous, on the engine's path) ------------------------------------------

    def write(self, table: str, row: tuple) -> None:
        """Queue one row, values in `TABLES[table].columns` order. Returns at once and never
        raises on a database problem; an unknown table or a wrong row width raise (a bug)."""
        buffer = self._buffers[table]
        if len(row) != self._widths[table]:
            raise ValueError(f"{table} rows have {self._widths[table]} values, got {len(row)}")
        if not buffer:
            self._oldest_at[table] = self._monotonic()
            self._wake.set()
        buffer.append(row)
        size = len(buffer)  # one row at a time: each limit is crossed at equality
        if size == self._batch_rows:
            self._wake.set()
        elif size == self._max_rows + 1:
            self._pressure.set()

    def write_many(self, table: str, rows: Iterable[tuple]) -> None:
        """Queue rows in order, as `write` does each."""
        rows = list(rows)
        width = self._widths[table]
        if any(len(row) != width for row in rows):
            raise ValueError(f"{table} rows have {width} values")
        buffer = self._buffers[table]
        if rows and not buffer:
            self._oldest_at[table] = self._monotonic()
            self._wake.set()
        buffer.extend(rows)
        self._check_size(len(buffer))

    def _check_size(self, size: int) -> None:
        if size >= self._batch_rows:
            self._wake.set()
        if size > self._max_rows:
            self._pressure.set()

    def apply(self, section: StorageConfig) -> None:
        """batch_rows, flush_interval_ms and max_buffer_rows apply at once (dsn: restart)."""
        self.section = section
        self._batch_rows, self._max_rows = section.batch_rows, section.max_buffer_rows
        self._wake.set()
        self._pressure.set()

    # ---- the tasks ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, migrate, replay spill files and flush until cancelled."""
        try:
            await self._open_spill_dir()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._guard(), name="storage-spill")
                group.create_task(self._session_loop(), name="storage-flush")
        finally:
            self._db.disconnect()
            self._spill_left_behind()

    async def drain(self) -> None:
        """Commit what the database takes now and spill the rest, so a stop loses nothing."""
        self._draining = True  # every non-empty buffer is due
        while self._db.connected and self._has_work():
            self._settled.clear()
            self._wake.set()
            await self._settled.wait()
        await self._open_spill_dir()
        async with self._head:
            for name, buffer in self._buffers.items():
                if buffer:
                    await self._spill(name, len(buffer))

    async def _session_loop(self) -> None:
        while True:
            connected = False
            try:
                await self._db.connect()
                self._backoff.reset()
                connected = True
                await self._flush_loop()
            except Outage as exc:
                self.counters["flush_failures" if connected else "connect_failures"] += 1
                self._note_error(str(exc))
            finally:
                self._db.disconnect()
            self._settled.set()  # a drain waiting on the database stops waiting
            await asyncio.sleep(self._backoff.next_s())

    async def _flush_loop(self) -> None:
        """Spill files first, oldest first; then due buffers, one batch at a time."""
        while True:
            if self._pending:
                await self._replay(self._pending[0])
                continue
            async with self._head:
                table = None if self._pending else self._due_table()
                if table is not None:
                    await self._flush_batch(table)
            if table is None and not self._pending:
                await self._wait_for_rows()

    def _due_table(self) -> str | None:
        """The buffer to flush next: full, or oldest past the interval (any, when draining)."""
        now = self._monotonic()
        age_s = self.section.flush_interval_ms / 1000
        for name, since in sorted(self._oldest_at.items(), key=itemgetter(1)):
            if (self._draining or now - since >= age_s
                    or len(self._buffers[name]) >= self._batch_rows):
                return name
        return None

    async def _wait_for_rows(self) -> None:
        self._wake.clear()
        self._settled.set()
        due_in = None
        if self._oldest_at:
            oldest = min(self._oldest_at.values())
            due_in = max(0.0, oldest + self.section.flush_interval_ms / 1000 - self._monotonic())
        try:
            async with asyncio.timeout(due_in):
                await self._wake.wait()
        except TimeoutError:
            pass  # the oldest buffer is due

    def _has_work(self) -> bool:
        return bool(self._pending) or any(self._buffers.values())

    # ---- committing ----------------------------------------------------------------------------

    async def _flush_batch(self, name: str) -> None:
        """Commit the oldest rows of a buffer, then drop them from it (held: `_head`)."""
        buffer = self._buffers[name]
        count = min(len(buffer), self._batch_rows)
        rows = list(itertools.islice(buffer, count))
        started = time.perf_counter()
        rejected, reason = await self._db.commit(TABLES[name], rows, self._batch_rows)
        if self._observe_flush is not None:
            self._observe_flush(name, time.perf_counter() - started)
        if rejected:
            await self._keep_rejected(name, rejected, reason)
        for _ in range(count):
            buffer.popleft()
        if not buffer:
            del self._oldest_at[name]

    async def _replay(self, spill: SpillFile) -> None:
        """Commit a spill file's rows and delete it; an unusable file is kept as failed."""
        try:
            name, rows = await asyncio.to_thread(read_spill, spill.path)
        except SpillError as exc:
            await self._fail_file(spill, str(exc))
            return
        written = self.rows_written[name]
        rejected, reason = await self._db.commit(TABLES[name], rows, self._batch_rows)
        if rejected and self.rows_written[name] == written:  # none fit: keep the file as is
            await self._fail_file(spill, reason)
            return
        if rejected:
            await self._keep_rejected(name, rejected, reason)
        await asyncio.to_thread(spill.path.unlink)
        self._pending.remove(spill)
        self.counters["replayed_files"] += 1

    # ---- spilling --------------------------------------------------------------------------------

    async def _guard(self) -> None:
        """Spill the oldest rows of any buffer past `max_buffer_rows`, connected or not."""
        while True:
            await self._pressure.wait()
            self._pressure.clear()
            limit = self._max_rows
            try:
                async with self._head:
                    for name, buffer in self._buffers.items():
                        if len(buffer) > limit:  # down to half, so files are not tiny
                            await self._spill(name, len(buffer) - limit // 2)
            except OSError as exc:
                self._note_spill_error(f"cannot spill: {describe_error(exc)}")
                await asyncio.sleep(1.0)
                self._pressure.set()

    async def _open_spill_dir(self) -> None:
        if self._next_seq is None:
            self._adopt(*await asyncio.to_thread(scan_spill_dir, self.spill_dir))

    def _adopt(self, pending: list[SpillFile], next_seq: int, failed: int,
               notes: list[str]) -> None:
        if self._next_seq is None:
            self._pending[:0] = pending  # older than anything spilled by this process
            self._next_seq = next_seq
            self.counters["failed_spill_files"] += failed
            for note in notes:
                self._note_spill_error(note)

    def _take_seq(self) -> int:
        assert self._next_seq is not None, "the spill directory is read first"
        self._next_seq += 1
        return self._next_seq - 1

    async def _spill(self, name: str, count: int) -> None:
        """Move the `count` oldest rows of a buffer into a new spill file (held: `_head`)."""
        buffer = self._buffers[name]
        rows = list(itertools.islice(buffer, count))
        seq = self._take_seq()
        path = await asyncio.to_thread(write_spill, self.spill_dir, seq, name, rows)
        for _ in range(count):
            buffer.popleft()
        if not buffer:
            self._oldest_at.pop(name, None)
        self._pending.append(SpillFile(seq, name, path, count))
        self.counters["spilled_rows"] += count

    def _spill_left_behind(self) -> None:
        """Write every buffered row to spill files now, blocking: the task is ending."""
        try:
            if self._next_seq is None:
                self._adopt(*scan_spill_dir(self.spill_dir))
            for name, buffer in self._buffers.items():
                if buffer:
                    seq = self._take_seq()
                    path = write_spill(self.spill_dir, seq, name, list(buffer))
                    self._pending.append(SpillFile(seq, name, path, len(buffer)))
                    self.counters["spilled_rows"] += len(buffer)
                    buffer.clear()
                    self._oldest_at.pop(name, None)
        except OSError as exc:
            lost = sum(len(b) for b in self._buffers.values())
            log.critical("storage: %d rows could not be spilled: %s", lost, describe_error(exc))

    async def _keep_rejected(self, name: str, rows: list[tuple], reason: str) -> None:
        seq = self._take_seq()
        path = await asyncio.to_thread(write_spill, self.spill_dir, seq, name, rows, failed=True)
        self.counters["rejected_rows"] += len(rows)
        self.counters["failed_spill_files"] += 1
        self._note_spill_error(f"{len(rows)} {name} rows refused, kept in {path.name}: {reason}")

    async def _fail_file(self, spill: SpillFile, reason: str) -> None:
        self._pending.remove(spill)
        self.counters["failed_spill_files"] += 1
        self._note_spill_error(f"{spill.path.name} kept as failed: {reason}")
        try:
            await asyncio.to_thread(os.replace, spill.path, f"{spill.path}.failed")
        except OSError as exc:
            log.error("storage: cannot rename %s: %s", spill.path, describe_error(exc))

    # ---- status ----------------------------------------------------------------------------------

    def _note_error(self, text: str) -> None:
        self.last_error = text
        log.warning("storage: %s", text)

    def _note_spill_error(self, text: str) -> None:
        self.last_spill_error = text
        log.error("storage: %s", text)

    def snapshot(self) -> dict[str, Any]:
        rates = self._rates.sample(self.rows_written)
        buffered = sum(len(buffer) for buffer in self._buffers.values())
        counters = {
            "backlog_rows": buffered + sum(spill.rows for spill in self._pending),
            "buffered_rows": buffered,
            "spill_files": len(self._pending),
            "reconnects": max(0, self.counters["connects"] - 1),
            **{key: self.counters[key] for key in (
                "spilled_rows", "failed_spill_files", "rejected_rows", "flush_failures",
                "connect_failures", "replayed_files")},
            **{f"rows_written_{name}": self.rows_written[name] for name in TABLES},
            **{f"rows_per_s_{name}": round(rates[name], 1) for name in TABLES},
        }
        return {"connected": self._db.connected, "mode": self.mode,
                "last_error": self.last_error, "last_spill_error": self.last_spill_error,
                "counters": counters}


class _Rates:
    """Rows per second per table over the last ten seconds of snapshots."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._samples: collections.deque[tuple[float, dict[str, int]]] = collections.deque(
            [(monotonic(), {})])

    def sample(self, totals: Mapping[str, int]) -> dict[str, float]:
        now = self._monotonic()
        self._samples.append((now, dict(totals)))
        while len(self._samples) > 2 and now - self._samples[0][0] > 10:
            self._samples.popleft()
        then, old = self._samples[0]
        span = now - then
        return {name: (totals.get(name, 0) - old.get(name, 0)) / span if span > 0 else 0.0
                for name in TABLES}
