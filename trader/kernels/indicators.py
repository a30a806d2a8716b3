"""Indicator kernels: step/series pairs, the first nine equal to TA-Lib's defaults.

Conventions, shared by every indicator here:

* ``<name>_state(params) -> ndarray`` allocates a float64 state vector. ``<name>_step(state, ...)``
  consumes one bar, updates the state in place and returns the value(s) for that bar.
  ``<name>_series(arrays, params)`` allocates one state and loops the step, so a batch value and
  a live value come from the same code.
* Many products: stack one state per product as the rows of a C-contiguous matrix,
  ``states = np.tile(rsi_state(14), (products, 1))``; a caller's ``@njit`` loop
  ``for i in range(states.shape[0]): out[i] = rsi_step(states[i], close[i])`` then steps every
  product in one kernel call (a row is a view, nothing is copied; several indicators can share
  the loop). Rows for the same indicator and parameters have the same length.
* Layout: ``state[0]`` counts the bars stepped so far, the parameters follow (``state[1]`` is the
  period) and are never written again, then running values; a ring of the last ``period``
  inputs comes last with its next-write slot kept in the state. Counts are stored as float64.
  MACD and STOCH embed the states of the EMA/SMA kernels they are built from at fixed offsets.
* Warm-up: a step returns NaN until TA-Lib's lookback (unstable period 0) has passed, so a
  series is NaN exactly where ``talib.<NAME>`` is. Inputs must be finite.
* Seeding is TA-Lib's: EMA starts from the SMA of its first ``period`` inputs; RSI, ATR and ADX
  start Wilder smoothing from the average (ADX: the sum) of their first period; MACD's fast EMA is
  seeded from the ``fast`` inputs ending where the slow EMA seeds, so its state keeps a ring of
  the last ``fast`` inputs until then. Float operations follow TA-Lib's order (a running sum adds
  the new input before dropping the old one) and its 1e-14 near-zero tests; SMA, EMA, STOCH,
  ADX and OBV equal the installed TA-Lib (0.8) bit for bit, the rest within ~1e-14 relative
  (it fuses some sites with fma). ATR smooths as ``fma(tr - atr, 1/period, atr)``, no division.
  Standard deviations (BBANDS, volatility) are exact two-pass sums over the ring, O(period)
  per bar: TA-Lib >= 0.7 no longer uses E[x^2] - mean^2 either. VWAP keeps compensated running
  sums, so rounding drift cannot build up.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_EPS = 1e-14  # TA-Lib's TA_IS_ZERO / TA_IS_ZERO_OR_NEG band
NAN = np.nan


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """a * b + c rounded once (llvm.fma): explicit and deterministic, unlike fastmath."""
    f64 = types.float64

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fma(*args)

    return f64(f64, f64, f64), codegen


@njit(cache=True, error_model="numpy")
def _next(pos: int, size: int) -> int:
    return pos + 1 if pos + 1 < size else 0


@njit(cache=True, error_model="numpy")
def _new_state(length: int, period: int, minimum: int) -> np.ndarray:
    if period < minimum:
        raise ValueError("period below the indicator's minimum")
    state = np.zeros(length)
    state[1] = period
    return state


@njit(cache=True, error_model="numpy")
def _true_range(high: float, low: float, prev_close: float) -> float:
    out = high - low
    up = abs(high - prev_close)
    if up > out:
        out = up
    down = abs(low - prev_close)
    if down > out:
        out = down
    return out


# SMA [n, period, slot, sum, ring(period)]
@njit(cache=True, error_model="numpy")
def sma_state(period: int) -> np.ndarray:
    """State for `sma_step`."""
    return _new_state(4 + period, period, 1)


@njit(cache=True, error_model="numpy")
def _sma_at(state: np.ndarray, at: int, x: float) -> float:
    """`sma_step` on the SMA state embedded at state[at:]."""
    n, p, slot = state[at], state[at + 1], state[at + 2]
    state[at] = n + 1.0
    total = state[at + 3] + x
    state[at + 4 + int(slot)] = x
    slot = slot + 1.0 if slot + 1.0 < p else 0.0  # float slot: no int round trip on the chain
    state[at + 2] = slot
    if n < p - 1.0:
        state[at + 3] = total
        return NAN
    state[at + 3] = total - state[at + 4 + int(slot)]
    return total / p


@njit(cache=True, error_model="numpy")
def sma_step(state: np.ndarray, x: float) -> float:
    """Simple moving average of the last `period` inputs (TA-Lib SMA)."""
    return _sma_at(state, 0, x)


# EMA [n, period, k, ema (the seed sum while warming up)]
@njit(cache=True, error_model="numpy")
def ema_state(period: int) -> np.ndarray:
    """State for `ema_step`."""
    state = _new_state(4, period, 1)
    state[2] = 2.0 / (period + 1)
    return state


@njit(cache=True, error_model="numpy")
def _ema_at(state: np.ndarray, at: int, x: float) -> float:
    """`ema_step` on the EMA state embedded at state[at:]."""
    n, p = state[at], state[at + 1]
    state[at] = n + 1.0
    if n >= p:
        prev = state[at + 3]
        value = (x - prev) * state[at + 2] + prev
    else:
        state[at + 3] += x
        if n < p - 1.0:
            return NAN
        value = state[at + 3] / p
    state[at + 3] = value
    return value


@njit(cache=True, error_model="numpy")
def ema_step(state: np.ndarray, x: float) -> float:
    """Exponential moving average seeded with the SMA of the first `period` inputs (TA-Lib EMA)."""
    return _ema_at(state, 0, x)


# RSI [n, period, prev_close, avg_gain, avg_loss]
@njit(cache=True, error_model="numpy")
def rsi_state(period: int) -> np.ndarray:
    """State for `rsi_step`."""
    return _new_state(5, period, 1)


@njit(cache=True, error_model="numpy")
def rsi_step(state: np.ndarray, x: float) -> float:
    """Wilder's relative strength index, 0..100 (TA-Lib RSI)."""
    n, p = state[0], state[1]
    state[0] = n + 1
    if p == 1:  # TA-Lib passes the input through for period 1
        return x if n > 0 else NAN
    diff = x - state[2]
    state[2] = x
    if n == 0:
        return NAN
    gain, loss = state[3], state[4]
    if n > p:
        gain *= p - 1
        loss *= p - 1
    if diff < 0:
        loss -= diff
    else:
        gain += diff
    if n < p:
        state[3], state[4] = gain, loss
        return NAN
    gain /= p
    loss /= p
    state[3], state[4] = gain, loss
    total = gain + loss
    return 100.0 * (gain / total) if not -_EPS < total < _EPS else 0.0


