"""STOCH, OBV, VWAP and volatility kernels (conventions: `trader.kernels.indicators`)."""

from __future__ import annotations

import math

import numpy as np

from trader.kernels._averages import _sma_add, sma_state
from trader.kernels._indicator_base import NAN, arith, kernel, new_output, new_state, next_slot


# STOCH [n, fastk, high_at, low_at, highest, lowest, slot, highs(fastk), lows(fastk),
#        sma_state(slowk), sma_state(slowd)]; *_at are bar numbers of the window extremes.
@kernel
def stoch_state(fastk: int, slowk: int, slowd: int) -> np.ndarray:
    """State for `stoch_step` (slow %K and %D are SMAs, TA-Lib's default matype)."""
    k_at = 7 + 2 * fastk
    state = new_state(k_at + 8 + slowk + slowd, fastk, 1)
    state[2] = state[3] = -1.0
    state[k_at : k_at + 4 + slowk] = sma_state(slowk)
    state[k_at + 4 + slowk :] = sma_state(slowd)
    return state


@arith
def _rescan(
    buf: np.ndarray, base: int, slot: int, size: int, first: int, sign: float
) -> tuple[float, int]:
    """(max, bar number) of the ring at buf[base:] (sign 1; min for -1), oldest first; the
    latest of equal extremes is kept as it expires last."""
    best, at, pos = buf[base + slot], first, slot
    for i in range(1, size):
        pos = next_slot(pos, size)
        if sign * buf[base + pos] >= sign * best:
            best, at = buf[base + pos], first + i
    return best, at


@arith
def _stoch_next(n, at, extremes, sma_k, sma_d, buf, sizes, high, low, close):
    """One STOCH bar: raw %K, tracking the window's extremes like TA-Lib (rescan the ring when
    one expires), then its SMA (slow %K), then that one's SMA (slow %D).

    `at` holds the bar numbers of the (highest, lowest) input in the window, `extremes` their
    values, `sma_k`/`sma_d` the (n, slot, sum) of the SMAs. `buf` is the state from [6] on: the
    slot, the highs and lows rings, then the two SMA states; `sizes` is (fastk, slowk, slowd).
    It takes one array and ends at one exit that uses it last: then numba can drop the array's
    reference counting once this is inlined into a loop (else it costs ~3x the arithmetic).
    """
    fk, sk, sd = sizes
    slot = int(buf[0])
    buf[1 + slot], buf[1 + fk + slot] = high, low
    slot = next_slot(slot, fk)
    k = d = NAN
    if n >= fk - 1:
        first = n - fk + 1
        (high_at, low_at), (highest, lowest) = at, extremes
        if low_at < first:
            lowest, low_at = _rescan(buf, 1 + fk, slot, fk, first, -1.0)
        elif low <= lowest:
            low_at, lowest = n, low
        if high_at < first:
            highest, high_at = _rescan(buf, 1, slot, fk, first, 1.0)
        elif high >= highest:
            high_at, highest = n, high
        at, extremes = (high_at, low_at), (highest, lowest)
        diff = highest - lowest
        raw = 100.0 * ((close - lowest) / diff) if diff != 0.0 else 0.0
        k_ring, (k_n, k_slot, k_sum) = 5 + 2 * fk, sma_k
        buf[k_ring + k_slot] = raw
        k_slot = next_slot(k_slot, sk)
        k_sum, k = _sma_add(k_n, k_sum, raw, buf[k_ring + k_slot], sk)
        sma_k = (k_n + 1, k_slot, k_sum)
        if k_n >= sk - 1:
            d_ring, (d_n, d_slot, d_sum) = k_ring + sk + 4, sma_d
            buf[d_ring + d_slot] = k
            d_slot = next_slot(d_slot, sd)
            d_sum, d = _sma_add(d_n, d_sum, k, buf[d_ring + d_slot], sd)
            sma_d = (d_n + 1, d_slot, d_sum)
        k = k if not math.isnan(d) else NAN
    buf[0] = slot  # the last use of buf, at the one exit
    return n + 1, at, extremes, sma_k, sma_d, k, d


