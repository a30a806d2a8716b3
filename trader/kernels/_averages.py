"""SMA, EMA, MACD and BBANDS kernels (conventions: `trader.kernels.indicators`)."""

from __future__ import annotations

import math

import numpy as np

from trader.kernels._indicator_base import NAN, arith, fma, kernel, new_output, new_state, next_slot


# SMA [n, period, slot, sum, ring(period)]
@kernel
def sma_state(period: int) -> np.ndarray:
    """State for `sma_step`."""
    return new_state(4 + period, period, 1)


@arith
def _sma_add(n: int, total: float, x: float, old: float, size: int) -> tuple[float, float]:
    """SMA arithmetic of one bar: (sum, value); TA-Lib adds the new input before it drops `old`,
    the oldest input of the window that ends with `x`. Rings start zeroed, so `old` is 0.0 while
    the window fills and the sum needs no branch (a select on it would lengthen the chain)."""
    total += x
    value = total / size if n >= size - 1 else NAN
    return total - old, value


@arith
def _sma_next(
    n: int, slot: int, total: float, ring: np.ndarray, x: float
) -> tuple[int, int, float, float]:
    """One SMA bar over a ring of the last `ring.size` inputs: (n, slot, sum, value)."""
    size = ring.size
    ring[slot] = x
    slot = next_slot(slot, size)
    total, value = _sma_add(n, total, x, ring[slot], size)
    return n + 1, slot, total, value


@kernel
def sma_step(state: np.ndarray, x: float) -> float:
    """Simple moving average of the last `period` inputs (TA-Lib SMA)."""
    n, slot, total, value = _sma_next(
        int(state[0]), int(state[2]), state[3], state[4 : 4 + int(state[1])], x
    )
    state[0], state[2], state[3] = n, slot, total
    return value


@kernel
def sma_series(close: np.ndarray, period: int) -> np.ndarray:
    """`sma_step` over every bar."""
    ring, out = sma_state(period)[4:], new_output(close.size)
    n, slot, total = 0, 0, 0.0
    for i in range(close.size):
        n, slot, total, out[i] = _sma_next(n, slot, total, ring, close[i])
    return out


# EMA [n, period, k, ema (the seed sum while warming up)]
@kernel
def ema_state(period: int) -> np.ndarray:
    """State for `ema_step`."""
    state = new_state(4, period, 1)
    state[2] = 2.0 / (period + 1)
    return state


@arith
def _ema_update(ema: float, k: float, x: float) -> float:
    """The EMA update past the seed, fused like TA-Lib 0.8's FMA build."""
    return fma(x - ema, k, ema)


@arith
def _ema_next(n: int, ema: float, period: int, k: float, x: float) -> tuple[int, float, float]:
    """One EMA bar: (n, ema or the seed sum, value)."""
    if n >= period:
        ema = _ema_update(ema, k, x)
        return n + 1, ema, ema
    ema += x
    if n < period - 1:
        return n + 1, ema, NAN
    ema /= period
    return n + 1, ema, ema


@kernel
def ema_step(state: np.ndarray, x: float) -> float:
    """Exponential moving average seeded with the SMA of the first `period` inputs (TA-Lib EMA)."""
    n, ema, value = _ema_next(int(state[0]), state[3], int(state[1]), state[2], x)
    state[0], state[3] = n, ema
    return value


@kernel
def ema_series(close: np.ndarray, period: int) -> np.ndarray:
    """`ema_step` over every bar."""
    k, out = ema_state(period)[2], new_output(close.size)
    n, ema = 0, 0.0
    for i in range(close.size):
        n, ema, out[i] = _ema_next(n, ema, period, k, close[i])
    return out


# MACD [n, fast, slow, signal, fast_ema, slot, slow_ema, signal_n, signal_ema, ring(fast)];
# the ring holds the inputs that seed the fast EMA and is unused once it has.
@kernel
def macd_state(fast: int, slow: int, signal: int) -> np.ndarray:
    """State for `macd_step`; like TA-Lib, a fast period above the slow one is swapped."""
    if slow < fast:
        fast, slow = slow, fast
    if signal < 1:
        raise ValueError("period below the indicator's minimum")
    state = new_state(9 + fast, fast, 2)
    state[2], state[3] = slow, signal
    return state


@arith
def _macd_next(n, fast, slot, slow, sig_n, sig, ring, periods, x):
    """One MACD bar; `periods` is (slow, signal). The fast EMA seeds at the slow lookback."""
    f, s, g = ring.size, periods[0], periods[1]
    _, slow, slow_value = _ema_next(n, slow, s, 2.0 / (s + 1), x)
    if n >= s:
        fast = _ema_update(fast, 2.0 / (f + 1), x)
    else:
        ring[slot] = x
        slot = next_slot(slot, f)
        if n < s - 1:
            return n + 1, fast, slot, slow, sig_n, sig, NAN, NAN, NAN
        fast, at = 0.0, slot
        for _ in range(f):  # oldest first, as TA-Lib sums its seed window
            fast += ring[at]
            at = next_slot(at, f)
        fast /= f
    macd = fast - slow_value
    sig_n, sig, signal = _ema_next(sig_n, sig, g, 2.0 / (g + 1), macd)
    if sig_n < g:
        return n + 1, fast, slot, slow, sig_n, sig, NAN, NAN, NAN
    return n + 1, fast, slot, slow, sig_n, sig, macd, signal, macd - signal


