"""Bar close for 500 products across 1m, 5m and 1h windows, and the batch trade fold.

Run: .venv/bin/python -m benchmarks --only bar_close [--quick]
A bar close (windows only): close the minute for every product, push the rows to the 1m
window, fold them into 5m and 1h, push those when due; capacity 1,000 bars per window. Target
under 1 ms. Baseline, same run, same trades: "naive: per-product Python loop, dict candles,
np.roll windows". Trades are synthetic; each minute about half the products trade.
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np
from figures import Figure, report

from trader.kernels import candles as ck
from trader.kernels import ring

PRODUCTS = 500
CAPACITY = 1_000
INTERVALS_S = (300, 3_600)
CLOSES = 6_000  # 100 hours: 100 1h bars, 1,200 5m bars; the 1m window wraps six times
NAIVE_CLOSES = 300
FRAMES = 200_000
QUICK = 5  # --quick: a fifth of the closes and frames (the 1m window still wraps)
T0_NS = 1_700_000_000 // 3600 * 3600 * 10**9


def minute_trades(rng: np.random.Generator, minute: int) -> tuple[np.ndarray, ...]:
    """One frame of trades in minute: about half the products, in exchange order."""
    slots = np.flatnonzero(rng.random(PRODUCTS) < 0.5).astype(np.int64)
    offs = np.sort(rng.integers(0, ck.MINUTE_NS, len(slots)))
    times = T0_NS + minute * ck.MINUTE_NS + offs
    prices = 100.0 + rng.standard_normal(len(slots)).cumsum() * 0.01
    return slots, times, prices, rng.uniform(0.01, 2.0, len(slots))


def bench_kernels(trades: list[tuple[np.ndarray, ...]]) -> np.ndarray:
    """Per bar close wall time, ns, of the kernel path."""
    b = ck.new_builder(PRODUCTS)
    for s in range(PRODUCTS):
        ck.open_slot(b.acc, b.last, b.active, s)
    w1 = ring.new_window(PRODUCTS, CAPACITY)
    folds = [
        (ck.new_interval(PRODUCTS, i), ring.new_window(PRODUCTS, CAPACITY)) for i in INTERVALS_S
    ]
    rows = np.empty((PRODUCTS, ring.FIELDS))
    out = np.empty((PRODUCTS, ring.FIELDS))
    took = np.empty(len(trades), np.int64)
    for k, frame in enumerate(trades):
        ck.fold_trades(b.clock, b.acc, b.active, *frame)
        t = time.perf_counter_ns()
        minute_s = ck.close_minute(b.clock, b.acc, b.last, rows)
        ring.push_all(w1.buf, w1.head, w1.count, rows)
        for iv, w in folds:
            if ck.fold_interval(iv.agg, iv.meta, rows, minute_s, iv.interval_s, out) > 0:
                ring.push_all(w.buf, w.head, w.count, out)
        took[k] = time.perf_counter_ns() - t
    assert int(w1.count.min()) == CAPACITY and int(folds[1][1].count[0]) == len(trades) // 60
    return took


class Naive:
    """The named baseline: dicts per product, a numpy window per product and interval, np.roll."""

    def __init__(self) -> None:
        self.cur: list[dict[str, float] | None] = [None] * PRODUCTS
        self.last = [float("nan")] * PRODUCTS
        self.windows = {
            i: [np.full((CAPACITY, 6), np.nan) for _ in range(PRODUCTS)] for i in (60, *INTERVALS_S)
        }
        self.aggs: dict[int, list[dict[str, float] | None]] = {
            i: [None] * PRODUCTS for i in INTERVALS_S
        }

    def fold(self, frame: tuple[np.ndarray, ...]) -> None:
        for s, _, p, q in zip(*(a.tolist() for a in frame), strict=True):
            c = self.cur[s]
            if c is None:
                self.cur[s] = {"o": p, "h": p, "l": p, "c": p, "v": q}
            else:
                c["h"], c["l"], c["c"], c["v"] = max(c["h"], p), min(c["l"], p), p, c["v"] + q

    def close(self, minute_s: int) -> None:
        for s in range(PRODUCTS):
            c, self.cur[s] = self.cur[s], None
            if c is None:
                c = {
                    "o": self.last[s],
                    "h": self.last[s],
                    "l": self.last[s],
                    "c": self.last[s],
                    "v": 0.0,
                }
            self.last[s] = c["c"]
            self._push(60, s, minute_s, c)
            for i in INTERVALS_S:
                a = self.aggs[i][s]
                if a is None:
                    a = self.aggs[i][s] = {"t": minute_s - minute_s % i, **c}
                else:
                    a["h"], a["l"], a["c"], a["v"] = (
                        max(a["h"], c["h"]),
                        min(a["l"], c["l"]),
                        c["c"],
                        a["v"] + c["v"],
                    )
                if (minute_s + 60) % i == 0:
                    self._push(i, s, a["t"], a)
                    self.aggs[i][s] = None

    def _push(self, interval_s: int, s: int, t: float, c: dict[str, float]) -> None:
        w = np.roll(self.windows[interval_s][s], -1, axis=0)
        w[-1] = (t, c["o"], c["h"], c["l"], c["c"], c["v"])
        self.windows[interval_s][s] = w


def bench_naive(trades: list[tuple[np.ndarray, ...]]) -> np.ndarray:
    """Per bar close wall time, ns, of the baseline."""
    naive = Naive()
    took = np.empty(len(trades), np.int64)
    for k, frame in enumerate(trades):
        naive.fold(frame)
        t = time.perf_counter_ns()
        naive.close(int(T0_NS // 10**9) + 60 * k)
        took[k] = time.perf_counter_ns() - t
    return took


def bench_fold(rng: np.random.Generator, count: int) -> tuple[int, float, int]:
    """Trades, seconds and bar closes of `count` frames of 10-50 trades through fold_trades."""
    sizes = rng.integers(10, 51, count)
    n = int(sizes.sum())
    slots = rng.integers(0, PRODUCTS, n).astype(np.int64)
    times = T0_NS + np.sort(rng.integers(0, 60 * ck.MINUTE_NS, n))  # one hour of trades
    prices = 100.0 + rng.standard_normal(n).cumsum() * 0.01
    qty = rng.uniform(0.01, 2.0, n)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    frames = [
        (slots[a:z], times[a:z], prices[a:z], qty[a:z]) for a, z in itertools.pairwise(bounds)
    ]
    b = ck.new_builder(PRODUCTS)
    for s in range(PRODUCTS):
        ck.open_slot(b.acc, b.last, b.active, s)
    rows = np.empty((PRODUCTS, ring.FIELDS))
    closes = 0
    t = time.perf_counter()
    for fs, ft, fp, fq in frames:
        i = ck.fold_trades(b.clock, b.acc, b.active, fs, ft, fp, fq)[2]
        while i >= 0:  # cannot happen with a grace-free close below; kept as the real pattern
            for _ in range(ck.closes_needed(b.clock, ft[i])):
                ck.close_minute(b.clock, b.acc, b.last, rows)
            fs, ft, fp, fq = fs[i:], ft[i:], fp[i:], fq[i:]
            i = ck.fold_trades(b.clock, b.acc, b.active, fs, ft, fp, fq)[2]
        for _ in range(ck.minutes_due(b.clock, 0)):
            ck.close_minute(b.clock, b.acc, b.last, rows)
            closes += 1
    return n, time.perf_counter() - t, closes


def run(quick: bool) -> list[Figure]:
    closes, naive_closes, frames = ((CLOSES // QUICK, NAIVE_CLOSES // QUICK, FRAMES // QUICK)
                                    if quick else (CLOSES, NAIVE_CLOSES, FRAMES))
    ring.warmup()
    ck.warmup()
    rng = np.random.default_rng(7)
    trades = [minute_trades(rng, k) for k in range(closes)]
    fast = bench_kernels(trades) / 1e3
    slow = bench_naive(trades[:naive_closes]) / 1e3
    n, secs, _ = bench_fold(rng, frames)
    what = f"bar close, {PRODUCTS} products, 1m+5m+1h windows of {CAPACITY:,} bars"
    naive = "naive Python loop, dict candles, np.roll windows"
    return [
        Figure("market data", f"{what}, median of {closes:,}", float(np.median(fast)), "µs",
               ("<", 1000.0), naive, float(np.median(slow)), higher_is_better=False),
        Figure("market data", f"{what}, p99", float(np.percentile(fast, 99)), "µs",
               ("<", 1000.0), naive, float(np.percentile(slow, 99)), higher_is_better=False),
        Figure("market data", "batch trade fold (kernel only), frames of 10-50 trades",
               n / secs, "trades/s"),
    ]


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
