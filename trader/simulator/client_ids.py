"""Which order a repeated client order id refers to, and for how long a closed one keeps it.

Coinbase does not say how long a client order id stays reserved (PROTOCOL.md, Idempotency):
while the order is open, or forever. The simulator keeps it forever unless the fault settings
give `id_retention_s`: then a closed order's id is forgotten that many wall seconds after it
closed, and a repeat of it creates a new order (the case a daemon must never walk into).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trader.simulator.exchange import Exchange, Order
from trader.simulator.order_faults import FaultDice


class ClientIds:
    """Answers `holder(client_order_id)` under the dice's current retention setting."""

    def __init__(self, exchange: Exchange, dice: FaultDice,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.dice = dice
        self.forgotten = 0  # repeats answered as new orders
        self._monotonic = monotonic
        self._closed_s: dict[str, float] = {}  # order id -> when it closed (monotonic)
        exchange.listen(self._on_order)

    def holder(self, client_order_id: str) -> Order | None:
        """The order a create with this id repeats; None if the id is new or forgotten."""
        order = self.exchange.by_client(client_order_id)
        retention_s = self.dice.faults.id_retention_s
        if order is None or not retention_s:
            return order
        closed_s = self._closed_s.get(order.order_id)
        if closed_s is not None and self._monotonic() - closed_s >= retention_s:
            self.forgotten += 1
            return None
        return order

    def _on_order(self, order: Order) -> None:
        if not order.is_open:
            self._closed_s.setdefault(order.order_id, self._monotonic())
