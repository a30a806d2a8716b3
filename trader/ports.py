"""The shapes components plug into the app with (stdlib and domain types only)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from trader.types import Fill, OrderIntent, OrderUpdate, Product


@runtime_checkable
class Component(Protocol):
    """A long-lived part of the daemon, run as one named task.

    `run()` loops until cancelled and cleans up in `finally`. `snapshot()` returns its
    counters for the status view: a dict with an optional "counters" mapping of name -> number
    and an optional "products" mapping of product id -> {name: number}; both are exported as
    Prometheus metrics. Anything else in the dict is for display only.
    """

    name: str

    async def run(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


@runtime_checkable
class Drains(Protocol):
    """A component with work to finish before it is cancelled at shutdown."""

    name: str

    async def drain(self) -> None: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A component that takes its own typed config section when a reload changed it."""

    def apply(self, section: Any) -> None: ...


@runtime_checkable
class Execution(Protocol):
    """Where order intents go: paper, shadow or live (DESIGN.md section 4).

    `submit` and `cancel` return at once and never raise on an exchange problem; what
    happens is reported later to the `TradingEvents` it was bound to (`bind`, once: the
    trading core is built from the execution, so each needs the other).
    `ready()` is False until the execution has reconciled with the exchange after a start.
    """

    name: str

    def bind(self, events: TradingEvents) -> None: ...

    def submit(self, intent: OrderIntent) -> None: ...

    def cancel(self, client_order_id: str) -> None: ...

    def ready(self) -> bool: ...

    def equity_usd(self) -> Decimal | None: ...


class OrderEvents(Protocol):
    """What an execution reports to: the trading core (see `trader.trading.orders`)."""

    def on_update(self, update: OrderUpdate) -> None: ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_error(self, kind: str, detail: str) -> None: ...


class TradingEvents(OrderEvents, Protocol):
    """The trading core as an execution sees it: events, the order rules, and the positions.

    `is_open_position(product_id)`: whether a position is held (live journal compaction keeps
    the orders of held products); `restore_intent(intent)`: a journaled intent given back
    after a restart; `products`: the order rules by product id (read-only, kept current).
    """

    products: Mapping[str, Product]

    def is_open_position(self, product_id: str) -> bool: ...

    def restore_intent(self, intent: OrderIntent) -> None: ...
