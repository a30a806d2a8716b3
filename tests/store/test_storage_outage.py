"""The whole candle path into the database while PostgreSQL is stopped for 60 s: the feed,
market and engine keep closing bars on time, and afterwards the table holds every emitted
candle exactly once with the replayed values."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import asyncpg
import numpy as np

from tests.coinbase.test_feed_candles import expected_minutes
from tests.helpers import eventually
from tests.pg import PostgresServer
from tests.simulator.test_simulator import PRODUCTS, START_S, load
from trader.coinbase.feed import MarketFeed
from trader.coinbase.repair import CandleRepairer
from trader.config import StorageConfig
from trader.engine import Engine
from trader.market.candles import Market
from trader.simulator.server import Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.recorder import CandleRecorder
from trader.store.writer import Writer

SPEED = 120  # two exchange minutes per wall second
HOURS = 3  # the replay ends ~15 s after the outage: long enough to catch up live
OUTAGE_S = 60.0


class BarClock:
    """Wall time of every 1-minute close, and how long the writer's recorder took on it."""

    def __init__(self, recorder: CandleRecorder) -> None:
        self.closes: list[tuple[float, int]] = []
        self.record_s: list[float] = []
        self.recorder = recorder

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        started = time.perf_counter()
        self.recorder.on_bar(interval_s, bar_time_s)
        self.record_s.append(time.perf_counter() - started)
        if interval_s == 60:
            self.closes.append((time.monotonic(), bar_time_s))


async def test_a_60_s_database_outage_loses_and_duplicates_no_candle(
        database: str, postgres: PostgresServer, tmp_path: Path):
    candles = load(HOURS)
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    simulator = Simulator(tapes, candles, START_S, speed=SPEED, public_rps=20)
    url = await simulator.start()
    market = Market(PRODUCTS, [60, 300], capacity=500, grace_ms=1500, warmup_bars=0)
    repairer = CandleRepairer(market, url, requests_per_s=15)
    section = StorageConfig(dsn=database, batch_rows=100, flush_interval_ms=200,
                            max_buffer_rows=200)
    writer = Writer(database, section, tmp_path / "state", rng=random.Random(1),
                    backoff_cap_s=2.0)
    clock = BarClock(CandleRecorder(market, writer.write_many))
    engine = Engine(market, bar_sinks=[clock.on_bar], on_repair_needed=repairer.wake)
    feed = MarketFeed(url.replace("http", "ws") + "/", PRODUCTS, engine, 5.0)
    tasks = [asyncio.create_task(c.run()) for c in (feed, repairer, writer)]
    end_s = START_S + HOURS * 3600
    try:
        await eventually(lambda: writer.rows_written["candles"] > 100, timeout_s=60)
        stopped_at = time.monotonic()
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(postgres.restart)
        restarted_at = time.monotonic()
        await eventually(lambda: (market.last_emitted_s or 0) >= end_s - 60, timeout_s=300)
        await eventually(lambda: writer.snapshot()["counters"]["backlog_rows"] == 0,
                         timeout_s=120)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await simulator.close()
        with contextlib.suppress(Exception):
            postgres.restart()  # a failed test must not leave the shared server down

    during = [m for t, m in clock.closes if stopped_at <= t <= restarted_at]
    assert len(during) >= 0.8 * OUTAGE_S * SPEED / 60, "bars stopped closing in the outage"
    assert max(clock.record_s) < 0.05  # handing rows to the writer never waited on it
    assert writer.counters["spilled_rows"] > 0 and writer.counters["replayed_files"] > 0

    emitted = [m for _, m in clock.closes]
    conn = await asyncpg.connect(database)
    try:
        for product in PRODUCTS:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM time)::bigint AS t, open, high, low, close, volume "
                "FROM candles WHERE product_id = $1 AND interval_s = 60 ORDER BY time", product)
            times = [r["t"] for r in rows]
            assert times == emitted, f"{product}: candles lost or duplicated"
            first, last = emitted[0], emitted[-1] + 60
            want = expected_minutes(candles[product], START_S, end_s)
            want = want[(want[:, 0] >= first) & (want[:, 0] < last)]
            got = np.array([[r["t"], r["open"], r["high"], r["low"], r["close"], r["volume"]]
                            for r in rows])
            np.testing.assert_array_equal(got[:, :5], want[:, :5], err_msg=product)
            np.testing.assert_allclose(got[:, 5], want[:, 5], rtol=1e-9, err_msg=product)
        fives = await conn.fetchval("SELECT count(*) FROM candles WHERE interval_s = 300")
        assert fives >= len(PRODUCTS) * (len(emitted) // 5 - 1)
    finally:
        await conn.close()
