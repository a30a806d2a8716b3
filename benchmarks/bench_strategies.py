"""Strategies at a bar close for 500 products: indicator steps plus decisions, vs TA-Lib recompute.

Run: .venv/bin/python -m benchmarks --only strategies [--quick]
Input: the real Coinbase 1m candles of tests/data (BTC-USD, ETH-USD, LTC-USD, BTC-EUR), 500
products at staggered offsets, a 1,000-bar window per product. Strategies: four_step and
macd_bbands (5 distinct indicators after sharing MACD). Timed: `StrategyRunner.on_bar_close`
(step every product's indicators, one kernel call per indicator, then one decision kernel call
per strategy); the window push before it is not. Target: median and p99 under 1 ms.
Baseline, same run, same bars: "recompute per candle": for each product, TA-Lib recomputes the
same indicators over its last 1,000 bars and the same compiled `decide` is called from Python.
Target: at least 50x faster than it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import talib
from figures import REPO, Figure, minutes, report

from trader.config import StrategyConfig
from trader.kernels import ring
from trader.signals.runner import StrategyRunner
from trader.strategy import LoadedStrategy, load_strategy

PRODUCTS_1M = ("BTC-USD", "ETH-USD", "LTC-USD", "BTC-EUR")
PRODUCTS = 500
CAPACITY = 1_000
CLOSES = 2_000
BASELINE_CLOSES = 20
QUICK = 10  # --quick: a tenth of the closes
STRATEGIES = ("four_step", "macd_bbands")


def load_bars(closes: int) -> np.ndarray:
    """[PRODUCTS, CAPACITY + closes, FIELDS]: real candles, each product at its own offset."""
    need = CAPACITY + closes
    tables = [np.column_stack(minutes(name).columns()).astype(np.float64)
              for name in PRODUCTS_1M]
    out = np.empty((PRODUCTS, need, ring.FIELDS))
    for p in range(PRODUCTS):
        table = tables[p % len(tables)]
        start = (p * 97) % (len(table) - need)
        out[p] = table[start : start + need]
    return out


def strategies() -> dict[str, LoadedStrategy]:
    loaded = {}
    for name in STRATEGIES:
        one = load_strategy(REPO / "strategies" / f"{name}.py", name,
                            StrategyConfig(interval="1m"))
        if not isinstance(one, LoadedStrategy):
            raise SystemExit(f"strategy {name} failed to load: {one}")
        loaded[name] = one
    return loaded


def bench_runner(bars: np.ndarray, loaded: dict[str, LoadedStrategy],
                 closes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bar close wall time and this thread's CPU time (ns) of the runner: on a shared
    machine a wall time far above the CPU time is time spent off the CPU."""
    runner = StrategyRunner(loaded)
    window = ring.new_window(PRODUCTS, CAPACITY)
    slots = {f"P{p}-USD": p for p in range(PRODUCTS)}
    for t in range(CAPACITY):
        ring.push_all(window.buf, window.head, window.count, np.ascontiguousarray(bars[:, t]))
    runner.on_bar_close(60, 0, window, slots)  # warms every state from the window (untimed)
    took, cpu = np.empty(closes, np.int64), np.empty(closes, np.int64)
    for k in range(closes):
        ring.push_all(window.buf, window.head, window.count,
                      np.ascontiguousarray(bars[:, CAPACITY + k]))
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        runner.on_bar_close(60, k, window, slots)
        cpu[k] = time.thread_time_ns() - start_cpu
        took[k] = time.perf_counter_ns() - start
    return took, cpu


def recompute_product(rows: np.ndarray, loaded: dict[str, LoadedStrategy]) -> None:
    """The recompute-per-candle way for one product: TA-Lib over its window, then decide."""
    h, lo, c = (np.ascontiguousarray(rows[:, f]) for f in (ring.HIGH, ring.LOW, ring.CLOSE))
    fs, mb = loaded["four_step"].params, loaded["macd_bbands"].params
    m, sig, hist = talib.MACD(c, 12, 26, 9)  # both strategies' MACD at default params
    up, mid, low = talib.BBANDS(c, mb["bb_period"], mb["bb_dev"], mb["bb_dev"])
    series = {"trend": talib.EMA(c, fs["trend"]), "rsi": talib.RSI(c, fs["rsi_period"]),
              "atr": talib.ATR(h, lo, c, fs["atr_period"]), "macd_macd": m,
              "macd_signal": sig, "macd_hist": hist, "bb_upper": up, "bb_middle": mid,
              "bb_lower": low}
    for strategy in loaded.values():
        names = strategy.module.C._fields  # the strategy's own column order
        strategy.module.decide(np.array([series[n][-1] for n in names]),
                               np.array([series[n][-2] for n in names]),
                               np.ascontiguousarray(rows[-strategy.bars:]),
                               strategy.param_array)


def bench_recompute(bars: np.ndarray, loaded: dict[str, LoadedStrategy],
                    closes: int) -> np.ndarray:
    """Per bar close wall time (ns) of the baseline."""
    took = np.empty(closes, np.int64)
    for k in range(closes):
        end = CAPACITY + k + 1
        start = time.perf_counter_ns()
        for p in range(PRODUCTS):
            recompute_product(bars[p, end - CAPACITY : end], loaded)
        took[k] = time.perf_counter_ns() - start
    return took


def run(quick: bool) -> list[Figure]:
    closes, baseline_closes = ((CLOSES // QUICK, BASELINE_CLOSES // QUICK) if quick
                               else (CLOSES, BASELINE_CLOSES))
    bars = load_bars(closes)
    loaded = strategies()
    ours, cpu = (a / 1e3 for a in bench_runner(bars, loaded, closes))
    base = bench_recompute(bars, loaded, baseline_closes) / 1e3
    what = f"bar close, {PRODUCTS} products, four_step + macd_bbands"
    baseline = f"TA-Lib recompute over {CAPACITY:,} bars + decide, per product"
    med, base_med = float(np.median(ours)), float(np.median(base))
    return [
        Figure("strategies", f"{what}, median of {closes:,}", med, "µs", ("<", 1000.0),
               baseline, base_med, higher_is_better=False),
        Figure("strategies", f"{what}, p99", float(np.percentile(ours, 99)), "µs",
               ("<", 1000.0), higher_is_better=False),
        Figure("strategies", "the same, p99 of the thread's CPU time (off-CPU time left out)",
               float(np.percentile(cpu, 99)), "µs", higher_is_better=False),
        Figure("strategies", "the same, times faster than recompute per candle (medians)",
               base_med / med, "x", (">=", 50.0)),
    ]


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
