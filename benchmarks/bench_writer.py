"""Storage writer throughput: candle rows from `Writer.write()` until committed, rows per second.

Run: .venv/bin/python -m benchmarks --only writer [--quick]
A throwaway PostgreSQL (tests.pg: initdb on a free loopback port, fsync off) is started for
the run. 1,000,000 one-minute candles of 1,000 products (--quick: 100,000), minute by minute
as a live feed emits them, go through `Writer.write()` one row at a time (the producer yields
to the loop every 10,000 rows) with batch_rows 50,000; the clock stops when the last row is
committed.
Cases: new keys (plain binary COPY), the same keys again with new values (COPY fails on the
first repeated key, then staging table + INSERT ... ON CONFLICT DO UPDATE), and new keys with
plain COPY disabled (staging only). Also shown: the longest event-loop stall seen by a 1 ms
ticker during the new-keys case, and the ceiling of this server and machine at that moment:
the same rows, pre-sorted, sent by bare `copy_records_to_table` over two connections, no writer.
Target: >= 300,000 rows/s.
Baseline, same server, same run: "row by row": asyncpg `executemany` of
INSERT ... ON CONFLICT DO UPDATE over 50,000 of the same rows (--quick: 10,000), for new and for
repeated keys.
The machine is shared (other jobs run): figures move by +-25% between runs.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

import asyncpg
import uvloop
from figures import REPO, Figure, report

sys.path.insert(0, str(REPO))

from tests.pg import INSTALL_HINT, PostgresServer, find_bin_dir
from trader.config import StorageConfig
from trader.store import schema
from trader.store.writer import Writer

ROWS = 1_000_000
PRODUCTS = 1_000
BATCH_ROWS = 50_000
BASELINE_ROWS = 50_000
QUICK = 10  # --quick: a tenth of the rows
TARGET_ROWS_S = 300_000.0
YIELD_EVERY = 10_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candle_rows(count: int, shift: float) -> list[tuple]:
    rng = random.Random(1)
    products = [f"P{i:04d}-USD" for i in range(PRODUCTS)]
    rows = []
    for i in range(count):
        minute, slot = divmod(i, PRODUCTS)
        close = 100.0 + rng.random() + shift
        rows.append((products[slot], 60, T0 + timedelta(minutes=minute), close - 0.5,
                     close + 1.0, close - 1.0, close, rng.random() * 10))
    return rows


def staging_only(writer: Writer) -> Writer:
    """The writer with plain COPY turned off: every batch goes through the staging table."""
    writer._db._plain_turn = lambda name: False  # the writer's Database picks the way
    return writer


async def until(condition: Callable[[], bool]) -> None:
    """Poll every millisecond (the writer has no completion event to wait on)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def through_writer(writer: Writer, rows: list[tuple]) -> tuple[float, float]:
    """(rows per second from the first write() until all are committed, longest loop stall s)"""
    stalls = [0.0]

    async def ticker() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls[0] = max(stalls[0], time.perf_counter() - started - 0.001)

    task = asyncio.create_task(writer.run())
    await until(lambda: writer.snapshot()["connected"])
    ticking = asyncio.create_task(ticker())
    before = writer.rows_written["candles"]
    started = time.perf_counter()
    for start in range(0, len(rows), YIELD_EVERY):
        for row in rows[start:start + YIELD_EVERY]:
            writer.write("candles", row)
        await asyncio.sleep(0)
    await until(lambda: writer.rows_written["candles"] - before >= len(rows))
    took = time.perf_counter() - started
    for running in (ticking, task):
        running.cancel()
    await asyncio.gather(ticking, task, return_exceptions=True)
    return len(rows) / took, stalls[0]


async def bare_copy(dsn: str, rows: list[tuple]) -> float:
    """The same rows by bare COPY over two connections, sorted, in batches: the ceiling."""
    columns = schema.TABLES["candles"].columns
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    try:
        await schema.migrate(conns[0])
        batches = [sorted(rows[i:i + BATCH_ROWS], key=itemgetter(0))
                   for i in range(0, len(rows), BATCH_ROWS)]
        started = time.perf_counter()

        async def send(conn: asyncpg.Connection) -> None:
            while batches:
                await conn.copy_records_to_table("candles", records=batches.pop(0),
                                                 columns=columns)

        await asyncio.gather(*(send(conn) for conn in conns))
        return len(rows) / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


async def row_by_row(dsn: str, rows: list[tuple]) -> float:
    table = schema.TABLES["candles"]
    others = [c for c in table.columns if c not in table.key]
    sql = (f"INSERT INTO candles ({', '.join(table.columns)}) VALUES "
           f"({', '.join(f'${i + 1}' for i in range(len(table.columns)))}) "
           f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET "
           + ", ".join(f"{c} = EXCLUDED.{c}" for c in others))
    conn = await asyncpg.connect(dsn)
    try:
        await schema.migrate(conn)
        started = time.perf_counter()
        await conn.executemany(sql, rows)
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def bench(server: PostgresServer, count: int, state_dir: Path) -> list[Figure]:
    section = StorageConfig(batch_rows=BATCH_ROWS, flush_interval_ms=200,
                            max_buffer_rows=10 * count)
    baseline_rows = min(BASELINE_ROWS, count // QUICK)
    fresh, again = candle_rows(count, 0.0), candle_rows(count, 7.0)
    for name in ("plain", "staged", "bare", "baseline"):
        server.psql(f"CREATE DATABASE {name}")
    plain_dsn = server.dsn_of("plain")
    new_keys, stall = await through_writer(Writer(plain_dsn, section, state_dir), fresh)
    repeated, _ = await through_writer(Writer(plain_dsn, section, state_dir), again)
    staged, _ = await through_writer(
        staging_only(Writer(server.dsn_of("staged"), section, state_dir)), fresh)
    ceiling = await bare_copy(server.dsn_of("bare"), fresh)
    baseline_dsn = server.dsn_of("baseline")
    baseline_new = await row_by_row(baseline_dsn, fresh[:baseline_rows])
    baseline_repeated = await row_by_row(baseline_dsn, again[:baseline_rows])
    what = f"writer, {count:,} candles, batch_rows {BATCH_ROWS:,}"
    upsert = f"executemany upsert of {baseline_rows:,}"
    return [
        Figure("storage", f"{what}, new keys (plain COPY)", new_keys, "rows/s",
               (">=", TARGET_ROWS_S), f"{upsert} new keys", baseline_new),
        Figure("storage", "the same keys again (staged upsert)", repeated, "rows/s", None,
               f"{upsert} repeated keys", baseline_repeated),
        Figure("storage", "new keys, plain COPY off (every batch staged)", staged, "rows/s"),
        Figure("storage", "ceiling: bare COPY of the same rows, 2 connections, no writer",
               ceiling, "rows/s"),
        Figure("storage", "longest event-loop stall while the writer takes the new keys",
               stall * 1e3, "ms", higher_is_better=False),
    ]


def run(quick: bool) -> list[Figure]:
    count = ROWS // QUICK if quick else ROWS
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(INSTALL_HINT)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        with tempfile.TemporaryDirectory() as state_dir:
            return uvloop.run(bench(server, count, Path(state_dir)))
    finally:
        server.close()


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
