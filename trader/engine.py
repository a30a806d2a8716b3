"""The fixed order of operations on market events, synchronous and shared by live and backtest.

Read `Engine.on_bar` first: it is everything that happens when a bar closes, in order. The
feed calls `on_trade_columns`, `on_heartbeat`, `on_quote` and `on_gap` for every frame;
nothing awaits between a frame and what it causes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from trader.config import MarketConfig
from trader.kernels import ring
from trader.market.candles import BarListener, Market
from trader.market.quotes import QuoteBook
from trader.market.selector import Selector
from trader.signals.book import SignalBook
from trader.signals.runner import StrategyRunner
from trader.trading.orders import Trading
from trader.types import Heartbeat, Quote, Signal

STALE_BAR_S = 120  # a bar repaired this long after it closed is not traded on
TradeColumnsSink = Callable[[Sequence[str], Sequence[int], Sequence[float], Sequence[float]],
                            None]
BarSink = BarListener  # (interval_s, bar_time_s), called after trading has seen the bar
BarTimer = Callable[[int, float], None]  # (interval_s, seconds one on_bar took)


class Engine:
    """Routes feed events into the market and runs every closed bar through the flow.

    The market announces its closed bars to this engine alone (`Market.bind`); the engine
    then calls each stage itself, so the order never depends on how the parts were built.
    """

    name = "market"

    def __init__(self, market: Market, *, quotes: QuoteBook | None = None,
                 runner: StrategyRunner | None = None, book: SignalBook | None = None,
                 selector: Selector | None = None, trading: Trading | None = None,
                 bar_sinks: Sequence[BarSink] = (), trade_sinks: Sequence[TradeColumnsSink] = (),
                 on_repair_needed: Callable[[], None] = lambda: None,
                 observe_bar_close: BarTimer | None = None) -> None:
        self.market = market
        self.quotes = quotes or QuoteBook()
        self.runner = runner or StrategyRunner()
        self.book = book or SignalBook()
        self.selector = selector
        self.trading = trading
        self.bar_sinks = tuple(bar_sinks)  # e.g. the store's candle and equity recorders
        self.trade_sinks = tuple(trade_sinks)  # e.g. the paper account's fills
        self.on_repair_needed = on_repair_needed
        self.exchange_ns = 0  # the latest exchange time the feed brought (a replay's clock)
        self.observe_bar_close = observe_bar_close  # e.g. a latency histogram
        market.bind(self.on_bar if observe_bar_close is None else self._timed_on_bar)

    # ---- the bar close ----------------------------------------------------------------------

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        """One bar closed for every product; what follows, in this order."""
        if self.selector is not None:
            self.selector.on_bar(interval_s, bar_time_s)  # 1. the top N on this very bar
        signals = self._decide(interval_s, bar_time_s)  # 2. indicators, then strategies
        self.book.record(signals)  # 3. the signal book (and its sinks: the signals table)
        if self.trading is not None:
            self._trade(interval_s, bar_time_s, signals)  # 4. exits, then entries
        for sink in self.bar_sinks:
            sink(interval_s, bar_time_s)  # 5. the bar sinks: candles and equity rows

    def _timed_on_bar(self, interval_s: int, bar_time_s: int) -> None:
        started = time.perf_counter()
        self.on_bar(interval_s, bar_time_s)
        assert self.observe_bar_close is not None
        self.observe_bar_close(interval_s, time.perf_counter() - started)

    def _decide(self, interval_s: int, bar_time_s: int) -> list[Signal]:
        """Every strategy of the interval over the selector's top N and what is held."""
        market = self.market
        allowed = None
        if self.selector is not None:
            allowed = self.selector.mask(len(market.windows[interval_s].count))
            if self.trading is not None:  # a held product stays managed out of the top N
                for product_id in self.trading.registry.positions():
                    if product_id in market.slots:
                        allowed[market.slots[product_id]] = True
        return self.runner.on_bar_close(interval_s, bar_time_s, market.windows[interval_s],
                                        market.slots, allowed)

    def _trade(self, interval_s: int, bar_time_s: int, signals: list[Signal]) -> None:
        """Exits first at the 1-minute closes, then the strategies' decisions; none on history.

        A warm-up bar's moment has passed, and after a restart a decision on it would mint the
        client order id of an order an earlier run placed on that very bar (Coinbase answers a
        repeat with that old order)."""
        trading = self.trading
        assert trading is not None
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
        if times_ns and times_ns[-1] > self.exchange_ns:
            self.exchange_ns = times_ns[-1]
        self.market.on_trade_columns(product_ids, times_ns, prices, sizes)
        for sink in self.trade_sinks:
            sink(product_ids, times_ns, prices, sizes)
        if self.market.queue:
            self._check_repairs()

    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.exchange_ns = max(self.exchange_ns, heartbeat.current_time_ns)
        self.market.advance(heartbeat.current_time_ns)
        if self.trading is not None:
            self.trading.on_tick(self.trading.clock())
        if self.market.queue:
            self._check_repairs()

    def on_quote(self, quote: Quote) -> None:
        self.quotes.update(quote)

    def on_gap(self, from_ns: int, to_ns: int) -> None:
        self.market.mark_dirty(from_ns, to_ns)

    def _check_repairs(self) -> None:
        queue = self.market.queue
        if queue and queue[0].dirty.any():
            self.on_repair_needed()

    # ---- configuration and status -----------------------------------------------------------

    def apply_market(self, section: MarketConfig) -> None:
        """The hot keys of `[market]`: the close grace and the product list."""
        self.market.grace_ns = section.close_grace_ms * 1_000_000
        _, removed = self.market.set_products(section.products)
        for product_id in removed:
            self.quotes.forget(product_id)
            self.book.forget(product_id)
        self._check_repairs()

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.market.snapshot()
        for product_id, figures in snapshot["products"].items():
            quote = self.quotes.view.get(product_id)
            figures["bid"] = quote.best_bid if quote else None
            figures["ask"] = quote.best_ask if quote else None
        return snapshot
