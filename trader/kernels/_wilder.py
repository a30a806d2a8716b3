"""RSI, ATR and ADX: Wilder-smoothed kernels (conventions: `trader.kernels.indicators`)."""

from __future__ import annotations

import math

import numpy as np

from trader.kernels._indicator_base import (
    EPS,
    NAN,
    arith,
    fma,
    kernel,
    new_output,
    new_state,
    true_range,
)


# RSI [n, period, prev_close, avg_gain, avg_loss]
@kernel
def rsi_state(period: int) -> np.ndarray:
    """State for `rsi_step`."""
    return new_state(5, period, 1)


@arith
def _rsi_next(n, prev, gain, loss, period, x):
    """One RSI bar as TA-Lib 0.8: sums of the first period, then Wilder averages that multiply
    by 1/period; 0 when both averages are 0."""
    if period == 1:  # TA-Lib passes the input through for period 1
        return n + 1, prev, gain, loss, (x if n > 0 else NAN)
    if n == 0:
        return 1, x, gain, loss, NAN
    diff = x - prev
    up = diff if diff > 0.0 else 0.0
    if n > period:
        gain *= period - 1
        loss *= period - 1
    gain += up
    loss += up - diff
    if n < period:
        return n + 1, x, gain, loss, NAN
    inv = 1.0 / period
    gain *= inv
    loss *= inv
    total = gain + loss
    return n + 1, x, gain, loss, (gain / total) * 100.0 if total > 0.0 else 0.0


@kernel
def rsi_step(state: np.ndarray, x: float) -> float:
    """Wilder's relative strength index, 0..100 (TA-Lib RSI)."""
    n, prev, gain, loss, value = _rsi_next(
        int(state[0]), state[2], state[3], state[4], int(state[1]), x
    )
    state[0], state[2], state[3], state[4] = n, prev, gain, loss
    return value


@kernel
def rsi_series(close: np.ndarray, period: int) -> np.ndarray:
    """`rsi_step` over every bar."""
    rsi_state(period)  # validates the period
    out = new_output(close.size)
    n, prev, gain, loss = 0, 0.0, 0.0, 0.0
    for i in range(close.size):
        n, prev, gain, loss, out[i] = _rsi_next(n, prev, gain, loss, period, close[i])
    return out


# ATR [n, period, prev_close, atr (the seed sum while warming up)]
@kernel
def atr_state(period: int) -> np.ndarray:
    """State for `atr_step`."""
    return new_state(4, period, 1)


@arith
def _atr_next(n, prev_close, atr, period, high, low, close):
    """One ATR bar; TA-Lib 0.8 smooths as fma(atr, w, tr * (1 - w)) with w = (period-1)/period."""
    if n == 0:
        return 1, close, atr, NAN
    tr = true_range(high, low, prev_close)
    if n > period:
        w = (period - 1) / period
        atr = fma(atr, w, tr * (1.0 - w))
        return n + 1, close, atr, atr
    atr += tr
    if n < period:
        return n + 1, close, atr, NAN
    atr /= period
    return n + 1, close, atr, atr


@kernel
def atr_step(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Wilder's average true range (TA-Lib ATR)."""
    n, prev_close, atr, value = _atr_next(
        int(state[0]), state[2], state[3], int(state[1]), high, low, close
    )
    state[0], state[2], state[3] = n, prev_close, atr
    return value


@kernel
def atr_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """`atr_step` over every bar."""
    atr_state(period)  # validates the period
    out = new_output(close.size)
    n, prev_close, atr = 0, 0.0, 0.0
    for i in range(close.size):
        n, prev_close, atr, out[i] = _atr_next(n, prev_close, atr, period, high[i], low[i],
                                               close[i])
    return out


# ADX [n, period, prev_high, prev_low, prev_close, plus_dm, minus_dm, tr, sum_dx, adx]
@kernel
def adx_state(period: int) -> np.ndarray:
    """State for `adx_step`."""
    return new_state(10, period, 2)


@arith
def _dx(plus_dm: float, minus_dm: float, tr: float) -> float:
    """Directional index, NaN where TA-Lib skips the bar (zero range or zero DI sum)."""
    if -EPS < tr < EPS:
        return NAN
    minus_di = 100.0 * (minus_dm / tr)
    plus_di = 100.0 * (plus_dm / tr)
    total = minus_di + plus_di
    if -EPS < total < EPS:
        return NAN
    return 100.0 * (abs(minus_di - plus_di) / total)


@arith
def _adx_next(n, bar, dms, sum_dx, adx, period, high, low, close):
    """One ADX bar; `bar` is the previous (high, low, close), `dms` the (+DM, -DM, TR) sums."""
    plus_dm, minus_dm, tr_sum = dms
    up, down = high - bar[0], bar[1] - low
    tr = true_range(high, low, bar[2])
    bar = (high, low, close)
    if n == 0:
        return 1, bar, dms, sum_dx, adx, NAN
    if n >= period:  # past the first period the sums become Wilder averages
        plus_dm -= plus_dm / period
        minus_dm -= minus_dm / period
        tr_sum = tr_sum - tr_sum / period + tr
    else:
        tr_sum += tr
    if down > 0 and up < down:
        minus_dm += down
    elif up > 0 and up > down:
        plus_dm += up
    dms = (plus_dm, minus_dm, tr_sum)
    if n < period:
        return n + 1, bar, dms, sum_dx, adx, NAN
    dx = _dx(plus_dm, minus_dm, tr_sum)
    if n > 2 * period - 1:
        if not math.isnan(dx):
            adx = (adx * (period - 1) + dx) / period
        return n + 1, bar, dms, sum_dx, adx, adx
    if not math.isnan(dx):
        sum_dx += dx
    if n < 2 * period - 1:
        return n + 1, bar, dms, sum_dx, adx, NAN
    adx = sum_dx / period
    return n + 1, bar, dms, sum_dx, adx, adx


@kernel
def adx_step(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Wilder's average directional index (TA-Lib ADX)."""
    n, bar, dms, sum_dx, adx, value = _adx_next(
        int(state[0]), (state[2], state[3], state[4]), (state[5], state[6], state[7]),
        state[8], state[9], int(state[1]), high, low, close,
    )
    state[0], state[8], state[9] = n, sum_dx, adx
    state[2], state[3], state[4] = bar
    state[5], state[6], state[7] = dms
    return value


@kernel
def adx_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """`adx_step` over every bar."""
    adx_state(period)  # validates the period
    out = new_output(close.size)
    n, bar, dms, sum_dx, adx = 0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0, 0.0
    for i in range(close.size):
        n, bar, dms, sum_dx, adx, out[i] = _adx_next(n, bar, dms, sum_dx, adx, period, high[i],
                                                     low[i], close[i])
    return out
