"""Loading 5 years of 1-minute candles of one product from PostgreSQL into numpy arrays.

Run: .venv/bin/python -m benchmarks --only history_load [--quick]
Starts its own throwaway PostgreSQL (tests.pg.PostgresServer), COPYs 2,628,000 candles into
`candles` (the real Coinbase BTC-USD 1m file of tests/data tiled over consecutive minutes;
--quick: a tenth), then times `load_candles` (binary COPY parsed by numpy) for all of them,
best of REPEATS, against the baseline: asyncpg `fetch` of the same rows into numpy arrays.
Target: under 2 s for 2,628,000 rows (none for --quick).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import numpy as np
from figures import FIVE_YEARS_1M, REPO, Figure, minutes, report

sys.path.insert(0, str(REPO))

from tests.pg import INSTALL_HINT, PostgresServer, find_bin_dir
from trader.kernels.series import CandleArrays
from trader.store import schema
from trader.store.history import candles_copy_data, load_candles

REPEATS = 5
TARGET_S = 2.0
PRODUCT = "BTC-USD"


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def fill(conn: asyncpg.Connection, candles: CandleArrays) -> float:
    started = time.perf_counter()
    await conn.execute("CREATE TEMP TABLE stage (time timestamptz, open float8, high float8, "
                       "low float8, close float8, volume float8)")
    await conn.copy_to_table("stage", source=once(candles_copy_data(candles)), format="binary")
    await conn.execute("INSERT INTO candles SELECT $1, 60, * FROM stage", PRODUCT)
    await conn.execute("VACUUM ANALYZE candles")
    return time.perf_counter() - started


async def baseline_fetch(conn: asyncpg.Connection) -> CandleArrays:
    """asyncpg `fetch` of the same rows, Records into numpy columns."""
    records = await conn.fetch(
        "SELECT time, open, high, low, close, volume FROM candles "
        "WHERE product_id = $1 AND interval_s = 60 ORDER BY time", PRODUCT)
    time_s = np.array([int(r[0].timestamp()) for r in records], dtype=np.int64)
    table = np.array([tuple(r)[1:] for r in records], dtype=np.float64).reshape(-1, 5)
    return CandleArrays(time_s, *(np.ascontiguousarray(table[:, i]) for i in range(5)))


async def best_s(fn: Callable[[], Awaitable[CandleArrays]], repeats: int) -> float:
    await fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - started)
    return best


async def measure(dsn: str, rows: int, repeats: int) -> tuple[float, float]:
    """(best seconds of load_candles, best seconds of the baseline)"""
    conn = await asyncpg.connect(dsn)
    try:
        await schema.migrate(conn)
        candles = minutes(PRODUCT, rows)
        await fill(conn, candles)
        got = await load_candles(conn, PRODUCT, 60)
        assert all(np.array_equal(a, b) for a, b in zip(got.columns(), candles.columns(),
                                                         strict=True)), "not bit-exact"
        ours = await best_s(lambda: load_candles(conn, PRODUCT, 60), repeats)
        theirs = await best_s(lambda: baseline_fetch(conn), max(1, repeats // 2))
    finally:
        await conn.close()
    return ours, theirs


def run(quick: bool) -> list[Figure]:
    rows, repeats = (FIVE_YEARS_1M // 10, 2) if quick else (FIVE_YEARS_1M, REPEATS)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(INSTALL_HINT)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        ours, theirs = asyncio.run(measure(server.dsn, rows, repeats))
    finally:
        server.close()
    return [Figure("storage", f"load_candles, {rows:,} 1m candles of one product into numpy, "
                   f"best of {repeats}", ours, "s", None if quick else ("<", TARGET_S),
                   "asyncpg fetch into numpy", theirs, higher_is_better=False)]


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
