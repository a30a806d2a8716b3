"""Indicator state for every product of one interval, stepped in one kernel call per indicator.

An `Indicator` is a kind and its parameters (`sma(20)`, `macd(12, 26, 9)`). An `IndicatorBank`
holds, per distinct indicator, a state matrix `[slots, state_len]` (rows of the kernels'
`X_state`, see trader.kernels.indicators) and writes its outputs into two shared matrices
`now` and `prev` `[slots, columns]`: the values at the bar just closed and at the bar before.

The constructors take periods as whole numbers, an integral float included (a strategy passes
its params as read from the float64 array, `sma(p[P.fast])`).

Invariant: a slot's state is a fresh state stepped over every bar of its product since the
state was last built, one `step_rows` call (trader.kernels.bank) per indicator on each bar
close. It is rebuilt, a fresh state stepped over the slot's bars in the window (its last
`count` rows, so the next value equals a series computed from scratch over them), when that
would not hold: a new indicator (a parameter changed: hot reload), a slot given to a new
product, a slot whose window was rewritten (`ring.load_slot`: detected by its count, or told by
`invalidate`).
A gap row (NaN close) resets the slot's state, as it resets the window's count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from trader.kernels import bank as bank_kernels
from trader.kernels import indicators as k
from trader.kernels.bank import (
    ADX,
    ATR,
    BBANDS,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    STOCH,
    VOLATILITY,
    VWAP,
    rebuild_rows,
    step_rows,
)
from trader.kernels.ring import CLOSE, FIELDS, Window, last_n_all

# kind -> (name, output names, state allocator: the kind's `<name>_state` kernel)
_KINDS: dict[int, tuple[str, tuple[str, ...], Callable[..., np.ndarray]]] = {
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
        lookbacks: dict[int, Callable[[], int]] = {
            SMA: lambda: p[0] - 1, EMA: lambda: p[0] - 1, RSI: lambda: p[0],
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


def column_names(indicators: Mapping[str, Indicator]) -> list[str]:
    """The names of the `now`/`prev` columns of these indicators, in order: the key, or
    `<key>_<output>` for an indicator with several outputs (`macd_signal`)."""
    return [f"{key}_{out}" if out else key for key, i in indicators.items() for out in i.outputs]


def sma(period: float) -> Indicator:
    """Simple moving average of the close."""
    return Indicator(SMA, (float(period),))


def ema(period: float) -> Indicator:
    """Exponential moving average of the close."""
    return Indicator(EMA, (float(period),))


def rsi(period: float) -> Indicator:
    """Wilder's RSI of the close, 0..100."""
    return Indicator(RSI, (float(period),))


def macd(fast: float, slow: float, signal: float) -> Indicator:
    """MACD of the close: columns macd, signal, hist."""
    return Indicator(MACD, (float(fast), float(slow), float(signal)))


def bbands(period: float, nbdev: float) -> Indicator:
    """Bollinger bands of the close: columns upper, middle, lower."""
    return Indicator(BBANDS, (float(period), float(nbdev)))


def atr(period: float) -> Indicator:
    """Wilder's average true range."""
    return Indicator(ATR, (float(period),))


def stoch(fastk: float, slowk: float, slowd: float) -> Indicator:
    """Slow stochastic: columns k, d (0..100)."""
    return Indicator(STOCH, (float(fastk), float(slowk), float(slowd)))


def adx(period: float) -> Indicator:
    """Wilder's average directional index."""
    return Indicator(ADX, (float(period),))


def obv() -> Indicator:
    """On-balance volume."""
    return Indicator(OBV, ())


def vwap(period: float) -> Indicator:
    """Rolling VWAP of the typical price over `period` bars."""
    return Indicator(VWAP, (float(period),))


def volatility(period: float) -> Indicator:
    """Sample stdev of the last `period` log returns."""
    return Indicator(VOLATILITY, (float(period),))


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
    """Compile (or load from the numba cache) the bank's batch kernels on tiny inputs."""
    bank_kernels.warmup()
