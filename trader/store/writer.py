"""The daemon's event sink: rows into PostgreSQL in COPY batches, never blocking the engine.

`write()` appends a row to its table's deque and returns. A flush task sends a table's rows once
`batch_rows` wait or the oldest is `flush_interval_ms` old. A batch goes by binary COPY straight
into the table. If one of its keys is already stored or repeats in the batch, that COPY fails
as a whole and the batch, reduced to one row per key, goes through a staging table and
`INSERT ... ON CONFLICT` (the table's `on_conflict`: "update" replaces the other columns, the
last row of a key winning; "nothing" keeps the stored or first row), as do the next few
batches of that table. Big batches (a backlog) are split over two connections, cut so that
all rows of a key go through the same one.

During an outage the connection is retried with capped full-jitter backoff while rows pile up;
past `max_buffer_rows` a table's oldest rows are spilled, in order, to `state_dir/spill/`.
Spill files are replayed oldest first, before any buffered row, also at the next start, and
deleted once committed. A file that cannot be read, and rows the database refuses, are kept as
`*.failed` and reported, never dropped.
"""

from __future__ import annotations

import asyncio
import collections
import copyreg
import functools
import io
import itertools
import json
import logging
import os
import pickle
import random
import re
import struct
import time
import zlib
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import asyncpg

from trader.config import StorageConfig
from trader.store.schema import TABLES, Table, migrate

log = logging.getLogger(__name__)

SPILL_DIR = "spill"
PLAIN_RETRY_AFTER = 16  # batches of a table sent through staging before plain COPY is retried
YIELD_ROWS = 2000  # rows encoded for COPY between chances for other tasks to run (~2 ms)
PARALLEL_MIN_ROWS = 10_000  # a batch this big is split over the connections
MAX_SPLITS = 64  # halvings per batch to isolate rejected rows; then the rest is kept as failed
_OUTAGE_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, shutdown, I/O
_ROW_CLASSES = ("22", "23")  # data exception, integrity violation: caused by some rows only
_ROW_ERRORS = (TypeError, ValueError, OverflowError)  # a value COPY cannot encode
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class SpillError(Exception):
    """A spill file that cannot be replayed: damaged, or written for other columns."""


class _Outage(Exception):
    """The database is unreachable: keep the rows and reconnect."""


