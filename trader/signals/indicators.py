"""Indicator state for every product of one interval, stepped in one kernel call per indicator.

An `Indicator` is a kind and its parameters (`sma(20)`, `macd(12, 26, 9)`). An `IndicatorBank`
holds, per distinct indicator, a state matrix `[slots, state_len]` (rows of the kernels'
`X_state`, see trader.kernels.indicators) and writes its outputs into two shared matrices
`now` and `prev` `[slots, columns]`: the values at the bar just closed and at the bar before.

Invariant: a slot's state is a fresh state stepped over every bar of its product since the
state was last built, one `step_rows` call per indicator on each bar close. It is rebuilt, a
fresh state stepped over the slot's bars in the window (its last `count` rows, so the next
value equals a series computed from scratch over them), when that would not hold: a new
indicator (a parameter changed: hot reload), a slot given to a new product, a slot whose
window was rewritten (`ring.load_slot`: detected by its count, or told by `invalidate`).
A gap row (NaN close) resets the slot's state, as it resets the window's count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numba import njit

from trader.kernels import indicators as k
from trader.kernels.ring import CLOSE, FIELDS, HIGH, LOW, VOLUME, Window, last_n_all

SMA, EMA, RSI, MACD, BBANDS, ATR, STOCH, ADX, OBV, VWAP, VOLATILITY = range(11)
# kind -> (name, output names, state allocator)
_KINDS = {
    SMA: ("sma", ("",), k.sma_state),
    EMA: ("ema", ("",), k.ema_state),
    RSI: ("rsi", ("",), k.rsi_state),
    MACD: ("macd", ("macd", "signal", "hist"), k.macd_state),
    BBANDS: ("bbands", ("upper", "middle", "lower"), k.bbands_state),
    ATR: ("atr", ("",), k.atr_state),
    STOCH: ("stoch", ("k", "d"), k.stoch_state),
    ADX: ("adx", ("",), k.adx_state),
    OBV: ("obv", ("",), k.obv_state),
    VWAP: ("vwap", ("",), k.vwap_state),
    VOLATILITY: ("volatility", ("",), k.volatility_state),
}


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator kind with its parameters; equal specs share one state in a bank."""

    kind: int
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        periods = self.params[:1] if self.kind == BBANDS else self.params  # nbdev is a float
        if not all(float(p).is_integer() and p >= 1 for p in periods):
            raise ValueError(f"{self}: periods must be whole numbers >= 1")

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of its output columns ("" for a single output)."""
        return _KINDS[self.kind][1]

    @property
    def lookback(self) -> int:
        """Bars of NaN output before the first value (TA-Lib's lookback)."""
        p = [int(x) for x in self.params]
        lookbacks = {SMA: lambda: p[0] - 1, EMA: lambda: p[0] - 1, RSI: lambda: p[0],
                     MACD: lambda: max(p[0], p[1]) + p[2] - 2, BBANDS: lambda: p[0] - 1,
                     ATR: lambda: p[0], STOCH: lambda: p[0] + p[1] + p[2] - 3,
                     ADX: lambda: 2 * p[0] - 1, OBV: lambda: 0, VWAP: lambda: p[0] - 1,
                     VOLATILITY: lambda: p[0]}
        return lookbacks[self.kind]()

    def new_state(self) -> np.ndarray:
        """A fresh state vector."""
        args: list[float] = [int(p) for p in self.params]
        if self.kind == BBANDS:
            args[1] = self.params[1]  # nbdev, the only float parameter
        return _KINDS[self.kind][2](*args)

    def __str__(self) -> str:
        return f"{_KINDS[self.kind][0]}({', '.join(f'{p:g}' for p in self.params)})"


def sma(period: int) -> Indicator:
    """Simple moving average of the close."""
    return Indicator(SMA, (float(period),))


def ema(period: int) -> Indicator:
    """Exponential moving average of the close."""
    return Indicator(EMA, (float(period),))


def rsi(period: int) -> Indicator:
    """Wilder's RSI of the close, 0..100."""
    return Indicator(RSI, (float(period),))


def macd(fast: int, slow: int, signal: int) -> Indicator:
    """MACD of the close: columns macd, signal, hist."""
    return Indicator(MACD, (float(fast), float(slow), float(signal)))


def bbands(period: int, nbdev: float) -> Indicator:
    """Bollinger bands of the close: columns upper, middle, lower."""
    return Indicator(BBANDS, (float(period), float(nbdev)))


def atr(period: int) -> Indicator:
    """Wilder's average true range."""
    return Indicator(ATR, (float(period),))


def stoch(fastk: int, slowk: int, slowd: int) -> Indicator:
    """Slow stochastic: columns k, d (0..100)."""
    return Indicator(STOCH, (float(fastk), float(slowk), float(slowd)))


def adx(period: int) -> Indicator:
    """Wilder's average directional index."""
    return Indicator(ADX, (float(period),))


def obv() -> Indicator:
    """On-balance volume."""
    return Indicator(OBV, ())


def vwap(period: int) -> Indicator:
    """Rolling VWAP of the typical price over `period` bars."""
    return Indicator(VWAP, (float(period),))


def volatility(period: int) -> Indicator:
    """Sample stdev of the last `period` log returns."""
    return Indicator(VOLATILITY, (float(period),))


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
def _each(step, states, fresh, rows, which, now, col, width):
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


class _Slot:
    """One indicator's state matrix and where its outputs go."""

    __slots__ = ("col", "fresh", "indicator", "rebuild_all", "states")

    def __init__(self, indicator: Indicator, slots: int, col: int) -> None:
        self.indicator = indicator
        self.fresh = indicator.new_state()
        self.states = np.tile(self.fresh, (slots, 1))
        self.col = col
        self.rebuild_all = True  # no bar seen yet: warm from the window at the next close


class IndicatorBank:
    """Indicator states of every product slot of one interval's window."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._by_spec: dict[Indicator, _Slot] = {}
        self.now = np.full((slots, 0), np.nan)
        self.prev = np.full((slots, 0), np.nan)
        self._owners: dict[str, int] = {}
        self.occupied = np.zeros(slots, np.bool_)
        self.rows = np.full((slots, FIELDS), np.nan)  # the newest row of every slot, contiguous
        self._counts = np.zeros(slots, np.int64)
        self._invalid = np.zeros(slots, np.bool_)

    def require(self, indicators: Iterable[Indicator]) -> None:
        """Keep exactly these indicators; new ones are warmed from the window at the next close."""
        wanted = list(dict.fromkeys(indicators))
        old, self._by_spec = self._by_spec, {}
        now = np.full((self.slots, sum(len(i.outputs) for i in wanted)), np.nan)
        prev = now.copy()
        col = 0
        for spec in wanted:
            width = len(spec.outputs)
            slot = old.get(spec)
            if slot is None:
                slot = _Slot(spec, self.slots, col)
            else:  # kept: its values move to their new columns
                now[:, col : col + width] = self.now[:, slot.col : slot.col + width]
                prev[:, col : col + width] = self.prev[:, slot.col : slot.col + width]
                slot.col = col
            self._by_spec[spec] = slot
            col += width
        self.now, self.prev = now, prev

    def columns(self, indicators: Iterable[Indicator]) -> np.ndarray:
        """Column indices in now/prev of these indicators' outputs, in order (int64)."""
        cols = [self._by_spec[i].col + j for i in indicators for j in range(len(i.outputs))]
        return np.array(cols, np.int64)

    def invalidate(self, slot: int) -> None:
        """The slot's window was rewritten: rebuild its states at the next bar close."""
        self._invalid[slot] = True

    def on_bar_close(self, window: Window, owners: Mapping[str, int]) -> None:
        """Step occupied slots by the newest row (already pushed); rebuild the stale ones."""
        occupied, stale = self._stale_slots(window, owners)
        bars = last_n_all(window.buf, window.head, window.capacity)
        # one gather: the newest rows sit a whole window apart, so each would miss the cache
        # once per indicator if read in place
        self.rows = np.ascontiguousarray(bars[:, -1])
        self.prev[:] = self.now
        step, any_stale = occupied & ~stale, bool(stale.any())
        for slot in self._by_spec.values():
            kind, width = slot.indicator.kind, len(slot.indicator.outputs)
            if slot.rebuild_all or any_stale:
                rebuild_rows(kind, slot.states, slot.fresh, bars, window.count,
                             occupied if slot.rebuild_all else stale, self.now, self.prev,
                             slot.col, width)
            if not slot.rebuild_all:
                step_rows(kind, slot.states, slot.fresh, self.rows, step, self.now, slot.col,
                          width)
            slot.rebuild_all = False
        self._counts[:] = window.count

    def _stale_slots(self, window: Window, owners: Mapping[str, int]) -> tuple[np.ndarray, ...]:
        """(occupied, stale): slots with a product, and those whose states must be rebuilt."""
        if window.buf.shape[0] != self.slots:
            raise ValueError(f"window has {window.buf.shape[0]} slots, bank {self.slots}")
        stale = self._invalid.copy()
        if owners != self._owners:
            for product_id, slot in owners.items():
                stale[slot] |= self._owners.get(product_id) != slot
            self._owners = dict(owners)
            self.occupied = np.zeros(self.slots, np.bool_)
            self.occupied[list(owners.values())] = True
        close = window.buf[:, window.head[0] + window.capacity - 1, CLOSE]
        expected = np.where(np.isnan(close), 0, np.minimum(self._counts + 1, window.capacity))
        stale |= window.count != expected
        stale &= self.occupied
        self._invalid[:] = False
        return self.occupied, stale


def warmup() -> None:
    """Compile (or load from the numba cache) the batch kernels on tiny inputs."""
    fresh = sma(2).new_state()
    states, now = np.tile(fresh, (2, 1)), np.full((2, 1), np.nan)
    rebuild_rows(SMA, states, fresh, np.ones((2, 4, FIELDS)), np.array([4, 0]),
                 np.array([True, False]), now, now.copy(), 0, 1)  # steps through step_rows
