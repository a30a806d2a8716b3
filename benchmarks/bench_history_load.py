"""Loading 5 years of 1-minute candles of one product from PostgreSQL into numpy arrays.

Run: .venv/bin/python benchmarks/bench_history_load.py [--rows N]
Starts its own throwaway PostgreSQL (tests.pg.PostgresServer), COPYs 2,628,000 candles into
`candles` (the real Coinbase BTC-USD 1m file of ../shared/data tiled over consecutive minutes),
then times `load_candles` (binary COPY parsed by numpy) for all of them, best of
REPEATS, against the baseline: asyncpg `fetch` of the same rows into numpy arrays.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pg import PostgresServer, find_bin_dir
from trader.kernels.series import CandleArrays
from trader.store import schema
from trader.store.history import candles_copy_data, load_candles, read_candle_file

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase_BTC-USD_1m.csv.gz"
ROWS = 2_628_000
REPEATS = 5
START_S = 1_500_000_000 // 60 * 60
PRODUCT = "BTC-USD"


def tiled(rows: int) -> CandleArrays:
    """The real file's prices and volumes repeated to `rows` bars on consecutive minutes."""
    real = read_candle_file(DATA)
    index = np.arange(rows) % len(real)
    return CandleArrays(START_S + 60 * np.arange(rows, dtype=np.int64),
                        *(np.ascontiguousarray(c[index]) for c in real.columns()[1:]))


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


async def measure(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.migrate(conn)
        candles = tiled(rows)
        print(f"COPY of {rows:,} candles into the table: {await fill(conn, candles):.2f} s")
        got = await load_candles(conn, PRODUCT, 60)
        assert all(np.array_equal(a, b) for a, b in zip(got.columns(), candles.columns(),
                                                         strict=True)), "not bit-exact"
        ours = await best_s(lambda: load_candles(conn, PRODUCT, 60), REPEATS)
        theirs = await best_s(lambda: baseline_fetch(conn), max(1, REPEATS // 2))
    finally:
        await conn.close()
    print(f"load_candles (binary COPY parsed by numpy): {ours:.3f} s best of {REPEATS} "
          f"({rows / ours / 1e6:.2f} M rows/s; target < 2 s for 2,628,000)")
    print(f"baseline asyncpg fetch into numpy:           {theirs:.3f} s; "
          f"ratio {theirs / ours:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    print(f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}, "
          f"numpy {np.__version__}, asyncpg {asyncpg.__version__}")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        asyncio.run(measure(server.dsn, args.rows))
    finally:
        server.close()


if __name__ == "__main__":
    main()
