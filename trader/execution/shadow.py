"""Shadow execution: live's decisions and request bodies, nothing sent to Coinbase.

Every submit and cancel logs, at INFO and as JSON, the exact body live execution would POST
(`orders.create_order_body`, `orders.cancel_body`: the functions live's REST client uses),
once per client order id as live sends it once. Fills are simulated by the paper engine, so
the status view shows what would have happened.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from trader.coinbase import orders
from trader.execution.paper import PaperExecution
from trader.types import OrderIntent

log = logging.getLogger(__name__)


class ShadowExecution(PaperExecution):
    """Paper fills, with live's request bodies logged (see the module docstring)."""

    name = "shadow"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The arguments of `PaperExecution`."""
        super().__init__(*args, **kwargs)
        self._logged: set[str] = set()

    def submit(self, intent: OrderIntent) -> None:
        if intent.client_order_id not in self._logged:
            self._logged.add(intent.client_order_id)
            body = orders.create_order_body(intent)
            log.info("shadow: POST /orders %s", orjson.dumps(body).decode())
            self.counters["would_create"] += 1
        super().submit(intent)

    def cancel(self, client_order_id: str) -> None:
        # Deferred like paper's own cancel, so an order submitted just before is known.
        self._later(lambda: self._log_cancel(client_order_id))
        super().cancel(client_order_id)

    def _log_cancel(self, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            return  # live would send nothing for it either
        body = orders.cancel_body([order.order_id])
        log.info("shadow: POST /orders/batch_cancel %s", orjson.dumps(body).decode())
        self.counters["would_cancel"] += 1

