"""The storage writer against the suite's real PostgreSQL: exact rows, batching, outage, spills."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import random
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import eventually
from tests.pg import PostgresServer, free_port
from trader.config import StorageConfig
from trader.ports import Component, Drains, Reconfigurable
from trader.store import schema
from trader.store.spill import SPILL_DIR, read_spill, write_spill
from trader.store.writer import Writer

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PLUS_2 = timezone(timedelta(hours=2))


def make_writer(dsn: str, state_dir: Path, **storage: Any) -> Writer:
    section = dataclasses.replace(StorageConfig(dsn=dsn), **storage)
    return Writer(dsn, section, state_dir, rng=random.Random(5), backoff_base_s=0.05,
                  backoff_cap_s=1.0)


@contextlib.asynccontextmanager
async def running(writer: Writer) -> AsyncIterator[Writer]:
    task = asyncio.create_task(writer.run(), name="storage")
    try:
        yield writer
    finally:
        task.cancel()
        done = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(done[0], asyncio.CancelledError), done


def counters(writer: Writer) -> dict[str, Any]:
    return writer.snapshot()["counters"]


async def settled(writer: Writer, timeout_s: float = 20.0) -> None:
    """Every row written so far is committed (nothing buffered, no spill file pending)."""
    await eventually(lambda: writer.snapshot()["connected"]
                     and counters(writer)["backlog_rows"] == 0, timeout_s)


async def fetch(dsn: str, table: str) -> dict[tuple, tuple]:
    """The rows of a table keyed like the writer keys them."""
    spec = schema.TABLES[table]
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(f"SELECT {', '.join(spec.columns)} FROM {table}")
    finally:
        await conn.close()
    index = [spec.columns.index(k) for k in spec.key]
    return {tuple(r[i] for i in index): tuple(r) for r in records}


def same(a: tuple, b: tuple) -> bool:
    """Equal value by value, floats bit for bit, Decimals digit for digit."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) or isinstance(y, float):
            if type(x) is not type(y) or struct.pack("<d", x) != struct.pack("<d", y):
                return False
        elif isinstance(x, Decimal):
            if not isinstance(y, Decimal) or str(x) != str(y):
                return False
        elif x != y:
            return False
    return True


def candle(product: str, minute: int, close: float, interval_s: int = 60) -> tuple:
    return (product, interval_s, T0 + timedelta(minutes=minute), close - 1.0, close + 2.0,
            close - 2.5, close, 0.1 + 0.2)


ROWS: dict[str, list[tuple]] = {
    "candles": [candle("BTC-USD", 0, 65000.123456789), candle("ETH-USD", 0, 5e-324),
                ("SOL-USD", 300, T0.astimezone(PLUS_2), 1.7976931348623157e308, 1e-300,
                 -0.0, 0.1 + 0.7, 2.0 / 3.0)],
    "signals": [(T0, "sma_cross", "BTC-USD", "buy", math.nan, None, math.inf, ""),
                (T0, "ema_rsi", "BTC-USD", "sell", -1.5, 99.5, -math.inf, "rsi > 70")],
    "orders": [("c-1", None, "sma_cross", "BTC-USD", "BUY", "entry", "limit_limit_gtc",
                Decimal("65000.01"), Decimal("0.00012000"), None, "OPEN", Decimal("0"),
                None, Decimal("0.0000000001"), T0, T0 + timedelta(microseconds=1), "")],
    "fills": [("BTC-USD", "t-1", "o-1", "c-1", "BUY", Decimal("65000.01"),
               Decimal("0.00012000"), Decimal("0.031200048"), "MAKER",
               T0 + timedelta(seconds=1, microseconds=999999))],
    "equity": [(T0, "paper", Decimal("10000.00"), Decimal("12345678901234567890.123456789"),
                Decimal("-0.5"), Decimal("1.10"), Decimal("0"))],
}


async def test_rows_of_every_table_arrive_exactly(database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, flush_interval_ms=20)
    async with running(writer):
        for table, rows in ROWS.items():
            writer.write_many(table, rows)
        await settled(writer)
        for table, rows in ROWS.items():
            stored = await fetch(database, table)
            assert len(stored) == len(rows), table
            for row in rows:
                key = tuple(row[schema.TABLES[table].columns.index(k)]
                            for k in schema.TABLES[table].key)
                assert same(stored[key], row), (table, stored[key], row)
        assert writer.snapshot()["connected"] and writer.snapshot()["mode"] == "postgresql"


