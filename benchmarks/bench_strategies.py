"""Strategies at a bar close for 500 products: indicator steps plus decisions, vs TA-Lib recompute.

Run: .venv/bin/python benchmarks/bench_strategies.py
Input: real Binance 1m candles of ../shared/data (BTC, ETH, SOL), 500 products at staggered
offsets, a 1,000-bar window per product. Strategies: four_step and macd_bbands (5 distinct
indicators after sharing MACD). Timed: `StrategyRunner.on_bar_close` (step every product's
indicators, one kernel call per indicator, then one decision kernel call per strategy); the
window push before it is not. Target: median and p99 under 1 ms.
Baseline, same run, same bars: "recompute per candle": for each product, TA-Lib recomputes the
same indicators over its last 1,000 bars and the same compiled `decide` is called from Python.
"""

from __future__ import annotations

import gzip
import platform
import time
from pathlib import Path

import numpy as np
import talib

from trader.config import StrategyConfig
from trader.kernels import ring
from trader.signals.runner import StrategyRunner
from trader.strategy import LoadedStrategy, load_strategies

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FILES = ("binance_BTC-USDT_1m.csv.gz", "binance_ETH-USDT_1m.csv.gz", "binance_SOL-USDT_1m.csv.gz")
PRODUCTS = 500
CAPACITY = 1_000
CLOSES = 2_000
BASELINE_CLOSES = 20
STRATEGIES = ("four_step", "macd_bbands")


def load_bars() -> np.ndarray:
    """[PRODUCTS, CAPACITY + CLOSES, FIELDS]: real candles, each product at its own offset."""
    need = CAPACITY + CLOSES
    tables = []
    for name in FILES:
        with gzip.open(DATA / name, "rt") as f:
            tables.append(np.loadtxt(f, delimiter=",", skiprows=1, max_rows=60_000))
    out = np.empty((PRODUCTS, need, ring.FIELDS))
    for p in range(PRODUCTS):
        table = tables[p % len(tables)]
        start = (p * 97) % (len(table) - need)
        out[p] = table[start : start + need]
    return out


def strategies() -> dict[str, LoadedStrategy]:
    loaded = load_strategies(REPO / "strategies",
                             {n: StrategyConfig(interval="1m") for n in STRATEGIES})
    if isinstance(loaded, list):
        raise SystemExit(f"strategies failed to load: {loaded}")
    return loaded


def bench_runner(bars: np.ndarray, loaded: dict[str, LoadedStrategy]) -> tuple[np.ndarray, int]:
    """Per bar close wall time (ns) of the runner, and how many signals it returned."""
    runner = StrategyRunner(loaded)
    window = ring.new_window(PRODUCTS, CAPACITY)
    slots = {f"P{p}-USD": p for p in range(PRODUCTS)}
    for t in range(CAPACITY):
        ring.push_all(window.buf, window.head, window.count, np.ascontiguousarray(bars[:, t]))
    runner.on_bar_close(60, 0, window, slots)  # warms every state from the window (untimed)
    took = np.empty(CLOSES, np.int64)
    signals = 0
    for k in range(CLOSES):
        ring.push_all(window.buf, window.head, window.count,
                      np.ascontiguousarray(bars[:, CAPACITY + k]))
        start = time.perf_counter_ns()
        signals += len(runner.on_bar_close(60, k, window, slots))
        took[k] = time.perf_counter_ns() - start
    return took, signals


def recompute_product(rows: np.ndarray, loaded: dict[str, LoadedStrategy]) -> None:
    """The recompute-per-candle way for one product: TA-Lib over its window, then decide."""
    h, lo, c = (np.ascontiguousarray(rows[:, f]) for f in (ring.HIGH, ring.LOW, ring.CLOSE))
    fs, mb = loaded["four_step"], loaded["macd_bbands"]
    p = fs.params
    trend = talib.EMA(c, p["trend"])
    r = talib.RSI(c, p["rsi_period"])
    m, sig, hist = talib.MACD(c, 12, 26, 9)
    a = talib.ATR(h, lo, c, p["atr_period"])
    q = mb.params
    up, mid, low = talib.BBANDS(c, q["bb_period"], q["bb_dev"], q["bb_dev"])
    bar = np.ascontiguousarray(rows[-1])
    fs.module.decide(np.array([trend[-1], r[-1], m[-1], sig[-1], hist[-1], a[-1], c[-1]]),
                     np.array([trend[-2], r[-2], m[-2], sig[-2], hist[-2], a[-2], c[-2]]),
                     bar, fs.param_array)
    mb.module.decide(np.array([up[-1], mid[-1], low[-1], m[-1], sig[-1], hist[-1], c[-1]]),
                     np.array([up[-2], mid[-2], low[-2], m[-2], sig[-2], hist[-2], c[-2]]),
                     bar, mb.param_array)


def bench_recompute(bars: np.ndarray, loaded: dict[str, LoadedStrategy]) -> np.ndarray:
    """Per bar close wall time (ns) of the baseline."""
    took = np.empty(BASELINE_CLOSES, np.int64)
    for k in range(BASELINE_CLOSES):
        end = CAPACITY + k + 1
        start = time.perf_counter_ns()
        for p in range(PRODUCTS):
            recompute_product(bars[p, end - CAPACITY : end], loaded)
        took[k] = time.perf_counter_ns() - start
    return took


def main() -> None:
    bars = load_bars()
    loaded = strategies()
    ours, signals = bench_runner(bars, loaded)
    base = bench_recompute(bars, loaded)
    med, p99 = np.median(ours) / 1e3, np.percentile(ours, 99) / 1e3
    base_med = np.median(base) / 1e3
    ratio = base_med / med
    print(f"machine: {platform.machine()} {platform.processor() or ''} python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"bar close, {PRODUCTS} products, strategies {', '.join(STRATEGIES)} "
          f"({CLOSES} closes, {signals} signals)")
    print(f"  runner:    median {med:8.1f} us   p99 {p99:8.1f} us   "
          f"(target < 1000 us: {'ok' if p99 < 1000 else 'MISSED'})")
    print(f"  baseline (recompute per candle: TA-Lib over {CAPACITY} bars + decide, per product):"
          f" median {base_med:10.1f} us")
    print(f"  ratio:     {ratio:8.1f}x   (target >= 50x: {'ok' if ratio >= 50 else 'MISSED'})")


if __name__ == "__main__":
    main()
