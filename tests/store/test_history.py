"""History reads: candle files round-trip exactly; `load_candles` against the real PostgreSQL."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from trader.kernels.series import CandleArrays
from trader.simulator.run import bundled_sources
from trader.store import schema
from trader.store.history import (
    PG_EPOCH_S,
    CopyParser,
    candles_copy_data,
    load_candle_times,
    load_candles,
    read_candle_file,
    write_candle_file,
)

T0 = 1_522_886_400  # 2018-04-05 00:00 UTC


def awkward_candles(n: int, seed: int = 7, start_s: int = T0) -> CandleArrays:
    """Floats that only survive a bit-exact path: 17 significant digits, tiny, huge, -0.0."""
    rng = np.random.default_rng(seed)
    columns = [rng.random(n) * 10.0 ** rng.integers(-12, 12, n) for _ in range(5)]
    columns[0][:4] = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, -0.0]
    return CandleArrays(start_s + 60 * np.arange(n, dtype=np.int64), *columns)


def assert_same(got: CandleArrays, expected: CandleArrays) -> None:
    assert got.time_s.dtype == np.int64 and got.open.dtype == np.float64
    for ours, theirs in zip(got.columns(), expected.columns(), strict=True):
        assert ours.tobytes() == np.ascontiguousarray(theirs).tobytes()  # bits, -0.0 included


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    await schema.migrate(connection)
    try:
        yield connection
    finally:
        await connection.close()


async def insert_plainly(conn: asyncpg.Connection, product_id: str, interval_s: int,
                         candles: CandleArrays) -> None:
    """INSERT through asyncpg's own codecs: independent of our binary COPY encoder."""
    rows = [(product_id, interval_s, datetime.fromtimestamp(int(t), UTC), *map(float, rest))
            for t, *rest in zip(*candles.columns(), strict=True)]
    await conn.executemany("INSERT INTO candles VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)


async def test_load_candles_returns_exactly_what_was_inserted(conn):
    candles = awkward_candles(500)
    await insert_plainly(conn, "BTC-USD", 60, candles)
    await insert_plainly(conn, "ETH-USD", 60, awkward_candles(50, seed=8))
    await insert_plainly(conn, "BTC-USD", 300, awkward_candles(50, seed=9))
    assert_same(await load_candles(conn, "BTC-USD", 60), candles)


async def test_an_empty_range_gives_empty_typed_columns(conn):
    await insert_plainly(conn, "BTC-USD", 60, awkward_candles(10))
    for got in (await load_candles(conn, "NOPE-USD", 60),
                await load_candles(conn, "BTC-USD", 60, T0 + 3600, T0 + 7200),
                await load_candles(conn, "BTC-USD", 60, T0 + 60, T0 + 60)):
        assert len(got) == 0
        assert got.time_s.dtype == np.int64 and got.volume.dtype == np.float64


async def test_the_start_bound_is_inclusive_and_the_end_bound_exclusive(conn):
    candles = awkward_candles(100)
    await insert_plainly(conn, "BTC-USD", 60, candles)
    assert_same(await load_candles(conn, "BTC-USD", 60, T0 + 600, T0 + 1200),
                candles.between(T0 + 600, T0 + 1200))
    assert_same(await load_candles(conn, "BTC-USD", 60, T0 + 601, T0 + 1201),
                candles.between(T0 + 660, T0 + 1260))
    assert_same(await load_candles(conn, "BTC-USD", 60, start_s=T0 + 5940),
                candles.between(T0 + 5940, T0 + 6000))
    assert_same(await load_candles(conn, "BTC-USD", 60, end_s=T0 + 120),
                candles.between(T0, T0 + 120))
    times = await load_candle_times(conn, "BTC-USD", 60, T0 + 600, T0 + 1200)
    assert times.dtype == np.int64 and times.tolist() == list(range(T0 + 600, T0 + 1200, 60))
    assert len(await load_candle_times(conn, "BTC-USD", 300)) == 0


async def test_binary_copy_in_through_a_staging_table_is_exact(conn):
    candles = awkward_candles(2000, start_s=PG_EPOCH_S - 600)  # across PostgreSQL's epoch

    async def source() -> AsyncIterator[bytes]:
        yield candles_copy_data(candles)

    await conn.execute("CREATE TEMP TABLE stage (time timestamptz, open float8, high float8, "
                       "low float8, close float8, volume float8)")
    await conn.copy_to_table("stage", source=source(), format="binary")
    await conn.execute("INSERT INTO candles SELECT 'BTC-USD', 60, * FROM stage")
    assert_same(await load_candles(conn, "BTC-USD", 60), candles)
    first = await conn.fetchrow("SELECT time, open FROM candles ORDER BY time LIMIT 1")
    assert first["time"] == datetime(1999, 12, 31, 23, 50, tzinfo=UTC)
    assert first["open"] == 0.1 + 0.2


def test_the_copy_parser_takes_any_chunking_and_refuses_other_layouts():
    candles = awkward_candles(1000)
    data = candles_copy_data(candles)
    for size in (1, 7, 74, 4096, len(data)):
        parser = CopyParser()
        for i in range(0, len(data), size):
            parser.feed(data[i:i + size])
        values = parser.finish()
        assert_same(CandleArrays(values[0].view(np.int64) // 1_000_000 + PG_EPOCH_S,
                                 *values[1:].view(np.float64)), candles)
    with pytest.raises(ValueError, match="cut short"):
        parser = CopyParser()
        parser.feed(data[:-10])
        parser.finish()
    damaged = bytearray(data)
    damaged[19 + 2:19 + 6] = b"\xff\xff\xff\xff"  # a NULL time in the first row
    with pytest.raises(ValueError, match="NULL"):
        parser = CopyParser()
        parser.feed(bytes(damaged))
        parser.finish()


async def test_a_query_of_another_shape_is_refused(conn):
    for query in ("SELECT now(), 1::int4, 2.0::float8, 3.0::float8, 4.0::float8, 5.0::float8",
                  "SELECT now(), NULL::float8, 2.0::float8, 3.0::float8, 4.0::float8, 5.0::float8"):
        parser = CopyParser()

        async def sink(chunk: bytes, parser: CopyParser = parser) -> None:
            parser.feed(chunk)

        await conn.copy_from_query(query, output=sink, format="binary")
        with pytest.raises(ValueError, match=r"6 x 8-byte values"):
            parser.finish()


def test_a_candle_file_round_trips_bit_exact(tmp_path: Path):
    candles = awkward_candles(3000)
    path = tmp_path / "c.csv.gz"
    write_candle_file(path, candles, fsync=True)
    assert_same(read_candle_file(path), candles)
    write_candle_file(path, candles.between(0, 0))
    assert len(read_candle_file(path)) == 0


@pytest.mark.parametrize("product_id", sorted(bundled_sources()))
def test_rewriting_a_real_file_gives_the_same_text(tmp_path: Path, product_id: str):
    source = bundled_sources()[product_id]
    path = tmp_path / "again.csv.gz"
    write_candle_file(path, read_candle_file(source))
    assert gzip.open(path).read() == gzip.open(source).read()
