"""Indicator kernels against TA-Lib (real candles and generated series) and numpy references.

Tolerance for TA-Lib parity: |ours - talib| <= 1e-9 * max(|talib|, floor), NaN exactly where
TA-Lib has NaN. The floor is the scale the indicator's rounding lives at, so values that hover
around 0 (MACD and its histogram, ATR on flat bars) are not held to a relative bound: the
input's largest |close| for price-valued outputs, 100 for the 0..100 oscillators, the total
|volume| for OBV.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from trader.kernels import indicators as ind

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MAX_ROWS = 300_000  # a cap for larger files; every bar of the Coinbase 1m files is used
FILES = sorted(DATA_DIR.glob("*_1m.csv.gz")) or [DATA_DIR / "no *_1m.csv.gz files found"]
RTOL = 1e-9

Bars = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # high, low, close, volume
Outputs = tuple[np.ndarray, ...]


def price_floor(bars: Bars) -> float:
    return float(np.max(np.abs(bars[2]), initial=1.0))


def oscillator_floor(bars: Bars) -> float:
    return 100.0


def volume_floor(bars: Bars) -> float:
    return float(np.sum(np.abs(bars[3]))) or 1.0


# name -> (ours, talib, floor); TA-Lib called with its default parameters.
CASES: dict[str, tuple[Callable[[Bars], Outputs], Callable[[Bars], Outputs], Callable]] = {
    "SMA": (lambda b: (ind.sma_series(b[2], 30),), lambda b: (talib.SMA(b[2]),), price_floor),
    "EMA": (lambda b: (ind.ema_series(b[2], 30),), lambda b: (talib.EMA(b[2]),), price_floor),
    "RSI": (lambda b: (ind.rsi_series(b[2], 14),), lambda b: (talib.RSI(b[2]),),
            oscillator_floor),
    "MACD": (lambda b: ind.macd_series(b[2], 12, 26, 9), lambda b: talib.MACD(b[2]),
             price_floor),
    "BBANDS": (lambda b: ind.bbands_series(b[2], 20, 2.0), lambda b: talib.BBANDS(b[2]),
               price_floor),
    "ATR": (lambda b: (ind.atr_series(b[0], b[1], b[2], 14),),
            lambda b: (talib.ATR(b[0], b[1], b[2]),), price_floor),
    "STOCH": (lambda b: ind.stoch_series(b[0], b[1], b[2], 5, 3, 3),
              lambda b: talib.STOCH(b[0], b[1], b[2]), oscillator_floor),
    "ADX": (lambda b: (ind.adx_series(b[0], b[1], b[2], 14),),
            lambda b: (talib.ADX(b[0], b[1], b[2]),), oscillator_floor),
    "OBV": (lambda b: (ind.obv_series(b[2], b[3]),), lambda b: (talib.OBV(b[2], b[3]),),
            volume_floor),
}


@cache
def load_bars(path: Path) -> Bars:
    """High, low, close, volume of a candle file as contiguous float64 arrays."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, max_rows=MAX_ROWS, ndmin=2)
    return tuple(np.ascontiguousarray(table[:, col]) for col in (2, 3, 4, 5))


def assert_close(ours: np.ndarray, ref: np.ndarray, floor: float, label: str) -> None:
    assert ours.shape == ref.shape, label
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(ours), nan), f"{label}: NaN positions differ"
    err = np.abs(ours[~nan] - ref[~nan])
    bound = RTOL * np.maximum(np.abs(ref[~nan]), floor)
    bad = np.flatnonzero(err > bound)
    assert bad.size == 0, (
        f"{label}: {bad.size} values off, first at {np.flatnonzero(~nan)[bad[0]]}: "
        f"{ours[~nan][bad[0]]!r} vs {ref[~nan][bad[0]]!r}"
    )