class _Rejected(Exception):
    """The database refused a batch; sending it again would not help."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.by_rows = isinstance(cause, _ROW_ERRORS) or _sqlstate(cause)[:2] in _ROW_CLASSES


@dataclass(slots=True)
class SpillFile:
    seq: int
    table: str
    path: Path
    rows: int


@dataclass(slots=True)
class _Link:
    """One open connection and the staging tables created on it."""

    conn: asyncpg.Connection
    staged: set[str] = field(default_factory=set)


class Backoff:
    """Capped full-jitter backoff: the n-th wait is uniform in [0, min(cap, base * 2^n)]."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random) -> None:
        self.base_s, self.cap_s, self._rng = base_s, cap_s, rng
        self.attempt = 0

    def next_s(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Writer:
    """Buffers rows per table and commits them in batches (see the module docstring)."""

    name = "storage"
    config_sections = ("storage",)

    def __init__(self, dsn: str, section: StorageConfig, state_dir: Path, *,
                 rng: random.Random | None = None, backoff_base_s: float = 0.25,
                 backoff_cap_s: float = 30.0, connect_timeout_s: float = 10.0,
                 command_timeout_s: float = 60.0, connections: int = 2,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.dsn = dsn
        self.section = section
        self._batch_rows, self._max_rows = section.batch_rows, section.max_buffer_rows
        self.spill_dir = Path(state_dir) / SPILL_DIR
        self.mode: str | None = None
        self.last_error: str | None = None
        self.last_spill_error: str | None = None
        self.counters = collections.Counter[str]()
        self.rows_written = collections.Counter[str]()
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self._timeouts_s = (connect_timeout_s, command_timeout_s)
        self._connections = max(1, connections)
        self._monotonic = monotonic
        self._buffers: dict[str, collections.deque[tuple]] = {
            name: collections.deque() for name in TABLES}
        self._widths = {name: len(table.columns) for name, table in TABLES.items()}
        self._oldest_at: dict[str, float] = {}  # when each non-empty buffer got its oldest row
        self._pending: list[SpillFile] = []  # spill files to replay, in sequence order
        self._next_seq: int | None = None  # known once the spill directory was read
        self._links: list[_Link] = []  # open connections; empty while disconnected
        self._staged_left: dict[str, int] = {}  # batches to stage before trying plain COPY
        self._head = asyncio.Lock()  # the oldest rows of a buffer: flushed or spilled, not both
        self._wake, self._pressure, self._settled = (asyncio.Event() for _ in range(3))
        self._draining = False
        self._rates = _Rates(monotonic)

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

    def apply_section(self, name: str, section: Any) -> None:
        """batch_rows, flush_interval_ms and max_buffer_rows apply at once (dsn: restart)."""
        if name == "storage":
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
            self._disconnect()
            self._spill_left_behind()

    async def drain(self) -> None:
        """Commit what the database takes now and spill the rest, so a stop loses nothing."""
        self._draining = True  # every non-empty buffer is due
        while self._links and self._has_work():
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
                await self._connect()
                connected = True
                await self._flush_loop()
            except _Outage as exc:
                self.counters["flush_failures" if connected else "connect_failures"] += 1
                self._note_error(str(exc))
            finally:
                self._disconnect()
            self._settled.set()  # a drain waiting on the database stops waiting
            await asyncio.sleep(self._backoff.next_s())

    async def _connect(self) -> None:
        connect_s, command_s = self._timeouts_s
        links: list[_Link] = []
        try:
            for _ in range(self._connections):
                links.append(_Link(await asyncpg.connect(
                    self.dsn, timeout=connect_s, command_timeout=command_s)))
            info = await migrate(links[0].conn)
        except (*_DB_ERRORS, ValueError) as exc:
            for link in links:
                link.conn.terminate()
            raise _Outage(f"connect: {_describe(exc)}") from exc
        self._links, self.mode = links, info.mode
        self.counters["connects"] += 1
        self._backoff.reset()
        log.info("storage: connected (%s mode)", info.mode)

    def _disconnect(self) -> None:
        for link in self._links:
            link.conn.terminate()
        self._links = []

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
        rejected, reason = await self._commit(TABLES[name], rows)
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
        rejected, reason = await self._commit(TABLES[name], rows)
        if rejected and self.rows_written[name] == written:  # none fit: keep the file as is
            await self._fail_file(spill, reason)
            return
        if rejected:
            await self._keep_rejected(name, rejected, reason)
        await asyncio.to_thread(spill.path.unlink)
        self._pending.remove(spill)
        self.counters["replayed_files"] += 1

    async def _commit(self, table: Table, rows: list[tuple]) -> tuple[list[tuple], str]:
        """Commit rows, a key's rows in their order, in batches: (rows refused, why).
        Raises _Outage part way; sending the same rows again later is harmless."""
        rows = _grouped(table, rows)
        rejected: list[tuple] = []
        reasons: list[str] = []
        budget = [MAX_SPLITS]
        size = self._batch_rows
        for start in range(0, len(rows), size):
            rejected += await self._commit_parts(table, rows[start:start + size], budget,
                                                 reasons)
        return rejected, (reasons[-1] if reasons else "")

    async def _commit_parts(self, table: Table, rows: list[tuple], budget: list[int],
                            reasons: list[str]) -> list[tuple]:
        """Commit a big batch in parts at once, one per connection. Parts are cut between
        groups of the first key column, so every row of a key is in one part and the order
        between parts does not matter; the next batch waits for all parts."""
        links = self._links
        if not links:
            raise _Outage("not connected")
        if len(rows) < PARALLEL_MIN_ROWS or len(links) == 1:
            return await self._isolate(links[0], table, rows, budget, reasons)
        try:
            async with asyncio.TaskGroup() as group:
                parts = [group.create_task(self._isolate(link, table, part, budget, reasons))
                         for link, part in zip(links, _parts(table, rows, len(links)),
                                               strict=False)]
        except* _Outage as outage:
            raise outage.exceptions[0] from None
        return [row for part in parts for row in part.result()]

    async def _isolate(self, link: _Link, table: Table, rows: list[tuple], budget: list[int],
                       reasons: list[str]) -> list[tuple]:
        """Commit a batch; when some of its rows are refused, halve it and try the halves in
        order until the refused rows are found or the budget is spent. Returns those rows."""
        try:
            await self._commit_batch(link, table, rows)
            return []
        except _Rejected as exc:
            self.counters["flush_failures"] += 1
            reasons.append(str(exc))
            if len(rows) == 1 or not exc.by_rows or budget[0] <= 0:
                return rows
            budget[0] -= 1
            half = len(rows) // 2
            return (await self._isolate(link, table, rows[:half], budget, reasons)
                    + await self._isolate(link, table, rows[half:], budget, reasons))

    async def _commit_batch(self, link: _Link, table: Table, rows: list[tuple]) -> None:
        """One batch in one COPY, or one staging transaction; raises _Outage or _Rejected.

        Plain COPY fails as a whole on a key already stored or repeated in the batch; then
        the batch, one row per key, goes through the staging table."""
        conn = link.conn
        try:
            if not table.key or self._plain_turn(table.name):
                try:
                    await conn.copy_records_to_table(table.name, records=_yielding(rows),
                                                     columns=table.columns)
                    self.rows_written[table.name] += len(rows)
                    return
                except asyncpg.UniqueViolationError:
                    if not table.key:
                        raise
                    self._staged_left[table.name] = PLAIN_RETRY_AFTER
            rows = _dedupe(table, rows)
            await self._upsert(link, table, rows)
            self.rows_written[table.name] += len(rows)
        except (*_DB_ERRORS, *_ROW_ERRORS) as exc:
            if _is_outage(exc, conn):
                raise _Outage(f"{table.name}: {_describe(exc)}") from exc
            raise _Rejected(exc) from exc

    def _plain_turn(self, name: str) -> bool:
        left = self._staged_left.get(name, 0)
        if left:
            self._staged_left[name] = left - 1
        return not left

    async def _upsert(self, link: _Link, table: Table, rows: list[tuple]) -> None:
        stage, conn = _stage_name(table.name), link.conn
        if table.name not in link.staged:
            await conn.execute(_staging_sql(table.name))
            link.staged.add(table.name)
        async with conn.transaction():
            await conn.copy_records_to_table(stage, records=_yielding(rows),
                                             columns=table.columns)
            await conn.execute(_upsert_sql(table.name))

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
                self._note_spill_error(f"cannot spill: {_describe(exc)}")
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
            log.critical("storage: %d rows could not be spilled: %s", lost, _describe(exc))

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
            log.error("storage: cannot rename %s: %s", spill.path, _describe(exc))

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
        return {"connected": bool(self._links), "mode": self.mode,
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


# ---- SQL, from TABLES only ---------------------------------------------------------------------

_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def _quote(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


def _stage_name(name: str) -> str:
    return f"_stage_{name}"


@functools.cache
def _staging_sql(name: str) -> str:
    return (f"CREATE TEMP TABLE IF NOT EXISTS {_quote(_stage_name(name))} "
            f"(LIKE {_quote(name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")


@functools.cache
def _upsert_sql(name: str) -> str:
    table = TABLES[name]
    columns = ", ".join(map(_quote, table.columns))
    others = [c for c in table.columns if c not in table.key]
    action = "DO NOTHING"
    if table.on_conflict == "update" and others:
        action = "DO UPDATE SET " + ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}"
                                              for c in others)
    return (f"INSERT INTO {_quote(name)} ({columns}) SELECT {columns} "
            f"FROM {_quote(_stage_name(name))} "
            f"ON CONFLICT ({', '.join(map(_quote, table.key))}) {action}")


@functools.cache
def _key_of(name: str) -> Callable[[tuple], Any]:
    table = TABLES[name]
    return itemgetter(*(table.columns.index(column) for column in table.key))


def _grouped(table: Table, rows: list[tuple]) -> list[tuple]:
    """Rows grouped by the first key column, in order within a group (a stable sort): index
    inserts stay local (a quarter faster COPY into candles) and a key's rows stay in order."""
    if not table.key:
        return rows
    return sorted(rows, key=itemgetter(table.columns.index(table.key[0])))


def _parts(table: Table, rows: list[tuple], count: int) -> list[list[tuple]]:
    """About `count` equal slices of grouped rows, cut only between groups."""
    first = table.columns.index(table.key[0]) if table.key else None
    cuts = [0]
    for i in range(1, count):
        cut = max(cuts[-1], len(rows) * i // count)
        while first is not None and 0 < cut < len(rows) and (
                rows[cut][first] == rows[cut - 1][first]):
            cut += 1
        cuts.append(cut)
    cuts.append(len(rows))
    return [rows[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def _dedupe(table: Table, rows: list[tuple]) -> list[tuple]:
    """One row per key: the last for "update" tables, the first for "nothing" tables (one
    INSERT ... ON CONFLICT cannot touch a row twice)."""
    key = _key_of(table.name)
    ordered = rows if table.on_conflict == "update" else reversed(rows)
    unique = {key(row): row for row in ordered}
    return rows if len(unique) == len(rows) else list(unique.values())


async def _yielding(rows: list[tuple]) -> AsyncIterator[tuple]:
    """COPY input that lets other tasks run every YIELD_ROWS rows: asyncpg encodes on the
    loop and loopback socket buffers hold megabytes, so a big batch would not pause by itself."""
    for start in range(0, len(rows), YIELD_ROWS):
        for row in rows[start:start + YIELD_ROWS]:
            yield row
        await asyncio.sleep(0)


def _sqlstate(exc: BaseException) -> str:
    return getattr(exc, "sqlstate", None) or ""


def _is_outage(exc: BaseException, conn: asyncpg.Connection) -> bool:
    if conn.is_closed() or isinstance(exc, OSError | TimeoutError
                                      | asyncpg.PostgresConnectionError):
        return True
    return _sqlstate(exc)[:2] in _OUTAGE_CLASSES


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- spill files ---------------------------------------------------------------------------------

_MAGIC = b"trader spill 1\n"
_FRAME = struct.Struct("<II")  # payload length, crc32
_FRAME_ROWS = 2048  # rows per pickle frame: short GIL holds while a thread writes or reads
_SPILL_NAME = re.compile(r"\.?(\d{12})\.([a-z_]+)\.")
_SAFE_GLOBALS = frozenset({("decimal", "Decimal"), ("datetime", "datetime"),
                           ("datetime", "date"), ("datetime", "time"),
                           ("datetime", "timedelta"), ("datetime", "timezone"),
                           ("zoneinfo", "ZoneInfo")})
# ZoneInfo pickles through builtins.getattr by default; by key it needs only ZoneInfo itself.
_DISPATCH = {**copyreg.dispatch_table,
             zoneinfo.ZoneInfo: lambda zone: (zoneinfo.ZoneInfo, (zone.key,))}


class _Unpickler(pickle.Unpickler):
    """Builds only row values: no other class or function can be named by a file."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not a row value type")
        return super().find_class(module, name)


def write_spill(directory: Path, seq: int, table: str, rows: Sequence[tuple], *,
                failed: bool = False) -> Path:
    """Write `<seq>.<table>.spill` (or `.spill.failed`) whole or not at all: a temporary name,
    fsync, rename, fsync of the directory.

    Layout: a magic line; a JSON line {"table", "columns", "rows"}; frames of (length, crc32,
    pickle of up to _FRAME_ROWS row tuples). Pickle keeps Decimal, aware datetime, None and
    float bits exactly; reading allows nothing but those value types.
    """
    name = f"{seq:012d}.{table}.spill" + (".failed" if failed else "")
    final, temp = directory / name, directory / f".{name}.tmp"
    header = {"table": table, "columns": list(TABLES[table].columns), "rows": len(rows)}
    try:
        with open(temp, "wb") as out:
            out.write(_MAGIC + json.dumps(header).encode() + b"\n")
            for start in range(0, len(rows), _FRAME_ROWS):
                data = _pickle(rows[start:start + _FRAME_ROWS])
                out.write(_FRAME.pack(len(data), zlib.crc32(data)) + data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return final


def _pickle(rows: Sequence[tuple]) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(list(rows))
    return buffer.getvalue()


def read_spill(path: Path) -> tuple[str, list[tuple]]:
    """The table and rows of a spill file; SpillError if damaged or written for other columns."""
    try:
        return _parse_spill(path.read_bytes())
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError,
            struct.error, pickle.UnpicklingError) as exc:
        raise SpillError(_describe(exc)) from exc


def _parse_spill(data: bytes) -> tuple[str, list[tuple]]:
    if not data.startswith(_MAGIC):
        raise SpillError("not a spill file")
    end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC):end])
    table = TABLES.get(header["table"])
    if table is None or header["columns"] != list(table.columns):
        raise SpillError(f"written for {header['table']}({', '.join(header['columns'])}), "
                         "which is not a table of this schema")
    rows: list[tuple] = []
    pos = end + 1
    while pos < len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + _FRAME.size:pos + _FRAME.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            raise SpillError(f"damaged frame at byte {pos}")
        rows.extend(_Unpickler(io.BytesIO(payload)).load())
        pos += _FRAME.size + length
    width = len(table.columns)
    if len(rows) != header["rows"] or any(type(r) is not tuple or len(r) != width
                                          for r in rows):
        raise SpillError(f"{len(rows)} rows of the wrong shape, {header['rows']} expected")
    return table.name, rows


def scan_spill_dir(directory: Path) -> tuple[list[SpillFile], int, int, list[str]]:
    """Spill files to replay in sequence order, the next sequence number, how many are kept as
    failed, and notes. A temporary file left by a crash is incomplete: it is kept as failed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pending, failed, notes, last = [], 0, [], 0
    for path in sorted(directory.iterdir()):
        match = _SPILL_NAME.match(path.name)
        if match is None:
            continue
        seq, table = int(match[1]), match[2]
        last = max(last, seq)
        if path.name.endswith(".tmp"):
            try:
                os.replace(path, directory / f"{path.name.lstrip('.')}.failed")
            except FileNotFoundError:
                continue  # a scan cut short by cancellation already moved it
            notes.append(f"{path.name}: an incomplete spill file from a crash, kept as failed")
            failed += 1
        elif path.name.endswith(".failed"):
            failed += 1
        elif path.name.endswith(".spill"):
            pending.append(SpillFile(seq, table, path, _rows_in(path)))
    pending.sort(key=lambda spill: spill.seq)
    return pending, last + 1, failed, notes


def _rows_in(path: Path) -> int:
    """The row count a spill file's header promises (0 if unreadable: replay will say why)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_MAGIC) + 4096)
        return int(json.loads(head[len(_MAGIC):head.index(b"\n", len(_MAGIC))])["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
