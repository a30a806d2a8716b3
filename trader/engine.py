"""The fixed order of operations on market events, synchronous and shared by live and backtest.

The feed calls in here for every frame; nothing awaits between a frame and what it causes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trader.market import Market
from trader.types import Heartbeat, Quote, Trade


class Engine:
    """Routes feed events into the market; asks for repairs when minutes wait for them."""

    name = "market"
    config_sections = ("market",)

    def __init__(self, market: Market, on_repair_needed: Callable[[], None] = lambda: None) -> None:
        self.market = market
        self.on_repair_needed = on_repair_needed
        self.quotes: dict[str, Quote] = {}

    # ---- the feed's sink --------------------------------------------------------------------

    def on_trades(self, trades: list[Trade]) -> None:
        self.market.on_trades(trades)
        self._check_repairs()

    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.market.advance(heartbeat.current_time_ns)
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
            self._check_repairs()

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.market.snapshot()
        for product_id, figures in snapshot["products"].items():
            quote = self.quotes.get(product_id)
            figures["bid"] = quote.best_bid if quote else None
            figures["ask"] = quote.best_ask if quote else None
        return snapshot