def assert_matches_talib(name: str, bars: Bars) -> None:
    ours, theirs, floor = CASES[name]
    for i, (a, b) in enumerate(zip(ours(bars), theirs(bars), strict=True)):
        assert_close(a, b, floor(bars), f"{name}[{i}]")


def test_data_dir_has_one_minute_files() -> None:
    assert DATA_DIR.is_dir(), f"candle data missing: {DATA_DIR}"
    assert any(DATA_DIR.glob("*_1m.csv.gz")), f"no *_1m.csv.gz in {DATA_DIR}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("name", list(CASES))
def test_equals_talib_on_real_candles(name: str, path: Path) -> None:
    assert_matches_talib(name, load_bars(path))


@st.composite
def candles(draw: st.DrawFn) -> Bars:
    """OHLCV on a price tick: random walk with flat runs, one-bar spikes and zero volumes."""
    size = draw(st.integers(1, 160))
    start = draw(st.floats(0.01, 1e5))
    moves = draw(st.lists(st.one_of(st.just(0.0), st.floats(-0.05, 0.05)),
                          min_size=size, max_size=size))
    returns = np.array(moves)
    for at, length in draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(2, 60)),
                                    max_size=3)):
        returns[at : at + length] = 0.0
    close = start * np.exp(np.cumsum(returns))
    for at, factor in draw(st.lists(st.tuples(st.integers(0, size - 1),
                                              st.sampled_from([0.01, 0.5, 2.0, 100.0])),
                                    max_size=2)):
        close[at] *= factor
    tick = 10.0 ** (np.floor(np.log10(start)) - 4)
    wicks = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.01]),
                                   min_size=2 * size, max_size=2 * size)))
    close = np.maximum(np.round(close / tick), 1.0) * tick
    high = np.ceil(close * (1.0 + wicks[:size]) / tick) * tick
    low = np.maximum(np.floor(close * (1.0 - wicks[size:]) / tick), 1.0) * tick
    volume = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e4)),
                                    min_size=size, max_size=size)))
    return high, low, close, volume


GENERATED = settings(max_examples=30, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(CASES))
@GENERATED
@given(bars=candles())
def test_equals_talib_on_generated_series(name: str, bars: Bars) -> None:
    assert_matches_talib(name, bars)


@GENERATED
@given(bars=candles(), period=st.integers(2, 30), fast=st.integers(2, 30),
       signal=st.integers(2, 12))
def test_equals_talib_with_other_parameters(
    bars: Bars, period: int, fast: int, signal: int
) -> None:
    high, low, close, _ = bars
    scale = price_floor(bars)
    assert_close(ind.sma_series(close, period), talib.SMA(close, period), scale, "SMA")
    assert_close(ind.ema_series(close, period), talib.EMA(close, period), scale, "EMA")
    assert_close(ind.rsi_series(close, period), talib.RSI(close, period), 100.0, "RSI")
    assert_close(ind.atr_series(high, low, close, period), talib.ATR(high, low, close, period),
                 scale, "ATR")
    assert_close(ind.adx_series(high, low, close, period), talib.ADX(high, low, close, period),
                 100.0, "ADX")
    for a, b in zip(ind.macd_series(close, fast, period, signal),
                    talib.MACD(close, fast, period, signal), strict=True):
        assert_close(a, b, scale, "MACD")
    for a, b in zip(ind.bbands_series(close, period, 1.5),
                    talib.BBANDS(close, period, 1.5, 1.5), strict=True):
        assert_close(a, b, scale, "BBANDS")
    for a, b in zip(ind.stoch_series(high, low, close, period, fast, signal),
                    talib.STOCH(high, low, close, period, fast, 0, signal, 0), strict=True):
        assert_close(a, b, 100.0, "STOCH")


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    return {flag for line in text.splitlines() if line.startswith("flags")
            for flag in line.split(":", 1)[1].split()}


# The kernels follow TA-Lib 0.8's FMA build operation for operation; TA-Lib runs that build
# on a CPU with FMA (an ifunc), elsewhere its plain one, which differs in the last bits.
BIT_EXACT = talib.__ta_version__.startswith(b"0.8.") and {"fma", "avx2"} <= cpu_flags()


