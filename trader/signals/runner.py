"""Runs every enabled strategy of an interval on its bar close, over all products at once."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trader.kernels import ring
from trader.kernels.decide import HOLD, decide_all
from trader.kernels.ring import Window
from trader.signals.indicators import Indicator, IndicatorBank
from trader.signals.loader import ACTIONS, LoadedStrategy
from trader.types import Signal


class StrategyRunner:
    """Steps indicators and runs every enabled strategy of an interval on its bar close.

    HOLD decisions are not returned (one per product and bar would flood the journal and the
    signals table); `emit_holds=True` returns them too.
    """

    def __init__(self, strategies: Mapping[str, LoadedStrategy] | None = None,
                 emit_holds: bool = False) -> None:
        self.emit_holds = emit_holds
        self.strategies: dict[str, LoadedStrategy] = {}
        self.banks: dict[int, IndicatorBank] = {}
        self._columns: dict[str, np.ndarray] = {}  # per strategy, into its bank's now/prev
        self._slots: dict[str, int] = {}
        self._products: dict[int, str] = {}
        self._pinned: dict[str, np.ndarray] = {}  # slot masks of strategies with products
        self.set_strategies(strategies or {})

    def set_strategies(self, strategies: Mapping[str, LoadedStrategy]) -> None:
        """Run these from now on; changed indicators re-warm from the window at the next close."""
        self.strategies = dict(strategies)
        self._columns.clear()
        self._pinned.clear()
        for interval_s, bank in self.banks.items():
            bank.require(self._indicators(interval_s))

    def warmup(self) -> None:
        """Run one bar close of every interval on a tiny window, so the kernels are compiled
        (or loaded from the cache) for the very argument types of live bar closes, not on the
        event loop at the first real one. Leaves no state behind."""
        capacity = max([4, *(s.bars for s in self.strategies.values())])
        for interval_s in {s.interval_s for s in self.strategies.values()}:
            window = ring.new_window(2, capacity)
            for _ in range(3):
                ring.push_all(window.buf, window.head, window.count, np.ones((2, ring.FIELDS)))
            self.on_bar_close(interval_s, 0, window, {"WARM-UP": 0})
        self.banks.clear()
        self._columns.clear()
        self._pinned.clear()
        self._slots, self._products = {}, {}

    def invalidate(self, slot: int) -> None:
        """A slot's windows were rewritten (history loaded): rebuild its indicator states."""
        for bank in self.banks.values():
            bank.invalidate(slot)

    def warmup_bars(self, interval_s: int) -> int:
        """Bars of history the interval's strategies need (a lower bound for the window)."""
        return max((s.warmup_bars for s in self._active(interval_s)), default=0)

    def on_bar_close(self, interval_s: int, bar_time_s: int, window: Window,
                     slots: Mapping[str, int], allowed_mask: np.ndarray | None = None
                     ) -> list[Signal]:
        """Signals of the interval's strategies for the bar just pushed to `window`.

        `slots` maps product ids to window slots; a strategy without products runs on the
        slots in `allowed_mask` (the selector's top N; None: every product).
        """
        active = self._active(interval_s)
        if not active:
            return []
        bank = self.banks.get(interval_s)
        if bank is None or bank.slots != window.buf.shape[0]:
            bank = self.banks[interval_s] = IndicatorBank(window.buf.shape[0])
            bank.require(self._indicators(interval_s))
            self._columns.clear()
        bank.on_bar_close(window, slots)
        if slots != self._slots:
            self._slots = dict(slots)
            self._products = {slot: product_id for product_id, slot in slots.items()}
            self._pinned.clear()
        out = np.empty((bank.slots, 4))
        signals: list[Signal] = []
        for strategy in active:
            cols = self._columns.get(strategy.name)
            if cols is None:
                cols = self._columns[strategy.name] = bank.columns(strategy.indicators)
            mask = self._mask(strategy, window, bank, allowed_mask)
            decide_all(strategy.decide, bank.now, bank.prev, cols, window.buf, window.head,
                       strategy.bars, mask, strategy.param_array, out)
            keep = mask if self.emit_holds else mask & (out[:, 1] != HOLD)
            signals += _signals(strategy, self._products, bar_time_s, np.flatnonzero(keep), out)
        return signals

    def _active(self, interval_s: int) -> list[LoadedStrategy]:
        return [s for s in self.strategies.values()
                if s.config.enabled and s.interval_s == interval_s]

    def _indicators(self, interval_s: int) -> list[Indicator]:
        return [i for s in self._active(interval_s) for i in s.indicators]

    def _mask(self, strategy: LoadedStrategy, window: Window, bank: IndicatorBank,
              allowed_mask: np.ndarray | None) -> np.ndarray:
        base: np.ndarray = bank.occupied if allowed_mask is None else allowed_mask & bank.occupied
        if strategy.config.products:
            pinned = self._pinned.get(strategy.name)
            if pinned is None:
                pinned = np.zeros(bank.slots, np.bool_)
                pinned[[self._slots[p] for p in strategy.config.products if p in self._slots]] = 1
                self._pinned[strategy.name] = pinned
            base = pinned
        return base & (window.count >= strategy.warmup_bars)


def _signals(strategy: LoadedStrategy, products: Mapping[int, str], bar_time_s: int,
             slots: np.ndarray, out: np.ndarray) -> list[Signal]:
    """Signal values for the decisions out[slots] of one strategy."""
    bar_time_ns = bar_time_s * 1_000_000_000
    name, reasons = strategy.name, strategy.reasons
    return [Signal(name, products[slot], bar_time_ns, score, ACTIONS[int(code)],
                   None if stop != stop else stop,  # NaN: none
                   None if take_profit != take_profit else take_profit, reasons[int(code)])
            for slot, (score, code, stop, take_profit)
            in zip(slots.tolist(), out[slots].tolist(), strict=True)]
