"""The fixed order of operations on market events, synchronous and shared by live and backtest.

The feed calls in here for every frame; nothing awaits between a frame and what it causes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trader.kernels import ring
from trader.market.candles import Market
from trader.market.selector import Selector
from trader.signals.book import SignalBook
from trader.signals.runner import StrategyRunner
from trader.trading.orders import Trading
from trader.types import Heartbeat, Quote, Signal

STALE_BAR_S = 120  # a bar repaired this long after it closed is not traded on
TradeColumnsListener = Callable[[Sequence[str], Sequence[int], Sequence[float], Sequence[float]],
                                None]


class Engine:
    """Routes feed events into the market and, on every bar close, the bar through the
    strategies (selector first, so its ranking is current); asks for candle repairs."""

    name = "market"
    config_sections = ("market",)

    def __init__(self, market: Market, on_repair_needed: Callable[[], None] = lambda: None,
                 selector: Selector | None = None, runner: StrategyRunner | None = None,
                 book: SignalBook | None = None, trading: Trading | None = None) -> None:
        self.market = market
        self.trading = trading
        self.trade_listeners: list[TradeColumnsListener] = []  # e.g. the paper account
        self.on_repair_needed = on_repair_needed
        self.quotes: dict[str, Quote] = {}
        self.selector = selector
        self.runner = runner or StrategyRunner()
        self.book = book or SignalBook()
        market.listeners.append(self.on_bar)  # after the selector's, which registered first

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        """One bar closed for every product: indicators, then every strategy of the interval."""
        market = self.market
        allowed = None
        if self.selector is not None:
            allowed = self.selector.mask(len(market.windows[interval_s].count))
            if self.trading is not None:  # a held product stays managed out of the top N
                for product_id in self.trading.registry.positions():
                    if product_id in market.slots:
                        allowed[market.slots[product_id]] = True
        signals = self.runner.on_bar_close(interval_s, bar_time_s, market.windows[interval_s],
                                           market.slots, allowed)
        self.book.record(signals)
        if self.trading is not None:
            self._trade(interval_s, bar_time_s, signals)

    def _trade(self, interval_s: int, bar_time_s: int, signals: list[Signal]) -> None:
        """Exits first at the 1-minute closes, then the strategies' decisions; none on history.

        A warm-up bar's moment has passed, and after a restart a decision on it would mint the
        client order id of an order an earlier run placed on that very bar (Coinbase answers a
        repeat with that old order)."""
        trading = self.trading
        if self.market.is_history(bar_time_s, interval_s, STALE_BAR_S):
            trading.counters["history_bars_not_traded"] += 1
            return
        bar_time_ns = bar_time_s * 1_000_000_000
        if interval_s == 60:
            held = trading.registry.positions()
            if held:
                window = self.market.windows[60]
                newest = ring.last_n_all(window.buf, window.head, 1)[:, 0, ring.CLOSE]
                slots = self.market.slots
                trading.on_prices({p: float(newest[slots[p]]) for p in held if p in slots},
                                  bar_time_ns)
        if signals:
            trading.on_signals(signals)

    # ---- the feed's sink --------------------------------------------------------------------

    def on_trade_columns(self, product_ids: Sequence[str], times_ns: Sequence[int],
                         prices: Sequence[float], sizes: Sequence[float]) -> None:
        """One frame's trades as columns, oldest first."""
        self.market.on_trade_columns(product_ids, times_ns, prices, sizes)
        for listener in self.trade_listeners:
            listener(product_ids, times_ns, prices, sizes)
        if self.market.queue:
            self._check_repairs()

    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.market.advance(heartbeat.current_time_ns)
        if self.trading is not None:
            self.trading.on_tick(self.trading.clock())
        if self.market.queue:
            self._check_repairs()

    def on_quote(self, quote: Quote) -> None:
        self.quotes[quote.product_id] = quote

    def on_gap(self, from_ns: int, to_ns: int) -> None:
        self.market.mark_dirty(from_ns, to_ns)

    def _check_repairs(self) -> None:
        queue = self.market.queue
        if queue and queue[0].dirty.any():
            self.on_repair_needed()

    # ---- configuration and status -----------------------------------------------------------

    def apply_section(self, name: str, section: Any) -> None:
        if name == "market":
            self.market.grace_ns = section.close_grace_ms * 1_000_000
            _, removed = self.market.set_products(section.products)
            for product_id in removed:
                self.quotes.pop(product_id, None)
                self.book.forget(product_id)
            self._check_repairs()

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.market.snapshot()
        for product_id, figures in snapshot["products"].items():
            quote = self.quotes.get(product_id)
            figures["bid"] = quote.best_bid if quote else None
            figures["ask"] = quote.best_ask if quote else None
        return snapshot