def random_walk_bars(size: int = 20_000, seed: int = 7) -> Bars:
    """Untruncated floats: unlike prices on a tick, they show any unfused multiply-add."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, size)))
    high = close * (1.0 + np.abs(rng.normal(0.0, 0.003, size)))
    low = close * (1.0 - np.abs(rng.normal(0.0, 0.003, size)))
    return high, low, close, rng.uniform(0.0, 10.0, size)


@pytest.mark.skipif(not BIT_EXACT, reason="needs TA-Lib 0.8 and an FMA CPU")
@pytest.mark.parametrize("name", list(CASES))
def test_equals_talib_bit_for_bit(name: str) -> None:
    ours, theirs, _ = CASES[name]
    for bars in [random_walk_bars(), *(load_bars(path) for path in FILES)]:
        for i, (a, b) in enumerate(zip(ours(bars), theirs(bars), strict=True)):
            assert np.array_equal(a, b, equal_nan=True), (
                f"{name}[{i}]: {np.sum(a != b) - np.sum(np.isnan(a) & np.isnan(b))} values differ"
            )


def numpy_vwap(bars: Bars, period: int) -> np.ndarray:
    high, low, close, volume = bars
    out = np.full(close.size, np.nan)
    if close.size >= period:
        pv = sliding_window_view((high + low + close) / 3.0 * volume, period).sum(axis=1)
        vol = sliding_window_view(volume, period)
        quiet = ~vol.any(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[period - 1 :] = np.where(quiet, np.nan, pv / vol.sum(axis=1))
    return out


def numpy_volatility(close: np.ndarray, period: int) -> np.ndarray:
    out = np.full(close.size, np.nan)
    if close.size > period:
        returns = np.log(close[1:] / close[:-1])
        out[period:] = sliding_window_view(returns, period).std(axis=1, ddof=1)
    return out


@GENERATED
@given(bars=candles(), period=st.integers(1, 40))
def test_vwap_matches_numpy(bars: Bars, period: int) -> None:
    ours = ind.vwap_series(*bars, period)
    assert_close(ours, numpy_vwap(bars, period), 0.0, "VWAP")


@GENERATED
@given(bars=candles(), period=st.integers(2, 40))
def test_volatility_matches_numpy(bars: Bars, period: int) -> None:
    ours = ind.volatility_series(bars[2], period)
    assert_close(ours, numpy_volatility(bars[2], period), 1e-6, "volatility")


@pytest.mark.parametrize("path", FILES[:1] + FILES[-1:], ids=lambda p: p.name)
def test_vwap_and_volatility_on_real_candles(path: Path) -> None:
    bars = load_bars(path)
    assert_close(ind.vwap_series(*bars, 20), numpy_vwap(bars, 20), 0.0, "VWAP")
    assert_close(ind.volatility_series(bars[2], 60), numpy_volatility(bars[2], 60), 1e-6,
                 "volatility")


# name -> (state allocator, step over one bar b = (high, low, close, volume), series)
STEPPED: dict[str, tuple[Callable, Callable, Callable]] = {
    "sma": (lambda: ind.sma_state(7), lambda s, b: (ind.sma_step(s, b[2]),),
            lambda b: (ind.sma_series(b[2], 7),)),
    "ema": (lambda: ind.ema_state(7), lambda s, b: (ind.ema_step(s, b[2]),),
            lambda b: (ind.ema_series(b[2], 7),)),
    "rsi": (lambda: ind.rsi_state(7), lambda s, b: (ind.rsi_step(s, b[2]),),
            lambda b: (ind.rsi_series(b[2], 7),)),
    "macd": (lambda: ind.macd_state(5, 9, 4), lambda s, b: ind.macd_step(s, b[2]),
             lambda b: ind.macd_series(b[2], 5, 9, 4)),
    "bbands": (lambda: ind.bbands_state(7, 2.0), lambda s, b: ind.bbands_step(s, b[2]),
               lambda b: ind.bbands_series(b[2], 7, 2.0)),
    "atr": (lambda: ind.atr_state(7), lambda s, b: (ind.atr_step(s, *b[:3]),),
            lambda b: (ind.atr_series(*b[:3], 7),)),
    "stoch": (lambda: ind.stoch_state(5, 3, 3), lambda s, b: ind.stoch_step(s, *b[:3]),
              lambda b: ind.stoch_series(*b[:3], 5, 3, 3)),
    "adx": (lambda: ind.adx_state(7), lambda s, b: (ind.adx_step(s, *b[:3]),),
            lambda b: (ind.adx_series(*b[:3], 7),)),
    "obv": (ind.obv_state, lambda s, b: (ind.obv_step(s, b[2], b[3]),),
            lambda b: (ind.obv_series(b[2], b[3]),)),
    "vwap": (lambda: ind.vwap_state(7), lambda s, b: (ind.vwap_step(s, *b),),
             lambda b: (ind.vwap_series(*b, 7),)),
    "volatility": (lambda: ind.volatility_state(7),
                   lambda s, b: (ind.volatility_step(s, b[2]),),
                   lambda b: (ind.volatility_series(b[2], 7),)),
}


@pytest.mark.parametrize("name", list(STEPPED))
def test_step_bar_by_bar_equals_series_exactly(name: str) -> None:
    make, step, series = STEPPED[name]
    bars = tuple(col[:3000] for col in load_bars(FILES[0]))
    state = make()
    stepped = np.array([step(state, bar) for bar in zip(*bars, strict=True)]).T
    for live, batch in zip(stepped, series(bars), strict=True):
        np.testing.assert_array_equal(live, batch)


@njit
def step_all_products(stochs: np.ndarray, rsis: np.ndarray, highs, lows, closes, out) -> None:
    """What a caller's batch kernel looks like: each bar for every product (row) at once."""
    for t in range(closes.shape[1]):
        for p in range(closes.shape[0]):
            k, d = ind.stoch_step(stochs[p], highs[p, t], lows[p, t], closes[p, t])
            out[p, t, 0], out[p, t, 1] = k, d
            out[p, t, 2] = ind.rsi_step(rsis[p], closes[p, t])


