"""Feed, market and repair against the simulator replaying real candles with faults on:
every 1-minute candle the daemon emits equals the replayed one."""

from __future__ import annotations

import asyncio
import contextlib
import random

import numpy as np

from tests.helpers import eventually
from tests.simulator.test_simulator import PRODUCTS, START_S, load
from trader.coinbase.feed import MarketFeed
from trader.coinbase.repair import CandleRepairer
from trader.engine import Engine
from trader.kernels import candles as ck
from trader.kernels import ring
from trader.market.candles import Market
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles

HOURS = 6


def expected_minutes(candles, start_s: int, end_s: int) -> np.ndarray:
    """The file's candles minute by minute, missing minutes flat at the previous close."""
    rows = np.full(((end_s - start_s) // 60, 6), np.nan)
    rows[:, 0] = np.arange(start_s, end_s, 60)
    index = {int(t): i for i, t in enumerate(candles.time_s)}
    previous = np.nan
    for k in range(len(rows)):
        i = index.get(start_s + 60 * k)
        if i is None:
            rows[k, 1:5], rows[k, 5] = previous, 0.0
        else:
            rows[k, 1:] = [c[i] for c in candles.columns()[1:]]
            previous = candles.close[i]
    return rows


class Recorder:
    """Keeps every emitted 1-minute row per product, and counts emissions per minute."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.rows: dict[str, list[np.ndarray]] = {p: [] for p in market.slots}
        self.minutes: list[int] = []

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        if interval_s != 60:
            return
        self.minutes.append(bar_time_s)
        window = self.market.windows[60]
        latest = ring.last_n_all(window.buf, window.head, 1)[:, 0]
        for product_id, slot in self.market.slots.items():
            self.rows[product_id].append(latest[slot].copy())


async def run_replay(faults: Faults, speed: float, hours: float, stale_after_s: float):
    candles = load(hours)
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    simulator = Simulator(tapes, candles, START_S, speed=speed, faults=faults, public_rps=20)
    url = await simulator.start()
    market = Market(PRODUCTS, [60, 300, 3600], capacity=2000, grace_ms=1500, warmup_bars=0)
    recorder = Recorder(market)
    repairer = CandleRepairer(market, url, requests_per_s=15)
    engine = Engine(market, bar_sinks=[recorder.on_bar], on_repair_needed=repairer.wake)
    feed = MarketFeed(url.replace("http", "ws") + "/", PRODUCTS, engine, stale_after_s,
                      rng=random.Random(3), backoff_base_s=0.1, backoff_cap_s=0.5)
    tasks = [asyncio.create_task(feed.run()), asyncio.create_task(repairer.run())]
    end_s = START_S + int(hours * 3600)
    try:
        await eventually(lambda: (market.last_emitted_s or 0) >= end_s - 60,
                         timeout_s=hours * 3600 / speed * 3 + 60)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await simulator.close()
    return simulator, market, recorder, feed, candles, end_s


async def test_six_hours_of_three_products_with_faults_gives_exact_candles():
    faults = Faults(seed=11, drop_rate=0.0015, gap_rate=0.0015, malformed_rate=0.003,
                    stall_rate=0.0003, stall_s=2.5, oversized_rate=0.0006,
                    oversized_bytes=17 * 2**20)
    simulator, market, recorder, feed, candles, end_s = await run_replay(
        faults, speed=600, hours=HOURS, stale_after_s=2.0)
    counts = simulator.fault_counts
    assert counts.drops >= 5 and counts.gaps >= 5 and counts.malformed >= 20, counts
    assert counts.oversized >= 1 and counts.stalls >= 1, counts
    assert sum(feed.bad_frames.values()) >= 20
    assert feed.counters["sequence_gaps"] >= 5
    assert market.counters["minutes_repaired"] > 0
    assert recorder.minutes == sorted(set(recorder.minutes)), "a minute was emitted twice"
    first = recorder.minutes.index(START_S)
    emitted_minutes = recorder.minutes[first:first + HOURS * 60]
    assert emitted_minutes == list(range(START_S, end_s, 60)), "a minute is missing"
    for product in PRODUCTS:
        got = np.array(recorder.rows[product][first:first + HOURS * 60])
        want = expected_minutes(candles[product], START_S, end_s)
        np.testing.assert_array_equal(got[:, :5], want[:, :5], err_msg=product)
        np.testing.assert_allclose(got[:, 5], want[:, 5], rtol=1e-9, atol=1e-12,
                                   err_msg=product)


async def test_higher_intervals_fold_from_the_emitted_minutes():
    _simulator, market, _recorder, _feed, candles, end_s = await run_replay(
        Faults(seed=5, gap_rate=0.002), speed=1200, hours=2, stale_after_s=2.0)
    window = market.windows[300]
    for product, slot in market.slots.items():
        bars = ring.last_n(window.buf, window.head, slot, int(window.count[slot]))
        want = ck.resample(expected_minutes(candles[product], START_S, end_s), 300)
        got = bars[bars[:, 0] < end_s]
        np.testing.assert_array_equal(got[:, :5], want[-len(got):, :5])
        np.testing.assert_allclose(got[:, 5], want[-len(got):, 5], rtol=1e-9)
        assert len(got) >= 2 * 12 - 1