@kernel
def macd_step(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """(macd, signal, histogram) with TA-Lib's seeding of the fast EMA at the slow lookback."""
    periods = (int(state[2]), int(state[3]))
    n, fast, slot, slow, sig_n, sig, macd, signal, hist = _macd_next(
        int(state[0]), state[4], int(state[5]), state[6], int(state[7]), state[8],
        state[9 : 9 + int(state[1])], periods, x,
    )
    state[0], state[4], state[5], state[6], state[7], state[8] = n, fast, slot, slow, sig_n, sig
    return macd, signal, hist


@kernel
def macd_series(
    close: np.ndarray, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`macd_step` over every bar: (macd, signal, hist)."""
    state = macd_state(fast, slow, signal)
    ring, periods = state[9:], (int(state[2]), signal)
    macd, sig_out, hist = new_output(close.size), new_output(close.size), new_output(close.size)
    n, fast_ema, slot, slow_ema, sig_n, sig = 0, 0.0, 0, 0.0, 0, 0.0
    for i in range(close.size):
        n, fast_ema, slot, slow_ema, sig_n, sig, macd[i], sig_out[i], hist[i] = _macd_next(
            n, fast_ema, slot, slow_ema, sig_n, sig, ring, periods, close[i]
        )
    return macd, sig_out, hist


# BBANDS [n, period, nbdev, slot, sum, shift, shifted_sum, shifted_sq, countdown, ring(period)]
# TA-Lib 0.8 keeps running sums of x - shift and x - shift squared and re-centres (shift = the
# window's mean, sums recomputed exactly) when one of its tests below fires or every 32 periods.
_REBASE_EVERY = 32
_DRIFT = 1e-6  # re-centre when the variance falls below this share of the mean square ...
_DROP = 1e6  # ... or the square leaving the window is this many times the rest
_FLAT = 1e-12  # after re-centring, a variance below this share of the mean square is 0


@kernel
def bbands_state(period: int, nbdev: float) -> np.ndarray:
    """State for `bbands_step`."""
    state = new_state(9 + period, period, 1)
    state[2] = nbdev
    state[8] = _REBASE_EVERY * period
    return state


@arith
def _bbands_rebase(ring: np.ndarray, slot: int, inv: float) -> tuple[float, float, float, float]:
    """Re-centre on the window's mean: (shift, shifted sums less the oldest input, stdev)."""
    size = ring.size
    total, at = 0.0, slot
    for _ in range(size):
        total += ring[at]
        at = next_slot(at, size)
    shift = inv * total
    ssum = sq = 0.0
    for _ in range(size):
        d = ring[at] - shift
        ssum += d
        sq += d * d
        at = next_slot(at, size)
    mean = inv * ssum
    mean_sq = inv * sq
    var = mean_sq - mean * mean
    dev = 0.0 if mean_sq * _FLAT > var or var == 0.0 else math.sqrt(var)
    old = ring[slot] - shift
    return shift, ssum - old, sq - old * old, dev


@arith
def _bbands_next(n, slot, total, shift, ssum, sq, countdown, ring, nbdev, x):
    """One BBANDS bar: the SMA, and the stdev from the shifted sums (the shift starts at the
    first input)."""
    size = ring.size
    inv = 1.0 / size
    ring[slot] = x
    slot = next_slot(slot, size)
    old = ring[slot]  # the oldest input of the window that ends with x
    total, middle = _sma_add(n, total, x, old, size)
    if n == 0:
        shift = x
    d = x - shift
    ssum += d
    sq += d * d
    if n < size - 1:
        return n + 1, slot, total, shift, ssum, sq, countdown, NAN, NAN, NAN
    mean = inv * ssum
    var = inv * sq - mean * mean
    d = old - shift
    d2 = d * d
    sq -= d2
    countdown -= 1
    if inv * sq * _DRIFT > var or d2 > sq * _DROP or countdown == 0:
        shift, ssum, sq, dev = _bbands_rebase(ring, slot, inv)
        countdown = _REBASE_EVERY * size
    else:
        ssum -= d
        dev = math.sqrt(var) if var != 0.0 else 0.0
    dev *= nbdev
    return n + 1, slot, total, shift, ssum, sq, countdown, middle + dev, middle, middle - dev


@kernel
def bbands_step(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """(upper, middle, lower): SMA -/+ nbdev population stdevs (TA-Lib BBANDS, matype SMA)."""
    n, slot, total, shift, ssum, sq, countdown, upper, middle, lower = _bbands_next(
        int(state[0]), int(state[3]), state[4], state[5], state[6], state[7], int(state[8]),
        state[9 : 9 + int(state[1])], state[2], x,
    )
    state[0], state[3], state[4], state[5], state[6], state[7] = n, slot, total, shift, ssum, sq
    state[8] = countdown
    return upper, middle, lower


@kernel
def bbands_series(
    close: np.ndarray, period: int, nbdev: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bbands_step` over every bar: (upper, middle, lower)."""
    state = bbands_state(period, nbdev)
    ring, countdown = state[9:], int(state[8])
    upper, middle, lower = new_output(close.size), new_output(close.size), new_output(close.size)
    n, slot, total, shift, ssum, sq = 0, 0, 0.0, 0.0, 0.0, 0.0
    for i in range(close.size):
        n, slot, total, shift, ssum, sq, countdown, upper[i], middle[i], lower[i] = _bbands_next(
            n, slot, total, shift, ssum, sq, countdown, ring, nbdev, close[i]
        )
    return upper, middle, lower