def test_two_dimensional_states_step_every_product_in_one_call() -> None:
    columns = [load_bars(path) for path in FILES[:3]]
    size = min(2000, *(b[2].size for b in columns))
    high, low, close = (np.stack([b[col][:size] for b in columns]) for col in range(3))
    stochs = np.tile(ind.stoch_state(5, 3, 3), (len(columns), 1))
    rsis = np.tile(ind.rsi_state(14), (len(columns), 1))
    out = np.empty((len(columns), size, 3))
    step_all_products(stochs, rsis, high, low, close, out)
    for p in range(len(columns)):
        k, d = ind.stoch_series(high[p], low[p], close[p], 5, 3, 3)
        np.testing.assert_array_equal(out[p, :, 0], k)
        np.testing.assert_array_equal(out[p, :, 1], d)
        np.testing.assert_array_equal(out[p, :, 2], ind.rsi_series(close[p], 14))


def test_macd_swaps_fast_and_slow_like_talib() -> None:
    close = load_bars(FILES[0])[2][:500]
    for a, b in zip(ind.macd_series(close, 26, 12, 9), talib.MACD(close, 26, 12, 9),
                    strict=True):
        assert_close(a, b, price_floor((close, close, close, close)), "MACD swapped")


def test_state_allocators_reject_bad_periods() -> None:
    with pytest.raises(ValueError):
        ind.adx_state(1)
    with pytest.raises(ValueError):
        ind.volatility_state(1)


def test_warmup_compiles_everything() -> None:
    ind.warmup()
