"""What live execution knows of each order it placed, and what it tells the trading core.

An order is followed from its intent to its last fill. Its state only moves forward (the
registry's rank: PENDING/UNKNOWN < OPEN < terminal; cumulative filled size only grows),
whatever order updates arrive in from the user channel, REST polls and lookups; every update
is still handed on, since the registry drops stale ones itself. The journal hears of each
step once: "sent" when the exchange order id becomes known, "final" at the first terminal
status. Fills are handed on once per trade id, with the client order id REST fills lack.

A terminal status of our own making (a refusal, a failed request: `report`) is our reading,
not the exchange's word. An update from the exchange for such an order is never dropped: the
order is reopened with the exchange's state (journal "reopen", a warning), and the registry,
which sees the same update name an exchange order id for the first time, reopens it too.

Only orders in this table reach the trading core: updates of other orders on the account
(placed by hand, or by a run whose journal is gone) are counted and dropped here; live.py
reports them.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from trader.clock import Clock
from trader.execution.journal import Journal, JournalEntry
from trader.ports import OrderEvents
from trader.types import (
    Fill,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

ZERO = Decimal(0)
_RANK = {OrderStatus.PENDING: 0, OrderStatus.UNKNOWN: 0, OrderStatus.OPEN: 1}
_DECIMALS = ("size", "quote_size", "limit_price", "stop_price", "take_profit_price")
_ENUMS: dict[str, Callable[[str], Any]] = {
    "side": Side, "kind": OrderKind, "order_type": OrderType, "time_in_force": TimeInForce}
_PLAIN = ("strategy", "product_id", "post_only", "bar_time_ns", "attempt", "client_order_id",
          "reason")


def rank(status: OrderStatus) -> int:
    return _RANK.get(status, 2)


def intent_record(intent: OrderIntent, intent_ns: int) -> dict[str, Any]:
    """The journal's JSON form of an intent, with the time it was decided (`intent_ns`)."""
    record: dict[str, Any] = {name: getattr(intent, name) for name in _PLAIN}
    record.update({name: str(getattr(intent, name)) for name in _ENUMS})
    record.update({name: None if getattr(intent, name) is None else str(getattr(intent, name))
                   for name in _DECIMALS})
    record["intent_ns"] = intent_ns
    return record


def intent_from_record(record: dict[str, Any]) -> OrderIntent:
    """The intent back from `intent_record` (KeyError/ValueError if it is not one)."""
    values: dict[str, Any] = {name: record[name] for name in _PLAIN}
    values.update({name: parse(record[name]) for name, parse in _ENUMS.items()})
    values.update({name: None if record.get(name) is None else Decimal(record[name])
                   for name in _DECIMALS})
    return OrderIntent(**values)


@dataclass(slots=True, eq=False)
class LiveOrder:
    """One order from its intent on. `journal_state` is what the journal holds for it."""

    intent: OrderIntent
    intent_ns: int
    journal_state: str = "new"  # new (not written yet) | intent | sent | unknown | final
    order_id: str = ""
    status: OrderStatus = OrderStatus.PENDING
    filled_size: Decimal = ZERO  # cumulative, the most any update said
    fills_size: Decimal = ZERO  # total size of the fills handed on
    trade_ids: set[str] = field(default_factory=set)
    unknown: bool = False  # a create answer was lost: being looked up
    id_taken: bool = False  # refused as a duplicate client order id: looked up, never resent
    cancel_wanted: bool = False  # cancel once the exchange order id is known
    inferred: bool = False  # terminal on our own reading (`report`), not the exchange's
    fill_fetches: int = 0

    @property
    def cid(self) -> str:
        return self.intent.client_order_id

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    @property
    def fills_missing(self) -> bool:
        return self.filled_size > self.fills_size


