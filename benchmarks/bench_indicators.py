"""Indicator kernels vs TA-Lib over 2,628,000 one-minute bars (5 years), same input, same run.

Run: .venv/bin/python benchmarks/bench_indicators.py
Input: the real Binance BTC-USDT 1m candles of ../shared/data, tiled to 2,628,000 bars.
Each figure is the best of REPEATS runs after a warm-up call. VWAP and volatility have no
TA-Lib twin; their baseline is a vectorised numpy equivalent.
"""

from __future__ import annotations

import gzip
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import talib
from numpy.lib.stride_tricks import sliding_window_view

from trader.kernels import indicators as ind

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance_BTC-USDT_1m.csv.gz"
BARS = 2_628_000
REPEATS = 5


def load_bars() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """High, low, close, volume of the real file, tiled to BARS contiguous float64 arrays."""
    with gzip.open(DATA, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1)
    reps = -(-BARS // len(table))
    tiled = np.tile(table, (reps, 1))[:BARS]
    return tuple(np.ascontiguousarray(tiled[:, col]) for col in (2, 3, 4, 5))


def best_time(fn: Callable[[], object]) -> float:
    """Best wall time of REPEATS calls, after one untimed call (JIT, caches)."""
    fn()
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_vwap(h, l, c, v, period):  # noqa: E741
    """Baseline: windowed sums by cumulative sums."""
    pv = np.concatenate(([0.0], np.cumsum((h + l + c) / 3.0 * v)))
    vs = np.concatenate(([0.0], np.cumsum(v)))
    out = np.full(c.size, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[period - 1 :] = (pv[period:] - pv[:-period]) / (vs[period:] - vs[:-period])
    return out


def numpy_volatility(c, period):
    """Baseline: sample stdev over sliding windows of log returns."""
    out = np.full(c.size, np.nan)
    out[period:] = sliding_window_view(np.log(c[1:] / c[:-1]), period).std(axis=1, ddof=1)
    return out


def cases(h, l, c, v):  # noqa: E741
    """(name, ours, baseline name, baseline) for every indicator, TA-Lib default parameters."""
    return [
        ("SMA(30)", lambda: ind.sma_series(c, 30), "talib", lambda: talib.SMA(c, 30)),
        ("EMA(30)", lambda: ind.ema_series(c, 30), "talib", lambda: talib.EMA(c, 30)),
        ("RSI(14)", lambda: ind.rsi_series(c, 14), "talib", lambda: talib.RSI(c, 14)),
        ("MACD(12,26,9)", lambda: ind.macd_series(c, 12, 26, 9), "talib",
         lambda: talib.MACD(c, 12, 26, 9)),
        ("BBANDS(20,2)", lambda: ind.bbands_series(c, 20, 2.0), "talib",
         lambda: talib.BBANDS(c, 20, 2.0, 2.0)),
        ("ATR(14)", lambda: ind.atr_series(h, l, c, 14), "talib", lambda: talib.ATR(h, l, c, 14)),
        ("STOCH(5,3,3)", lambda: ind.stoch_series(h, l, c, 5, 3, 3), "talib",
         lambda: talib.STOCH(h, l, c, 5, 3, 0, 3, 0)),
        ("ADX(14)", lambda: ind.adx_series(h, l, c, 14), "talib", lambda: talib.ADX(h, l, c, 14)),
        ("OBV", lambda: ind.obv_series(c, v), "talib", lambda: talib.OBV(c, v)),
        ("VWAP(20)", lambda: ind.vwap_series(h, l, c, v, 20), "numpy",
         lambda: numpy_vwap(h, l, c, v, 20)),
        ("VOLATILITY(60)", lambda: ind.volatility_series(c, 60), "numpy",
         lambda: numpy_volatility(c, 60)),
    ]


def main() -> None:
    start = time.perf_counter()
    ind.warmup()
    print(f"warmup(): {time.perf_counter() - start:.2f} s (cold unless the numba cache is warm)")
    h, l, c, v = load_bars()  # noqa: E741
    print(f"{BARS:,} bars, best of {REPEATS}; {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"{'indicator':<16}{'ours s':>10}{'baseline s':>12}  {'baseline':<8}{'ours/base':>10}")
    for name, ours, base_name, base in cases(h, l, c, v):
        t_ours, t_base = best_time(ours), best_time(base)
        print(f"{name:<16}{t_ours:>10.4f}{t_base:>12.4f}  {base_name:<8}{t_ours / t_base:>10.2f}")


if __name__ == "__main__":
    main()
