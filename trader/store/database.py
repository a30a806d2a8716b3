"""The storage writer's PostgreSQL side: its connections, and how a batch of rows is committed.

A batch goes by binary COPY straight into the table. If one of its keys is already stored or
repeats in the batch, that COPY fails as a whole and the batch, reduced to one row per key, goes
through a staging table and `INSERT ... ON CONFLICT` (the table's `on_conflict`: "update"
replaces the other columns, the last row of a key winning; "nothing" keeps the stored or first
row), as do the next few batches of that table. Big batches (a backlog) are split over the
connections, cut so that all rows of a key go through the same one. Rows the database refuses
are isolated by halving the batch and returned; an unreachable database raises `Outage`.

SQL is built from `TABLES` only, every identifier checked and quoted.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import asyncpg

from trader.errors import describe_error
from trader.store.schema import TABLES, Table, migrate

log = logging.getLogger(__name__)

PLAIN_RETRY_AFTER = 16  # batches of a table sent through staging before plain COPY is retried
YIELD_ROWS = 2000  # rows encoded for COPY between chances for other tasks to run (~2 ms)
PARALLEL_MIN_ROWS = 10_000  # a batch this big is split over the connections
MAX_SPLITS = 64  # halvings per batch to isolate rejected rows; then the rest is kept as failed
_OUTAGE_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, shutdown, I/O
_ROW_CLASSES = ("22", "23")  # data exception, integrity violation: caused by some rows only
_ROW_ERRORS = (TypeError, ValueError, OverflowError)  # a value COPY cannot encode
# InternalClientError: the connection's protocol was left mid-operation (a cut during a COPY)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
              OSError, TimeoutError)


class Outage(Exception):
    """The database is unreachable: keep the rows and reconnect."""


class _Rejected(Exception):
    """The database refused a batch; sending it again would not help."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(describe_error(cause))
        self.by_rows = isinstance(cause, _ROW_ERRORS) or _sqlstate(cause)[:2] in _ROW_CLASSES


@dataclass(slots=True)
class _Link:
    """One open connection and the staging tables created on it."""

    conn: asyncpg.Connection
    staged: set[str] = field(default_factory=set)


class Database:
    """Open connections to one database and commit batches over them.

    `counters` ("connects", "flush_failures") and `rows_written` (per table) are the writer's
    status counters, updated here as connections open and rows commit."""

    def __init__(self, dsn: str, *, connect_timeout_s: float, command_timeout_s: float,
                 connections: int, counters: collections.Counter[str],
                 rows_written: collections.Counter[str]) -> None:
        self.dsn = dsn
        self.mode: str | None = None  # the schema's mode, known after the first connect
        self.counters, self.rows_written = counters, rows_written
        self._timeouts_s = (connect_timeout_s, command_timeout_s)
        self._connections = max(1, connections)
        self._links: list[_Link] = []  # open connections; empty while disconnected
        self._staged_left: dict[str, int] = {}  # batches to stage before trying plain COPY

    @property
    def connected(self) -> bool:
        return bool(self._links)

    async def connect(self) -> None:
        """Open every connection and migrate the schema; Outage if that fails."""
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
            raise Outage(f"connect: {describe_error(exc)}") from exc
        self._links, self.mode = links, info.mode
        self.counters["connects"] += 1
        log.info("storage: connected (%s mode)", info.mode)

    def disconnect(self) -> None:
        for link in self._links:
            link.conn.terminate()
        self._links = []

    async def commit(self, table: Table, rows: list[tuple],
                     batch_rows: int) -> tuple[list[tuple], str]:
        """Commit rows, a key's rows in their order, in batches: (rows refused, why).
        Raises Outage part way; sending the same rows again later is harmless."""
        rows = _grouped(table, rows)
        rejected: list[tuple] = []
        reasons: list[str] = []
        budget = [MAX_SPLITS]
        for start in range(0, len(rows), batch_rows):
            rejected += await self._commit_parts(table, rows[start:start + batch_rows], budget,
                                                 reasons)
        return rejected, (reasons[-1] if reasons else "")

    async def _commit_parts(self, table: Table, rows: list[tuple], budget: list[int],
                            reasons: list[str]) -> list[tuple]:
        """Commit a big batch in parts at once, one per connection. Parts are cut between
        groups of the first key column, so every row of a key is in one part and the order
        between parts does not matter; the next batch waits for all parts."""
        links = self._links
        if not links:
            raise Outage("not connected")
        if len(rows) < PARALLEL_MIN_ROWS or len(links) == 1:
            return await self._isolate(links[0], table, rows, budget, reasons)
        try:
            async with asyncio.TaskGroup() as group:
                parts = [group.create_task(self._isolate(link, table, part, budget, reasons))
                         for link, part in zip(links, _parts(table, rows, len(links)),
                                               strict=False)]
        except* Outage as outage:
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
        """One batch in one COPY, or one staging transaction; raises Outage or _Rejected.

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
                raise Outage(f"{table.name}: {describe_error(exc)}") from exc
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


# ---- rows into batches ---------------------------------------------------------------------------

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


# ---- errors --------------------------------------------------------------------------------------

def _sqlstate(exc: BaseException) -> str:
    return getattr(exc, "sqlstate", None) or ""


def _is_outage(exc: BaseException, conn: asyncpg.Connection) -> bool:
    if conn.is_closed() or isinstance(exc, OSError | TimeoutError
                                      | asyncpg.PostgresConnectionError
                                      | asyncpg.InternalClientError):
        return True
    return _sqlstate(exc)[:2] in _OUTAGE_CLASSES