@kernel
def stoch_step(state: np.ndarray, high: float, low: float, close: float) -> tuple[float, float]:
    """(slow %K, slow %D), 0..100 (TA-Lib STOCH)."""
    fk = int(state[1])
    k_at = 7 + 2 * fk
    d_at = k_at + 4 + int(state[k_at + 1])
    n, at, extremes, sma_k, sma_d, k, d = _stoch_next(
        int(state[0]), (int(state[2]), int(state[3])), (state[4], state[5]),
        (int(state[k_at]), int(state[k_at + 2]), state[k_at + 3]),
        (int(state[d_at]), int(state[d_at + 2]), state[d_at + 3]),
        state[6:], (fk, int(state[k_at + 1]), int(state[d_at + 1])), high, low, close,
    )
    state[0] = n
    state[2], state[3] = at
    state[4], state[5] = extremes
    state[k_at], state[k_at + 2], state[k_at + 3] = sma_k
    state[d_at], state[d_at + 2], state[d_at + 3] = sma_d
    return k, d


@kernel
def stoch_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int, slowk: int, slowd: int
) -> tuple[np.ndarray, np.ndarray]:
    """`stoch_step` over every bar: (slow %K, slow %D)."""
    buf, sizes = stoch_state(fastk, slowk, slowd)[6:], (fastk, slowk, slowd)
    k_out, d_out = new_output(close.size), new_output(close.size)
    n, at, extremes, sma_k, sma_d = 0, (-1, -1), (0.0, 0.0), (0, 0, 0.0), (0, 0, 0.0)
    for i in range(close.size):
        n, at, extremes, sma_k, sma_d, k_out[i], d_out[i] = _stoch_next(
            n, at, extremes, sma_k, sma_d, buf, sizes, high[i], low[i], close[i]
        )
    return k_out, d_out


# OBV [n, prev_close, obv]
@kernel
def obv_state() -> np.ndarray:
    """State for `obv_step`."""
    return np.zeros(3)


@arith
def _obv_next(n, prev_close, obv, close, volume):
    """One OBV bar."""
    if n == 0:
        obv = volume
    elif close > prev_close:
        obv = obv + volume
    elif close < prev_close:
        obv = obv - volume
    return n + 1, close, obv


@kernel
def obv_step(state: np.ndarray, close: float, volume: float) -> float:
    """On-balance volume, starting at the first bar's volume (TA-Lib OBV)."""
    n, prev_close, obv = _obv_next(int(state[0]), state[1], state[2], close, volume)
    state[0], state[1], state[2] = n, prev_close, obv
    return obv


