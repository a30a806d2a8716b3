"""The indicator bank's batch step: one kernel call steps one indicator for every product slot.

Conventions (the bank itself, plain Python, is `trader.signals.indicators.IndicatorBank`):

* ``kind`` is one of the codes below; ``states`` is ``float64[slots, state_len]``, a row per
  slot of the kernels' ``<name>_state`` (see `trader.kernels.indicators`), ``fresh`` a fresh
  state row to reset to.
* Outputs go to ``now[slot, col : col + width]`` (``width`` outputs of the kind, in the order
  of its ``_step``); ``prev`` holds the values of the bar before.
* A gap row (NaN close) resets the slot's state and writes NaN outputs, as it resets the
  window's count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from trader.kernels import indicators as k
from trader.kernels.ring import CLOSE, FIELDS, HIGH, LOW, VOLUME

SMA, EMA, RSI, MACD, BBANDS, ATR, STOCH, ADX, OBV, VWAP, VOLATILITY = range(11)


# Adapters to one shape, (state, high, low, close, volume) -> tuple of outputs, so a single
# loop serves every kind. Inlined into `_each`, each kind gets a loop of its own that LLVM
# compiles with the step inlined: a shared loop switching on the kind per product kept the
# calls and the array-view refcounts, and ran 4-10x slower.
@njit(cache=True, inline="always")
def _sma(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.sma_step(s, c),)


@njit(cache=True, inline="always")
def _ema(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.ema_step(s, c),)


@njit(cache=True, inline="always")
def _rsi(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.rsi_step(s, c),)


@njit(cache=True, inline="always")
def _macd(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float, float, float]:
    return k.macd_step(s, c)


@njit(cache=True, inline="always")
def _bbands(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float, float, float]:
    return k.bbands_step(s, c)


@njit(cache=True, inline="always")
def _atr(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.atr_step(s, h, lo, c),)


@njit(cache=True, inline="always")
def _stoch(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float, float]:
    return k.stoch_step(s, h, lo, c)


@njit(cache=True, inline="always")
def _adx(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.adx_step(s, h, lo, c),)


@njit(cache=True, inline="always")
def _obv(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.obv_step(s, c, v),)


@njit(cache=True, inline="always")
def _vwap(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.vwap_step(s, h, lo, c, v),)


@njit(cache=True, inline="always")
def _volatility(s: np.ndarray, h: float, lo: float, c: float, v: float) -> tuple[float]:
    return (k.volatility_step(s, c),)


@njit(cache=True, inline="always")
def _each(step: Any, states: np.ndarray, fresh: np.ndarray, rows: np.ndarray,
          which: np.ndarray, now: np.ndarray, col: int, width: int) -> None:
    """Step each slot in `which` by its row; a gap row (NaN close) resets the state instead."""
    for i in range(states.shape[0]):
        if not which[i]:
            continue
        c = rows[i, CLOSE]
        if math.isnan(c):  # as the window's count resets on a gap
            states[i, :] = fresh
            for j in range(width):
                now[i, col + j] = np.nan
            continue
        out = step(states[i], rows[i, HIGH], rows[i, LOW], c, rows[i, VOLUME])
        for j in range(width):
            now[i, col + j] = out[j]


@njit(cache=True)
def step_rows(kind: int, states: np.ndarray, fresh: np.ndarray, rows: np.ndarray,
              which: np.ndarray, now: np.ndarray, col: int, width: int) -> None:
    """Step the state of every slot in `which` by rows[slot]; outputs to now[slot, col:]."""
    if kind == SMA:
        _each(_sma, states, fresh, rows, which, now, col, width)
    elif kind == EMA:
        _each(_ema, states, fresh, rows, which, now, col, width)
    elif kind == RSI:
        _each(_rsi, states, fresh, rows, which, now, col, width)
    elif kind == MACD:
        _each(_macd, states, fresh, rows, which, now, col, width)
    elif kind == BBANDS:
        _each(_bbands, states, fresh, rows, which, now, col, width)
    elif kind == ATR:
        _each(_atr, states, fresh, rows, which, now, col, width)
    elif kind == STOCH:
        _each(_stoch, states, fresh, rows, which, now, col, width)
    elif kind == ADX:
        _each(_adx, states, fresh, rows, which, now, col, width)
    elif kind == OBV:
        _each(_obv, states, fresh, rows, which, now, col, width)
    elif kind == VWAP:
        _each(_vwap, states, fresh, rows, which, now, col, width)
    else:
        _each(_volatility, states, fresh, rows, which, now, col, width)


@njit(cache=True)
def rebuild_rows(kind: int, states: np.ndarray, fresh: np.ndarray, bars: np.ndarray,
                 counts: np.ndarray, which: np.ndarray, now: np.ndarray, prev: np.ndarray,
                 col: int, width: int) -> None:
    """Fresh state stepped over the last counts[slot] rows of bars[slot] for each slot in which."""
    n, size = bars.shape[0], bars.shape[1]
    rows, live = np.empty((n, bars.shape[2])), np.zeros(n, np.bool_)
    for i in range(n):
        if which[i]:
            states[i, :] = fresh
            for j in range(width):
                now[i, col + j] = prev[i, col + j] = np.nan
    for r in range(size):
        stepped = False
        for i in range(n):
            live[i] = which[i] and counts[i] >= size - r
            if live[i]:
                stepped = True
                rows[i, :] = bars[i, r]
                if r == size - 1:
                    for j in range(width):
                        prev[i, col + j] = now[i, col + j]
        if stepped:
            step_rows(kind, states, fresh, rows, live, now, col, width)


def warmup() -> None:
    """Compile (or load from the numba cache) the batch kernels on tiny inputs."""
    fresh = k.sma_state(2)
    states, now = np.tile(fresh, (2, 1)), np.full((2, 1), np.nan)
    rebuild_rows(SMA, states, fresh, np.ones((2, 4, FIELDS)), np.array([4, 0]),
                 np.array([True, False]), now, now.copy(), 0, 1)  # steps through step_rows