async def test_a_rewritten_candle_replaces_the_row_and_a_repeated_fill_is_ignored(
        database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, flush_interval_ms=20)
    fill = ROWS["fills"][0]
    async with running(writer):
        writer.write("candles", candle("BTC-USD", 1, 100.0))
        writer.write("fills", fill)
        await settled(writer)
        writer.write("candles", candle("BTC-USD", 1, 101.0))  # re-emitted: repaired
        writer.write("fills", (*fill[:5], Decimal("1"), *fill[6:]))  # the same trade id again
        # in one batch: the last candle of a key wins, the first fill of a key stays
        writer.write_many("candles", [candle("ETH-USD", 1, 1.0), candle("ETH-USD", 1, 2.0)])
        writer.write_many("fills", [(*fill[:1], "t-2", *fill[2:]),
                                    (*fill[:1], "t-2", *fill[2:5], Decimal("2"), *fill[6:])])
        await settled(writer)
    candles = await fetch(database, "candles")
    assert candles[("BTC-USD", 60, T0 + timedelta(minutes=1))][6] == 101.0
    assert candles[("ETH-USD", 60, T0 + timedelta(minutes=1))][6] == 2.0
    fills = await fetch(database, "fills")
    assert len(fills) == 2
    assert fills[("BTC-USD", "t-1")][5] == fills[("BTC-USD", "t-2")][5] == Decimal("65000.01")


async def test_a_wrong_row_width_or_table_is_a_bug_and_raises(tmp_path: Path):
    writer = make_writer("postgresql://unused", tmp_path)
    assert all(isinstance(writer, port) for port in (Component, Drains, Reconfigurable))
    with pytest.raises(ValueError, match="8 values, got 2"):
        writer.write("candles", ("BTC-USD", 60))
    with pytest.raises(KeyError):
        writer.write("trades", ())


async def test_rows_the_database_refuses_are_isolated_and_kept_as_failed(
        database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=64, flush_interval_ms=20)
    rows = [candle("BTC-USD", m, 100.0 + m) for m in range(64)]
    rows[17] = (*rows[17][:7], None)  # volume is NOT NULL
    rows[40] = (*rows[40][:3], "not a number", *rows[40][4:])  # cannot be encoded
    async with running(writer):
        writer.write_many("candles", rows)
        await settled(writer)
    stored = await fetch(database, "candles")
    assert len(stored) == 62
    failed = sorted((tmp_path / SPILL_DIR).glob("*.failed"))
    kept = [row for path in failed for row in read_spill(path)[1]]
    assert sorted(kept, key=lambda r: r[2]) == [rows[17], rows[40]]
    assert counters(writer)["rejected_rows"] == 2
    assert "kept in" in writer.snapshot()["last_spill_error"]


async def test_big_batches_are_split_over_both_connections_exactly(
        database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=15_000, flush_interval_ms=20)
    first = [candle(f"P{p:03d}-USD", m, 100.0 + p + m / 1000) for m in range(300)
             for p in range(100)]
    second = [candle(row[0], (row[2] - T0) // timedelta(minutes=1), row[6] + 0.5)
              for row in first[::2]]  # half the keys again, new values: the staging path
    second[777] = (*second[777][:7], None)  # refused, in one of the parts
    # and again in the same batch, around where the batch is cut in two: the last one wins
    second += [(*row[:6], row[6] + 0.25, row[7]) for row in second[4000:11000:35]]
    async with running(writer):
        writer.write_many("candles", first)
        await settled(writer)
        writer.write_many("candles", second)
        await settled(writer)
    expected = {row[:3]: row for row in first}
    expected.update((row[:3], row) for i, row in enumerate(second) if i != 777)
    assert any(row[0] == "P050-USD" for row in second[15_000:])  # the group at the cut
    stored = await fetch(database, "candles")
    assert len(stored) == len(expected) == 30_000
    assert all(same(stored[key], row) for key, row in expected.items())
    assert counters(writer)["rejected_rows"] == 1


async def test_flush_by_rows(database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=100, flush_interval_ms=600_000)
    async with running(writer):
        writer.write_many("candles", [candle("BTC-USD", m, 1.0) for m in range(250)])
        await eventually(lambda: counters(writer)["rows_written_candles"] == 200, 10)
        assert len(await fetch(database, "candles")) == 200
        assert counters(writer)["buffered_rows"] == 50  # less than a batch, and not yet old


async def test_flush_by_age(database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=1000, flush_interval_ms=300)
    async with running(writer):
        await eventually(lambda: writer.snapshot()["connected"], 10)
        started = time.monotonic()
        writer.write_many("candles", [candle("BTC-USD", m, 1.0) for m in range(10)])
        await eventually(lambda: counters(writer)["rows_written_candles"] == 10, 10)
        took_s = time.monotonic() - started
    assert 0.3 <= took_s < 3.0
    assert len(await fetch(database, "candles")) == 10


def spill_path(state_dir: Path) -> Path:
    path = state_dir / SPILL_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


async def test_leftover_spill_files_are_replayed_at_start_before_newer_rows(
        database: str, tmp_path: Path):
    directory = spill_path(tmp_path)
    key = ("BTC-USD", 60, T0)
    write_spill(directory, 7, "candles", [candle("BTC-USD", 0, 1.0), candle("ETH-USD", 0, 1.0)])
    write_spill(directory, 9, "candles", [candle("BTC-USD", 0, 2.0)])
    write_spill(directory, 8, "fills", ROWS["fills"])
    (directory / ".000000000010.candles.spill.tmp").write_bytes(b"half a file")  # a crash
    writer = make_writer(database, tmp_path, flush_interval_ms=20)
    writer.write("candles", candle("BTC-USD", 0, 3.0))  # newer than every spilled row
    async with running(writer):
        await settled(writer)
        assert counters(writer)["replayed_files"] == 3
    candles = await fetch(database, "candles")
    assert candles[key][6] == 3.0 and len(candles) == 2
    assert len(await fetch(database, "fills")) == 1
    assert sorted(p.name for p in directory.iterdir()) == [
        "000000000010.candles.spill.tmp.failed"]
    assert counters(writer)["failed_spill_files"] == 1
    assert "incomplete" in writer.snapshot()["last_spill_error"]


def rewrite_header(path: Path, **changes: Any) -> None:
    magic, header, rest = path.read_bytes().split(b"\n", 2)
    fields = {**json.loads(header), **changes}
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + rest)


