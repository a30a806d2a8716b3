"""Ingest: websocket frames parsed, checked and folded into 1-minute candles, trades per second.

Run: .venv/bin/python benchmarks/bench_ingest.py
Frames are market_trades frames as the simulator builds them, carrying the bundled real
candles of 2018-04-05 (BTC-USD, ETH-USD, LTC-USD) as 120 prints per minute each (about
BTC-USD's live rate), with a heartbeat each second.
Ours: MarketFeed.on_raw_frame (orjson parse into trade columns, sequence check, trade-id
dedupe) into Engine -> Market (numba fold, minute closes, window pushes, higher intervals):
the daemon's own path. The partial first minute is released as built (the daemon fetches it
from REST), so every later minute is emitted into the windows as live.
Baseline, same frames, same run: "plain json + dict": json.loads, datetime.fromisoformat,
float() and a dict of candles per (product, minute). Also printed, as a bound rather than a
baseline: the "floor", orjson plus one read of each trade field and nothing else. Two frame
mixes: trades per frame as seen in the real 2026 capture (mostly 1), and batches of 10; a
heartbeat frame each exchange second comes on top of either.
"""

from __future__ import annotations

import json
import platform
import random
import time
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from trader.coinbase.feed import MarketFeed
from trader.engine import Engine
from trader.market.candles import Market
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

    def keep_as_built() -> None:
        for span in market.repairs_needed():
            market.apply_repair(span, None)

    engine = Engine(market, keep_as_built)
    feed = MarketFeed("ws://unused", market.slots, engine, 10.0)
    started = time.perf_counter()
    for raw in raw_frames:
        feed.on_raw_frame(raw)
    market.flush()
    elapsed = time.perf_counter() - started
    assert market.counters["minutes_emitted"] > 100 and not feed.bad_frames
    assert market.counters["trades"] == feed.counters["trades"]
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


def run_floor(raw_frames: list[bytes]) -> float:
    """Not a daemon path: orjson and one read of every trade field into columns, with no
    check, no sequence or trade-id state, no candles; what any Python reading of these frames
    pays, so a bound on how fast a Python parser of them can be."""
    seconds: dict[str, int] = {}
    held: list[tuple[list[Any], ...]] = []
    started = time.perf_counter()
    for raw in raw_frames:
        message = orjson.loads(raw)
        if message["channel"] != "market_trades":
            continue
        ids, trade_ids, prices, sizes, times_ns = [], [], [], [], []
        for trade in reversed(message["events"][0]["trades"]):
            text = trade["time"]
            second_ns = seconds.get(text[:19])
            if second_ns is None:
                moment = datetime.fromisoformat(text[:19] + "+00:00")
                second_ns = seconds[text[:19]] = int(moment.timestamp()) * 10**9
            ids.append(trade["product_id"])
            trade_ids.append(int(trade["trade_id"]))
            prices.append(float(trade["price"]))
            sizes.append(float(trade["size"]))
            times_ns.append(second_ns + int(text[20:-1]) * 1000)  # 6 digits in these frames
        held.append((ids, trade_ids, prices, sizes, times_ns))
        if len(held) > 64:
            held.clear()
    return time.perf_counter() - started


def best_of(runs: int, fn, *args) -> float:
    return min(fn(*args) for _ in range(runs))


def main() -> None:
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")
    run_ours(frames([1], random.Random(0), prints_per_minute=4)[0])  # compile the kernels
    for label, mix in (("real 2026 mix (1.47 trades per trade frame)", REAL_MIX),
                       ("batches of 10", [10])):
        raw_frames, trades = frames(mix, random.Random(1))
        ours = best_of(3, run_ours, raw_frames)
        base = best_of(3, run_baseline, raw_frames)
        floor = best_of(3, run_floor, raw_frames)
        print(f"{label}: {len(raw_frames):,} frames, {trades:,} trades")
        print(f"  ours      {trades / ours:12,.0f} trades/s  {len(raw_frames) / ours:10,.0f} "
              f"frames/s")
        print(f"  baseline  {trades / base:12,.0f} trades/s  (plain json + dict)")
        print(f"  ratio     {base / ours:12.2f}x")
        print(f"  floor     {trades / floor:12,.0f} trades/s  (orjson + field reads only, "
              f"no checks, no candles)")


if __name__ == "__main__":
    main()
