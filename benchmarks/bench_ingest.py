"""Ingest: websocket frames parsed, checked and folded into 1-minute candles, trades per second.

Run: .venv/bin/python benchmarks/bench_ingest.py
Frames are market_trades frames as the simulator builds them, carrying the bundled real
candles of 2018-04-05 (BTC-USD, ETH-USD, LTC-USD) as 120 prints per minute each (about
BTC-USD's live rate), with a heartbeat each second.
Ours: MarketFeed.on_raw_frame (orjson parse into Trade values, sequence check, trade-id dedupe)
into Engine -> Market (numba fold, minute closes, window pushes): the daemon's own path.
Baseline, same frames, same run: "plain json + dict": json.loads, datetime.fromisoformat,
float() and a dict of candles per (product, minute). Two frame mixes: trades per frame as seen
in the real 2026 capture (mostly 1), and batches of 10.
"""

from __future__ import annotations

import json
import platform
import random
import time
from datetime import datetime

import numpy as np

from trader.coinbase.feed import MarketFeed
from trader.engine import Engine
from trader.market import Market
from trader.simulator import wire
from trader.simulator.run import bundled_sources
from trader.store.history import read_candle_file

# trades per update frame in the 2026 capture: 45 of 57 frames carried one trade
REAL_MIX = [1] * 45 + [2] * 5 + [3] * 3 + [4] * 2 + [6] * 2


def dense_trades(prints_per_minute: int) -> list[tuple[int, str, int, float, float]]:
    """(time_ns, product, trade_id, price, size) of every bundled candle as many prints,
    open -> high -> low -> close, oldest first (about BTC-USD's real rate at 120/min)."""
    trades = []
    for product, path in bundled_sources().items():
        candles = read_candle_file(path)
        k = np.arange(prints_per_minute) / (prints_per_minute - 1)
        for i in range(len(candles)):
            o, h, lo, c = (float(a[i]) for a in (candles.open, candles.high, candles.low,
                                                  candles.close))
            path_prices = np.interp(k, [0, 1 / 3, 2 / 3, 1], [o, h, lo, c])
            t0 = int(candles.time_s[i]) * 10**9
            size = float(candles.volume[i]) / prints_per_minute
            for j, price in enumerate(path_prices):
                trades.append((t0 + j * (60 * 10**9 // prints_per_minute), product, 0,
                               float(price), size))
    trades.sort(key=lambda t: (t[0], t[1]))
    ids: dict[str, int] = {}
    return [(t, p, ids.setdefault(p, 0) + (ids.__setitem__(p, ids[p] + 1) or 0), price, size)
            for t, p, _, price, size in trades]


def frames(trades_per_frame: list[int], rng: random.Random,
           prints_per_minute: int = 120) -> tuple[list[bytes], int]:
    """Wire frames of the dense tape in exchange order, with a heartbeat each second."""
    events = dense_trades(prints_per_minute)
    out, seq, k, second = [], 0, 0, 0
    while k < len(events):
        batch = events[k:k + rng.choice(trades_per_frame)]
        k += len(batch)
        now = batch[-1][0]
        if now // 10**9 > second:
            second = now // 10**9
            out.append(wire.envelope("heartbeats", seq, now, [wire.heartbeat_event(
                now, second, 1.0)]))
            seq += 1
        prints = [wire.trade(p, trade_id, price, size, t, True)
                  for t, p, trade_id, price, size in reversed(batch)]
        out.append(wire.envelope("market_trades", seq, now,
                                 [wire.trade_event("update", prints)]))
        seq += 1
    return out, len(events)


def run_ours(raw_frames: list[bytes]) -> float:
    market = Market(["BTC-USD", "ETH-USD", "LTC-USD"], [60, 300, 3600], capacity=1000,
                    grace_ms=1500, warmup_bars=0)
    engine = Engine(market)
    feed = MarketFeed("ws://unused", market.slots, engine, 10.0)
    started = time.perf_counter()
    for raw in raw_frames:
        feed.on_raw_frame(raw)
    elapsed = time.perf_counter() - started
    assert market.counters["minutes_closed"] > 100
    return elapsed


def run_baseline(raw_frames: list[bytes]) -> float:
    candles: dict[tuple[str, int], dict[str, float]] = {}
    started = time.perf_counter()
    for raw in raw_frames:
        message = json.loads(raw)
        if message["channel"] != "market_trades":
            continue
        for event in message["events"]:
            for trade in reversed(event["trades"]):
                moment = datetime.fromisoformat(trade["time"].replace("Z", "+00:00"))
                minute = int(moment.timestamp()) // 60
                price, size = float(trade["price"]), float(trade["size"])
                candle = candles.get((trade["product_id"], minute))
                if candle is None:
                    candles[(trade["product_id"], minute)] = {
                        "o": price, "h": price, "l": price, "c": price, "v": size}
                else:
                    candle["h"] = max(candle["h"], price)
                    candle["l"] = min(candle["l"], price)
                    candle["c"] = price
                    candle["v"] += size
    return time.perf_counter() - started


def best_of(runs: int, fn, *args) -> float:
    return min(fn(*args) for _ in range(runs))


def main() -> None:
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    run_ours(frames([1], random.Random(0), prints_per_minute=4)[0])  # compile the kernels
    for label, mix in (("real mix (1.6 trades/frame)", REAL_MIX), ("batches of 10", [10])):
        raw_frames, trades = frames(mix, random.Random(1))
        ours = best_of(3, run_ours, raw_frames)
        base = best_of(3, run_baseline, raw_frames)
        print(f"{label}: {len(raw_frames):,} frames, {trades:,} trades")
        print(f"  ours      {trades / ours:12,.0f} trades/s  {len(raw_frames) / ours:10,.0f} "
              f"frames/s")
        print(f"  baseline  {trades / base:12,.0f} trades/s  (plain json + dict)")
        print(f"  ratio     {base / ours:12.2f}x")


if __name__ == "__main__":
    main()