@kernel
def obv_series(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """`obv_step` over every bar."""
    out = new_output(close.size)
    n, prev_close, obv = 0, 0.0, 0.0
    for i in range(close.size):
        n, prev_close, obv = _obv_next(n, prev_close, obv, close[i], volume[i])
        out[i] = obv
    return out


# VWAP [n, period, slot, bars_with_volume, sum_pv, err_pv, sum_v, err_v, pvs(period),
#       volumes(period)]; err_* carry the rounding error of the compensated running sums.
@kernel
def vwap_state(period: int) -> np.ndarray:
    """State for `vwap_step`."""
    return new_state(8 + 2 * period, period, 1)


@arith
def _add(total: float, err: float, x: float) -> tuple[float, float]:
    """Compensated total += x (TwoSum), so a quiet window after a busy one stays exact."""
    out = total + x
    back = out - total
    return out, err + ((total - (out - back)) + (x - back))


@arith
def _vwap_next(n, slot, active, sums, pvs, volumes, high, low, close, volume):
    """One VWAP bar; `sums` is (sum_pv, err_pv, sum_v, err_v)."""
    size = pvs.size
    pv = (high + low + close) / 3.0 * volume
    old_pv, old_v = pvs[slot], volumes[slot]
    active += (volume != 0.0) - (old_v != 0.0)
    sum_pv, err_pv = _add(sums[0], sums[1], pv)
    sum_pv, err_pv = _add(sum_pv, err_pv, -old_pv)
    sum_v, err_v = _add(sums[2], sums[3], volume)
    sum_v, err_v = _add(sum_v, err_v, -old_v)
    pvs[slot], volumes[slot] = pv, volume
    slot = next_slot(slot, size)
    sums = (sum_pv, err_pv, sum_v, err_v)
    if n < size - 1 or active == 0:
        return n + 1, slot, active, sums, NAN
    return n + 1, slot, active, sums, (sum_pv + err_pv) / (sum_v + err_v)


@kernel
def vwap_step(state: np.ndarray, high: float, low: float, close: float, volume: float) -> float:
    """Rolling VWAP of the typical price (h+l+c)/3; NaN while the window has no volume."""
    p = int(state[1])
    n, slot, active, sums, value = _vwap_next(
        int(state[0]), int(state[2]), int(state[3]), (state[4], state[5], state[6], state[7]),
        state[8 : 8 + p], state[8 + p : 8 + 2 * p], high, low, close, volume,
    )
    state[0], state[2], state[3] = n, slot, active
    state[4], state[5], state[6], state[7] = sums
    return value


@kernel
def vwap_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, period: int
) -> np.ndarray:
    """`vwap_step` over every bar."""
    state, out = vwap_state(period), new_output(close.size)
    pvs, volumes = state[8 : 8 + period], state[8 + period :]
    n, slot, active, sums = 0, 0, 0, (0.0, 0.0, 0.0, 0.0)
    for i in range(close.size):
        n, slot, active, sums, out[i] = _vwap_next(n, slot, active, sums, pvs, volumes, high[i],
                                                   low[i], close[i], volume[i])
    return out


# Volatility [n, period, slot, prev_close, returns(period)]
@kernel
def volatility_state(period: int) -> np.ndarray:
    """State for `volatility_step`."""
    return new_state(4 + period, period, 2)


@arith
def _sample_stdev(values: np.ndarray) -> float:
    """Exact two-pass sample stdev, each pass summed in four interleaved lanes: a fixed order
    (so reproducible, independent of where the ring starts) that pipelines."""
    size = values.size
    a = b = c = d = 0.0
    for i in range(0, size - 3, 4):
        a += values[i]
        b += values[i + 1]
        c += values[i + 2]
        d += values[i + 3]
    for i in range(size - size % 4, size):
        a += values[i]
    mean = ((a + b) + (c + d)) / size
    a = b = c = d = 0.0
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
    return math.sqrt(((a + b) + (c + d)) / (size - 1))


@arith
def _volatility_next(n, slot, prev, returns, close):
    """One volatility bar: the log return goes into the ring, then the window's stdev."""
    if n == 0:
        return 1, slot, close, NAN
    returns[slot] = math.log(close / prev)
    slot = next_slot(slot, returns.size)
    if n < returns.size:
        return n + 1, slot, close, NAN
    return n + 1, slot, close, _sample_stdev(returns)


@kernel
def volatility_step(state: np.ndarray, close: float) -> float:
    """Sample stdev of the last `period` log returns (closes > 0); 0.0 for a flat window."""
    n, slot, prev, value = _volatility_next(
        int(state[0]), int(state[2]), state[3], state[4 : 4 + int(state[1])], close
    )
    state[0], state[2], state[3] = n, slot, prev
    return value


@kernel
def volatility_series(close: np.ndarray, period: int) -> np.ndarray:
    """`volatility_step` over every bar."""
    returns, out = volatility_state(period)[4:], new_output(close.size)
    n, slot, prev = 0, 0, 0.0
    for i in range(close.size):
        n, slot, prev, out[i] = _volatility_next(n, slot, prev, returns, close[i])
    return out
