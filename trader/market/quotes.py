"""The latest ticker quote per product: one owner writes, everyone else reads a view."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from trader.types import Quote


class QuoteBook:
    """Written by the engine (the feed's sink); `view` is the read-only map the others hold."""

    def __init__(self) -> None:
        self._quotes: dict[str, Quote] = {}
        self.view: Mapping[str, Quote] = MappingProxyType(self._quotes)

    def update(self, quote: Quote) -> None:
        self._quotes[quote.product_id] = quote

    def forget(self, product_id: str) -> None:
        self._quotes.pop(product_id, None)
