"""The product catalog: each product's order rules (increments, minimums, flags) from REST.

Loaded at start and refreshed hourly, so a product Coinbase switches to cancel-only or
limit-only is traded by its new rules within the hour. Until the first load succeeds the
trading core has no rules and makes no orders; failures are retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import aiohttp

from trader.coinbase.rest import Pacer, PublicRest, RestError, RestTimer
from trader.types import Product

log = logging.getLogger(__name__)

REFRESH_S = 3600.0
RETRY_MAX_S = 60.0


class ProductCatalog:
    """Hands every load of the product list to `on_products`."""

    name = "products"

    def __init__(self, rest_url: str, pacer: Pacer,
                 on_products: Callable[[list[Product]], None], *,
                 observe_rest: RestTimer | None = None) -> None:
        self.rest_url = rest_url
        self.pacer = pacer
        self.observe_rest = observe_rest
        self.on_products = on_products
        self.loaded = asyncio.Event()
        self.counters = {"loads": 0, "failures": 0, "products": 0}
        self.last_error = ""

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            rest = PublicRest(session, self.rest_url, self.pacer, observe=self.observe_rest)
            failures = 0
            while True:
                try:
                    products = await rest.products()
                except RestError as exc:
                    failures += 1
                    self.counters["failures"] += 1
                    self.last_error = str(exc)
                    log.warning("product list not loaded: %s", exc)
                    await asyncio.sleep(random.uniform(0, min(RETRY_MAX_S, 2.0 ** failures)))
                    continue
                failures = 0
                self._loaded(products)
                await asyncio.sleep(REFRESH_S)

    def _loaded(self, products: list[Product]) -> None:
        self.counters["loads"] += 1
        self.counters["products"] = len(products)
        self.last_error = ""
        self.on_products(products)
        self.loaded.set()

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "last_error": self.last_error}