async def test_a_spill_file_that_cannot_be_replayed_is_kept_and_the_others_replayed(
        database: str, tmp_path: Path):
    directory = spill_path(tmp_path)
    write_spill(directory, 1, "candles", [candle("BTC-USD", 1, 1.0)])
    corrupt = write_spill(directory, 2, "candles", [candle("BTC-USD", m, 2.0)
                                                    for m in range(100)])
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    mismatched = write_spill(directory, 3, "candles", [candle("BTC-USD", 3, 3.0)])
    rewrite_header(mismatched, columns=[*schema.TABLES["candles"].columns[:-1], "vol"])
    unknown = write_spill(directory, 4, "candles", [candle("BTC-USD", 4, 4.0)])
    rewrite_header(unknown, table="trades")
    no_volume = (*candle("BTC-USD", 5, 5.0)[:7], None)
    refused = write_spill(directory, 5, "candles", [no_volume])
    write_spill(directory, 6, "candles", [candle("BTC-USD", 6, 6.0)])
    writer = make_writer(database, tmp_path, flush_interval_ms=20)
    async with running(writer):
        await settled(writer)
    stored = await fetch(database, "candles")
    assert sorted(k[2] for k in stored) == [T0 + timedelta(minutes=m) for m in (1, 6)]
    left = sorted(p.name for p in directory.iterdir())
    assert left == [f"{p.name}.failed" for p in (corrupt, mismatched, unknown, refused)]
    snapshot = writer.snapshot()
    assert snapshot["counters"]["failed_spill_files"] == 4
    assert snapshot["counters"]["replayed_files"] == 2
    assert "000000000005.candles.spill" in snapshot["last_spill_error"]
    assert read_spill(directory / left[-1])[1] == [no_volume]


def unreachable_dsn() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


async def test_drain_with_the_database_down_spills_everything_and_a_new_writer_replays_it(
        database: str, tmp_path: Path):
    down = make_writer(unreachable_dsn(), tmp_path, flush_interval_ms=20)
    rows = [candle("BTC-USD", m, float(m)) for m in range(1000)]
    async with running(down):
        down.write_many("candles", rows)
        down.write_many("equity", ROWS["equity"])
        await eventually(lambda: down.snapshot()["last_error"], 10)
        await down.drain()
        assert counters(down)["buffered_rows"] == 0
        assert counters(down)["spilled_rows"] == 1001
        assert counters(down)["backlog_rows"] == 1001  # on disk now
    assert not down.snapshot()["connected"] and down.snapshot()["mode"] is None
    assert "connect" in down.snapshot()["last_error"]
    assert len(list((tmp_path / SPILL_DIR).glob("*.spill"))) == 2

    up = make_writer(database, tmp_path, flush_interval_ms=20)
    async with running(up):
        await settled(up)
    stored = await fetch(database, "candles")
    assert len(stored) == 1000
    assert all(same(stored[r[:3]], r) for r in rows)
    assert same(next(iter((await fetch(database, "equity")).values())), ROWS["equity"][0])
    assert list((tmp_path / SPILL_DIR).iterdir()) == []