# MACD [n, fast, slow, k_fast, fast_ema, slot, ring(fast), ema_state(slow), ema_state(signal)]
@njit(cache=True, error_model="numpy")
def macd_state(fast: int, slow: int, signal: int) -> np.ndarray:
    """State for `macd_step`; like TA-Lib, a fast period above the slow one is swapped."""
    if slow < fast:
        fast, slow = slow, fast
    state = _new_state(14 + fast, fast, 2)
    state[2] = slow
    state[3] = 2.0 / (fast + 1)
    state[6 + fast : 10 + fast] = ema_state(slow)
    state[10 + fast :] = ema_state(signal)
    return state


@njit(cache=True, error_model="numpy")
def macd_step(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """(macd, signal, histogram) with TA-Lib's seeding of the fast EMA at the slow lookback."""
    n, f, s = state[0], int(state[1]), state[2]
    state[0] = n + 1
    slow = _ema_at(state, 6 + f, x)
    if n > s - 1:
        prev = state[4]
        fast = (x - prev) * state[3] + prev
    else:
        slot = int(state[5])
        state[6 + slot] = x
        slot = _next(slot, f)
        state[5] = slot
        if n < s - 1:
            return NAN, NAN, NAN
        total = 0.0
        for _ in range(f):  # oldest first, as TA-Lib sums its seed window
            total += state[6 + slot]
            slot = _next(slot, f)
        fast = total / f
    state[4] = fast
    macd = fast - slow
    signal = _ema_at(state, 10 + f, macd)
    if math.isnan(signal):
        return NAN, NAN, NAN
    return macd, signal, macd - signal


# BBANDS [n, period, nbdev, slot, sum, equal_run, ring(period)]
@njit(cache=True, error_model="numpy")
def bbands_state(period: int, nbdev: float) -> np.ndarray:
    """State for `bbands_step`."""
    state = _new_state(6 + period, period, 1)
    state[2] = nbdev
    return state


@njit(cache=True, error_model="numpy")
def _lane_sum(values: np.ndarray) -> float:
    """Sum in four interleaved lanes: a fixed order (so reproducible) that pipelines."""
    a = b = c = d = 0.0
    size = values.size
    for i in range(0, size - 3, 4):
        a += values[i]
        b += values[i + 1]
        c += values[i + 2]
        d += values[i + 3]
    for i in range(size - size % 4, size):
        a += values[i]
    return (a + b) + (c + d)


@njit(cache=True, error_model="numpy")
def _sum_sq_dev(values: np.ndarray, mean: float) -> float:
    """Sum of squared deviations from `mean` (the exact second pass), in four lanes."""
    a = b = c = d = 0.0
    size = values.size
    for i in range(0, size - 3, 4):
        x0, x1 = values[i] - mean, values[i + 1] - mean
        x2, x3 = values[i + 2] - mean, values[i + 3] - mean
        a += x0 * x0
        b += x1 * x1
        c += x2 * x2
        d += x3 * x3
    for i in range(size - size % 4, size):
        x0 = values[i] - mean
        a += x0 * x0
    return (a + b) + (c + d)


@njit(cache=True, error_model="numpy")
def bbands_step(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """(upper, middle, lower): SMA -/+ nbdev population stdevs (TA-Lib BBANDS, matype SMA)."""
    n, p, slot = state[0], int(state[1]), int(state[3])
    state[0] = n + 1
    total = state[4] + x
    state[5] = state[5] + 1 if n > 0 and x == state[6 + (slot - 1 if slot else p - 1)] else 1
    state[6 + slot] = x
    slot = _next(slot, p)
    state[3] = slot
    if n < p - 1:
        state[4] = total
        return NAN, NAN, NAN
    state[4] = total - state[6 + slot]
    middle = total / p
    # a constant window is exactly 0 in TA-Lib; the SMA's rounding must not show through
    dev = 0.0 if state[5] >= p else math.sqrt(_sum_sq_dev(state[6:], middle) / p) * state[2]
    return middle + dev, middle, middle - dev


# ATR [n, period, prev_close, atr (the seed sum while warming up), 1/period]
@njit(cache=True, error_model="numpy")
def atr_state(period: int) -> np.ndarray:
    """State for `atr_step`."""
    state = _new_state(5, period, 1)
    state[4] = 1.0 / period
    return state


@njit(cache=True, error_model="numpy")
def atr_step(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Wilder's average true range (TA-Lib ATR)."""
    n, p = state[0], state[1]
    state[0] = n + 1
    prev_close = state[2]
    state[2] = close
    if n == 0:
        return NAN
    tr = _true_range(high, low, prev_close)
    if n > p:  # Wilder smoothing without a division on the carried chain, like TA-Lib >= 0.7
        value = _fma(tr - state[3], state[4], state[3])
    else:
        state[3] += tr
        if n < p:
            return NAN
        value = state[3] / p
    state[3] = value
    return value


# STOCH [n, fastk, high_at, low_at, highest, lowest, slot, highs(fastk), lows(fastk),
#        sma_state(slowk), sma_state(slowd)]; *_at are bar numbers of the window extremes.
@njit(cache=True, error_model="numpy")
def stoch_state(fastk: int, slowk: int, slowd: int) -> np.ndarray:
    """State for `stoch_step` (slow %K and %D are SMAs, TA-Lib's default matype)."""
    k_at = 7 + 2 * fastk
    state = _new_state(k_at + 8 + slowk + slowd, fastk, 1)
    state[2] = state[3] = -1.0
    state[k_at : k_at + 4 + slowk] = sma_state(slowk)
    state[k_at + 4 + slowk :] = sma_state(slowd)
    return state


@njit(cache=True, error_model="numpy")
def _extreme(state: np.ndarray, base: int, slot: int, first: float, sign: float) -> float:
    """Rescan a ring oldest-first for its max (sign 1) or min (sign -1); set where it sits."""
    size = int(state[1])
    best, at = state[base + slot], first
    for i in range(1, size):
        slot = _next(slot, size)
        value = state[base + slot]
        if sign * value > sign * best:
            best, at = value, first + i
    state[2 if sign > 0 else 3] = at
    return best


@njit(cache=True, error_model="numpy")
def _fast_k(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Raw %K of the bar just stepped, tracking extremes like TA-Lib (rescan when one expires)."""
    n, fk, slot = state[0], int(state[1]), int(state[6])
    state[0] = n + 1
    state[7 + slot] = high
    state[7 + fk + slot] = low
    slot = _next(slot, fk)
    state[6] = slot
    if n < fk - 1:
        return NAN
    first = n - fk + 1
    if state[3] < first:
        state[5] = _extreme(state, 7 + fk, slot, first, -1.0)
    elif low <= state[5]:
        state[3], state[5] = n, low
    if state[2] < first:
        state[4] = _extreme(state, 7, slot, first, 1.0)
    elif high >= state[4]:
        state[2], state[4] = n, high
    diff = state[4] - state[5]
    return 100.0 * ((close - state[5]) / diff) if diff != 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def stoch_step(state: np.ndarray, high: float, low: float, close: float) -> tuple[float, float]:
    """(slow %K, slow %D), 0..100 (TA-Lib STOCH)."""
    raw = _fast_k(state, high, low, close)
    if math.isnan(raw):
        return NAN, NAN
    k_at = 7 + 2 * int(state[1])
    d_at = k_at + 4 + int(state[k_at + 1])
    k = _sma_at(state, k_at, raw)
    if math.isnan(k):
        return NAN, NAN
    d = _sma_at(state, d_at, k)
    if math.isnan(d):
        return NAN, NAN
    return k, d


# ADX [n, period, prev_high, prev_low, prev_close, plus_dm, minus_dm, tr, sum_dx, adx]
@njit(cache=True, error_model="numpy")
def adx_state(period: int) -> np.ndarray:
    """State for `adx_step`."""
    return _new_state(10, period, 2)


@njit(cache=True, error_model="numpy")
def _dx(plus_dm: float, minus_dm: float, tr: float) -> float:
    """Directional index, NaN where TA-Lib skips the bar (zero range or zero DI sum)."""
    if -_EPS < tr < _EPS:
        return NAN
    minus_di = 100.0 * (minus_dm / tr)
    plus_di = 100.0 * (plus_dm / tr)
    total = minus_di + plus_di
    if -_EPS < total < _EPS:
        return NAN
    return 100.0 * (abs(minus_di - plus_di) / total)


@njit(cache=True, error_model="numpy")
def adx_step(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Wilder's average directional index (TA-Lib ADX)."""
    n, p = state[0], state[1]
    state[0] = n + 1
    up, down = high - state[2], state[3] - low
    tr = _true_range(high, low, state[4])
    state[2], state[3], state[4] = high, low, close
    if n == 0:
        return NAN
    if n >= p:  # past the first period the sums become Wilder averages
        state[5] -= state[5] / p
        state[6] -= state[6] / p
        state[7] = state[7] - state[7] / p + tr
    else:
        state[7] += tr
    if down > 0 and up < down:
        state[6] += down
    elif up > 0 and up > down:
        state[5] += up
    if n < p:
        return NAN
    dx = _dx(state[5], state[6], state[7])
    if n > 2 * p - 1:
        if not math.isnan(dx):
            state[9] = (state[9] * (p - 1) + dx) / p
        return state[9]
    if not math.isnan(dx):
        state[8] += dx
    if n < 2 * p - 1:
        return NAN
    state[9] = state[8] / p
    return state[9]


# OBV [n, prev_close, obv]
@njit(cache=True, error_model="numpy")
def obv_state() -> np.ndarray:
    """State for `obv_step`."""
    return np.zeros(3)


@njit(cache=True, error_model="numpy")
def obv_step(state: np.ndarray, close: float, volume: float) -> float:
    """On-balance volume, starting at the first bar's volume (TA-Lib OBV)."""
    if state[0] == 0:
        value = volume
    elif close > state[1]:
        value = state[2] + volume
    elif close < state[1]:
        value = state[2] - volume
    else:
        value = state[2]
    state[0] += 1
    state[1], state[2] = close, value
    return value


# VWAP [n, period, slot, bars_with_volume, sum_pv, err_pv, sum_v, err_v, pvs(period),
#       volumes(period)]; err_* carry the rounding error of the compensated running sums.
@njit(cache=True, error_model="numpy")
def vwap_state(period: int) -> np.ndarray:
    """State for `vwap_step`."""
    return _new_state(8 + 2 * period, period, 1)


@njit(cache=True, error_model="numpy")
def _add(state: np.ndarray, at: int, x: float) -> None:
    """Compensated state[at] += x (TwoSum), so a quiet window after a busy one stays exact."""
    total = state[at] + x
    back = total - state[at]
    state[at + 1] += (state[at] - (total - back)) + (x - back)
    state[at] = total


@njit(cache=True, error_model="numpy")
def vwap_step(state: np.ndarray, high: float, low: float, close: float, volume: float) -> float:
    """Rolling VWAP of the typical price (h+l+c)/3; NaN while the window has no volume."""
    n, p, slot = state[0], int(state[1]), int(state[2])
    state[0] = n + 1
    pv = (high + low + close) / 3.0 * volume
    old_pv, old_v = state[8 + slot], state[8 + p + slot]
    state[3] += (volume != 0.0) - (old_v != 0.0)
    _add(state, 4, pv)
    _add(state, 4, -old_pv)
    _add(state, 6, volume)
    _add(state, 6, -old_v)
    state[8 + slot], state[8 + p + slot] = pv, volume
    state[2] = _next(slot, p)
    if n < p - 1 or state[3] == 0:
        return NAN
    return (state[4] + state[5]) / (state[6] + state[7])


# Volatility [n, period, slot, prev_close, returns(period)]
@njit(cache=True, error_model="numpy")
def volatility_state(period: int) -> np.ndarray:
    """State for `volatility_step`."""
    return _new_state(4 + period, period, 2)


@njit(cache=True, error_model="numpy")
def volatility_step(state: np.ndarray, close: float) -> float:
    """Sample stdev of the last `period` log returns (closes > 0); 0.0 for a flat window."""
    n, p, slot = state[0], int(state[1]), int(state[2])
    state[0] = n + 1
    prev = state[3]
    state[3] = close
    if n == 0:
        return NAN
    state[4 + slot] = math.log(close / prev)
    state[2] = _next(slot, p)
    if n < p:
        return NAN
    returns = state[4:]
    return math.sqrt(_sum_sq_dev(returns, _lane_sum(returns) / p) / (p - 1))


@njit(cache=True, error_model="numpy")
def sma_series(close: np.ndarray, period: int) -> np.ndarray:
    """`sma_step` over every bar."""
    state, out = sma_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = sma_step(state, close[i])
    return out


@njit(cache=True, error_model="numpy")
def ema_series(close: np.ndarray, period: int) -> np.ndarray:
    """`ema_step` over every bar."""
    state, out = ema_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = ema_step(state, close[i])
    return out


@njit(cache=True, error_model="numpy")
def rsi_series(close: np.ndarray, period: int) -> np.ndarray:
    """`rsi_step` over every bar."""
    state, out = rsi_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = rsi_step(state, close[i])
    return out


@njit(cache=True, error_model="numpy")
def macd_series(
    close: np.ndarray, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`macd_step` over every bar: (macd, signal, hist)."""
    state, out = macd_state(fast, slow, signal), np.empty((3, close.size))
    for i in range(close.size):
        out[0, i], out[1, i], out[2, i] = macd_step(state, close[i])
    return out[0], out[1], out[2]


@njit(cache=True, error_model="numpy")
def bbands_series(
    close: np.ndarray, period: int, nbdev: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bbands_step` over every bar: (upper, middle, lower)."""
    state, out = bbands_state(period, nbdev), np.empty((3, close.size))
    for i in range(close.size):
        out[0, i], out[1, i], out[2, i] = bbands_step(state, close[i])
    return out[0], out[1], out[2]


@njit(cache=True, error_model="numpy")
def atr_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """`atr_step` over every bar."""
    state, out = atr_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = atr_step(state, high[i], low[i], close[i])
    return out


@njit(cache=True, error_model="numpy")
def stoch_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int, slowk: int, slowd: int
) -> tuple[np.ndarray, np.ndarray]:
    """`stoch_step` over every bar: (slow %K, slow %D)."""
    state, out = stoch_state(fastk, slowk, slowd), np.empty((2, close.size))
    for i in range(close.size):
        out[0, i], out[1, i] = stoch_step(state, high[i], low[i], close[i])
    return out[0], out[1]


@njit(cache=True, error_model="numpy")
def adx_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """`adx_step` over every bar."""
    state, out = adx_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = adx_step(state, high[i], low[i], close[i])
    return out


@njit(cache=True, error_model="numpy")
def obv_series(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """`obv_step` over every bar."""
    state, out = obv_state(), np.empty(close.size)
    for i in range(close.size):
        out[i] = obv_step(state, close[i], volume[i])
    return out


@njit(cache=True, error_model="numpy")
def vwap_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, period: int
) -> np.ndarray:
    """`vwap_step` over every bar."""
    state, out = vwap_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = vwap_step(state, high[i], low[i], close[i], volume[i])
    return out


@njit(cache=True, error_model="numpy")
def volatility_series(close: np.ndarray, period: int) -> np.ndarray:
    """`volatility_step` over every bar."""
    state, out = volatility_state(period), np.empty(close.size)
    for i in range(close.size):
        out[i] = volatility_step(state, close[i])
    return out


def warmup() -> None:
    """Compile (or load from the numba cache) every kernel on tiny float64 inputs."""
    x = np.linspace(1.0, 2.0, 8)
    high, low, volume = x + 0.5, x - 0.5, np.ones(8)
    sma_series(x, 2)
    ema_series(x, 2)
    rsi_series(x, 2)
    macd_series(x, 2, 3, 2)
    bbands_series(x, 2, 2.0)
    atr_series(high, low, x, 2)
    stoch_series(high, low, x, 2, 2, 2)
    adx_series(high, low, x, 2)
    obv_series(x, volume)
    vwap_series(high, low, x, volume, 2)
    volatility_series(x, 2)