class LiveOrders:
    """The table of orders live execution follows, and its journal records."""

    def __init__(self, journal: Journal, clock: Clock,
                 on_reopen: Callable[[LiveOrder], None] = lambda order: None) -> None:
        self._events: OrderEvents | None = None
        self._on_reopen = on_reopen  # after a reopened order's update was handed on
        self.journal = journal
        self.clock = clock
        self.orders: dict[str, LiveOrder] = {}
        self._by_order_id: dict[str, LiveOrder] = {}
        self.finals_since_compaction = 0
        self.counters = collections.Counter[str]()

    def bind(self, events: OrderEvents) -> None:
        """Where order updates and fills go (the live execution's trading core)."""
        self._events = events

    @property
    def events(self) -> OrderEvents:
        if self._events is None:
            raise RuntimeError("live orders used before `bind`")
        return self._events

    def track(self, intent: OrderIntent, intent_ns: int, journal_state: str = "new",
              order_id: str = "") -> LiveOrder:
        """The order of `intent`, added if new (idempotent)."""
        order = self.orders.get(intent.client_order_id)
        if order is None:
            order = self.orders[intent.client_order_id] = LiveOrder(intent, intent_ns,
                                                                    journal_state)
            if order_id:
                order.order_id = order_id
                self._by_order_id[order_id] = order
        return order

    def get(self, client_order_id: str) -> LiveOrder | None:
        return self.orders.get(client_order_id)

    def working(self) -> list[LiveOrder]:
        return [o for o in self.orders.values() if not o.done]

    def forget(self, order: LiveOrder) -> None:
        self.orders.pop(order.cid, None)
        self._by_order_id.pop(order.order_id, None)

    # ---- what happened to an order ---------------------------------------------------------

    def journal_intent(self, order: LiveOrder) -> None:
        """Write the intent (synced) unless the journal has it: call before sending."""
        if order.journal_state == "new":
            self.journal.intent(order.cid, intent_record(order.intent, order.intent_ns))
            order.journal_state = "intent"

    def accepted(self, order: LiveOrder, order_id: str) -> None:
        """The exchange took the order: OPEN (a resting limit) or PENDING, unless an update
        already told more."""
        self._learn_order_id(order, order_id)
        if rank(order.status) == 0:
            resting = (order.intent.order_type is OrderType.LIMIT
                       and order.intent.time_in_force is TimeInForce.GTC)
            self.report(order, OrderStatus.OPEN if resting else OrderStatus.PENDING)

    def unknown(self, order: LiveOrder, why: str) -> None:
        """The create answer was lost: UNKNOWN until a lookup or an update resolves it."""
        if order.order_id or order.done:
            return  # the user channel told us of it while the answer was awaited
        order.unknown = True
        if order.journal_state == "intent":
            self.journal.unknown(order.cid, why[:200])
            order.journal_state = "unknown"
        if rank(order.status) == 0:
            self.report(order, OrderStatus.UNKNOWN)

    def never_sent(self, order: LiveOrder, why: str) -> None:
        """Close a journaled intent the exchange never got, without telling anyone."""
        self.journal.final(order.cid, str(OrderStatus.FAILED), why[:200])
        self.forget(order)

    def report(self, order: LiveOrder, status: OrderStatus, reason: str = "") -> None:
        """An update of our own making (accepted, unknown, refused): a terminal one is our
        reading, which the exchange's word may overturn later (see the module docstring)."""
        self.apply(OrderUpdate(order.cid, order.order_id, order.intent.product_id,
                               order.intent.side, status, ZERO, ZERO, ZERO, self.clock(),
                               reason), ours=True)

    def apply(self, update: OrderUpdate, ours: bool = False) -> LiveOrder | None:
        """Take an update of one of our orders and hand it on; None if it is not ours."""
        order = self._find(update)
        if order is None:
            self.counters["foreign_updates"] += 1
            return None
        reopened = not ours and order.done and order.inferred and bool(update.order_id)
        if reopened:
            self._reopen(order, update)
        if update.order_id:
            self._learn_order_id(order, update.order_id)
        if update.client_order_id != order.cid:
            update = replace(update, client_order_id=order.cid)
        was_done = order.done
        if rank(update.status) > rank(order.status) or (
                rank(update.status) == rank(order.status) < 2):
            order.status = update.status
        order.filled_size = max(order.filled_size, update.filled_size)
        self.events.on_update(update)
        if order.done and not was_done:
            # our reading only while the exchange never named it (the registry's rule too)
            order.unknown, order.inferred = False, ours and not order.order_id
            self._finalize(order, update.reject_reason)
        if reopened:
            self._on_reopen(order)
        return order

    def _reopen(self, order: LiveOrder, update: OrderUpdate) -> None:
        """The exchange has an order we closed on our own reading: it is open again."""
        self.counters["reopened"] += 1
        log.warning("order %s was %s on our reading, but the exchange has it as %s %s: "
                    "reopened with the exchange's state", order.cid, order.status,
                    update.order_id, update.status)
        order.status, order.inferred = OrderStatus.PENDING, False
        if order.journal_state == "final":
            self.journal.reopen(order.cid, update.order_id)
            order.journal_state = "sent"
        if not order.order_id:
            order.order_id = update.order_id
            self._by_order_id[update.order_id] = order

    def add_fills(self, order: LiveOrder, fills: Iterable[Fill]) -> int:
        """Hand on the fills not handed on before (oldest first); how many were new."""
        new = 0
        for fill in sorted(fills, key=lambda f: (f.time_ns, f.trade_id)):
            if fill.trade_id in order.trade_ids or fill.order_id != order.order_id:
                continue
            order.trade_ids.add(fill.trade_id)
            order.fills_size += fill.size
            new += 1
            self.events.on_fill(replace(fill, client_order_id=order.cid))
        self.counters["fills"] += new
        return new

    def _find(self, update: OrderUpdate) -> LiveOrder | None:
        order = self.orders.get(update.client_order_id) if update.client_order_id else None
        return order or self._by_order_id.get(update.order_id)

    def _learn_order_id(self, order: LiveOrder, order_id: str) -> None:
        order.unknown = False
        if not order.order_id:
            order.order_id = order_id
            self._by_order_id[order_id] = order
        # also when the id came before the intent was written (a fast user channel)
        if order.journal_state in ("intent", "unknown"):
            self.journal.sent(order.cid, order.order_id)
            order.journal_state = "sent"

    def _finalize(self, order: LiveOrder, why: str) -> None:
        if order.journal_state in ("final", "new"):
            return  # "new": refused before it was written, nothing to close
        self.journal.final(order.cid, str(order.status), why[:200])
        order.journal_state = "final"
        self.finals_since_compaction += 1

    # ---- compaction ------------------------------------------------------------------------

    def compact(self, is_open_position: Callable[[str], bool]) -> int:
        """Rewrite the journal with the orders still needing it; drop the rest from memory.

        Kept: working orders, orders whose fills are not all in, and filled orders of a
        product still held (a restart rebuilds that position from their fills). Returns how
        many entries were kept.
        """
        kept: list[LiveOrder] = []
        for order in list(self.orders.values()):
            if order.journal_state == "new":
                continue  # queued, not written yet: it will be
            if (not order.done or order.fills_missing
                    or (order.fills_size and is_open_position(order.intent.product_id))):
                kept.append(order)
            else:
                self.forget(order)
        self.journal.compact([self._entry(o) for o in kept])
        for order in kept:
            if order.journal_state == "final":
                self.journal.final(order.cid, str(order.status), "carried over")
        self.finals_since_compaction = 0
        self.counters["compactions"] += 1
        return len(kept)

    def _entry(self, order: LiveOrder) -> JournalEntry:
        state = "sent" if order.order_id else order.journal_state
        return JournalEntry(order.cid, intent_record(order.intent, order.intent_ns),
                            order.order_id or None, state)