async def test_drain_with_the_database_up_commits_everything(database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=10_000, flush_interval_ms=600_000)
    async with running(writer):
        await eventually(lambda: writer.snapshot()["connected"], 10)
        writer.write_many("candles", [candle("BTC-USD", m, 1.0) for m in range(500)])
        await writer.drain()
        assert counters(writer)["backlog_rows"] == 0
    assert counters(writer)["spilled_rows"] == 0
    assert len(await fetch(database, "candles")) == 500


async def test_cancelling_the_writer_spills_what_it_still_holds(tmp_path: Path):
    writer = make_writer(unreachable_dsn(), tmp_path)
    async with running(writer):
        writer.write_many("candles", [candle("BTC-USD", m, 1.0) for m in range(3)])
        await eventually(lambda: writer.snapshot()["last_error"], 10)  # run() is under way
    [path] = (tmp_path / SPILL_DIR).glob("*.spill")
    assert read_spill(path) == ("candles", [candle("BTC-USD", m, 1.0) for m in range(3)])


async def test_batch_and_buffer_limits_apply_while_running(database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=1000, flush_interval_ms=600_000)
    async with running(writer):
        writer.write_many("candles", [candle("BTC-USD", m, 1.0) for m in range(10)])
        writer.apply(dataclasses.replace(writer.section, batch_rows=5))
        await eventually(lambda: counters(writer)["rows_written_candles"] == 10, 10)


# ---- the outage --------------------------------------------------------------------------

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
TICK_S = 0.02
OUTAGE_S = 60.0


@dataclasses.dataclass
class Producer:
    """Emits candles like a live feed, re-emitting recent ones, and times itself."""

    writer: Writer
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(7))
    expected: dict[tuple, tuple] = dataclasses.field(default_factory=dict)
    minute: int = 0
    lags_s: list[float] = dataclasses.field(default_factory=list)
    write_s: list[float] = dataclasses.field(default_factory=list)

    def emit(self, row: tuple) -> None:
        started = time.perf_counter()
        self.writer.write("candles", row)
        self.write_s.append(time.perf_counter() - started)
        self.expected[row[:3]] = row

    def tick(self) -> None:
        for product in PRODUCTS:
            self.emit(candle(product, self.minute, 100.0 + self.rng.random()))
        for _ in range(2):  # repairs of recent minutes: new values for known keys
            back = self.rng.randint(1, min(30, self.minute + 1))
            self.emit(candle(self.rng.choice(PRODUCTS), self.minute + 1 - back,
                             200.0 + self.rng.random()))
        self.minute += 1

    async def run(self, stop: asyncio.Event) -> None:
        due = time.perf_counter()
        while not stop.is_set():
            self.tick()
            due += TICK_S
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            self.lags_s.append(max(0.0, time.perf_counter() - due))


async def test_an_outage_loses_nothing_and_never_blocks_the_producer(
        postgres: PostgresServer, database: str, tmp_path: Path):
    writer = make_writer(database, tmp_path, batch_rows=50, flush_interval_ms=100,
                         max_buffer_rows=200)
    producer, stop = Producer(writer), asyncio.Event()
    seen_spill_files, stopped = 0, False
    async with running(writer):
        await eventually(lambda: writer.snapshot()["connected"], 10)
        feeding = asyncio.create_task(producer.run(stop))
        try:
            await eventually(lambda: counters(writer)["rows_written_candles"] > 100, 10)
            stopped = True  # the session's server: started again below whatever happens
            await asyncio.to_thread(postgres.stop)
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:  # the outage itself: the scenario's 60 s
                seen_spill_files = max(seen_spill_files, counters(writer)["spill_files"])
                await asyncio.sleep(0.5)
            assert not writer.snapshot()["connected"]
        finally:
            if stopped:
                await asyncio.to_thread(postgres.restart)
        await eventually(lambda: writer.snapshot()["connected"], 30)
        stop.set()
        await feeding
        await settled(writer, 60)
    stored = await fetch(database, "candles")
    assert len(stored) == len(producer.expected)
    assert all(same(stored[key], row) for key, row in producer.expected.items())
    assert seen_spill_files > 0 and counters(writer)["spilled_rows"] > 10_000
    assert counters(writer)["reconnects"] >= 1 and counters(writer)["failed_spill_files"] == 0
    assert list((tmp_path / SPILL_DIR).iterdir()) == []
    lags = sorted(producer.lags_s)
    assert max(producer.write_s) < 0.003, max(producer.write_s)
    assert lags[int(len(lags) * 0.99)] < 0.03 and lags[-1] < 0.2, (lags[-10:], len(lags))
