"""Indicator kernels vs TA-Lib over 2,628,000 one-minute bars (5 years), same input, same run.

Run: .venv/bin/python -m benchmarks --only indicators [--quick]
Input: the real Coinbase BTC-USD 1m candles of tests/data, tiled to 2,628,000 bars
(--quick: a tenth). Each figure is the best of REPEATS runs after a warm-up call. Target: at
most 2x TA-Lib's time for the same function in the same run ("TA-Lib speed"). VWAP and
volatility have no TA-Lib twin; their baseline is a vectorised numpy equivalent, no target.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import talib
from figures import FIVE_YEARS_1M, Figure, minutes, report
from numpy.lib.stride_tricks import sliding_window_view

from trader.kernels import indicators as ind

REPEATS = 5
TALIB_FACTOR = 2.0


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, after one untimed call (JIT, caches)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
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


def run(quick: bool) -> list[Figure]:
    bars = FIVE_YEARS_1M // 10 if quick else FIVE_YEARS_1M
    repeats = 2 if quick else REPEATS
    ind.warmup()
    candles = minutes("BTC-USD", bars)
    h, l, c, v = candles.high, candles.low, candles.close, candles.volume  # noqa: E741
    out = []
    for name, ours, base_name, base in cases(h, l, c, v):
        t_ours, t_base = best_time(ours, repeats) * 1e3, best_time(base, repeats) * 1e3
        talib_twin = base_name == "talib"
        out.append(Figure(
            "indicators", f"{name}, {bars:,} bars, best of {repeats}", t_ours, "ms",
            ("<=", TALIB_FACTOR * t_base) if talib_twin else None,
            "TA-Lib" if talib_twin else "numpy", t_base, higher_is_better=False))
    return out


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
