"""The one owner of orders, fills and positions; everything else reads views.

Idempotency rules, so replays, duplicates and reordering cannot double-count:
- An order's state is the greatest update seen by (status rank, cumulative filled size, total
  fees, time): PENDING/UNKNOWN < OPEN < terminal, so an older update never moves it back and a
  terminal order stays terminal. The result is the same in any arrival order.
  One exception: a terminal status the exchange never gave (no exchange order id was ever
  seen: the execution's own reading of a refusal or an error) is superseded by the first
  update that names the order on the exchange, which reopens it (logged as a warning). From
  then on the rule above holds again.
- A fill counts once per `(product_id, trade_id)`, whichever source delivers it. A product's
  position is the fold of its fills in (time_ns, trade_id) order: a fill older than the last
  one folded refolds that product, so positions do not depend on arrival order either.
Positions are long-only at average cost; PnL and fees are exact Decimals in the quote currency.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from trader.types import (
    ClosedTrade,
    Fill,
    Order,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderUpdate,
    Position,
    Side,
)

log = logging.getLogger(__name__)

# Never change: client order ids of journaled intents must stay the same across versions.
CLIENT_ORDER_ID_NAMESPACE = uuid.UUID("842766a1-e40f-44b8-8463-8fe170a8241e")

ZERO = Decimal(0)
_RANK = {OrderStatus.PENDING: 0, OrderStatus.UNKNOWN: 0, OrderStatus.OPEN: 1}
_STATUS_ORDER = tuple(OrderStatus)


def client_order_id(strategy: str, product_id: str, bar_time_ns: int, attempt: int) -> str:
    """The uuid5 of (strategy, product, signal bar time, attempt): the same intent, the same id."""
    name = f"{strategy}|{product_id}|{bar_time_ns}|{attempt}"
    return str(uuid.uuid5(CLIENT_ORDER_ID_NAMESPACE, name))


def _update_key(status: OrderStatus, filled: Decimal, fees: Decimal, time_ns: int) -> tuple:
    return (_RANK.get(status, 2), filled, fees, time_ns, _STATUS_ORDER.index(status))


def _fill_key(fill: Fill) -> tuple[int, str]:
    return (fill.time_ns, fill.trade_id)


@dataclass(frozen=True, slots=True)
class PnL:
    """Profit and loss in the quote currency; `net` = realized + unrealized - fees."""

    realized: Decimal
    unrealized: Decimal
    fees: Decimal

    @property
    def net(self) -> Decimal:
        return self.realized + self.unrealized - self.fees


@dataclass(slots=True)
class _Holding:
    strategy: str
    opened_by: str  # trade id of the opening fill
    opened_ns: int
    stop_price: Decimal | None
    take_profit_price: Decimal | None
    peak_price: Decimal
    size: Decimal = ZERO
    # exact rationals: a partial sell removes cost * sold / held, which a Decimal would round
    # differently depending on the order the fills came in
    cost: Fraction = Fraction(0)
    bought: Decimal = ZERO
    bought_value: Decimal = ZERO
    sold: Decimal = ZERO
    sold_value: Decimal = ZERO
    realized: Fraction = Fraction(0)
    fees: Decimal = ZERO
    updated_ns: int = 0


@dataclass(slots=True)
class _Book:
    """One product: its fills in fold order and what folding them gave."""

    fills: list[Fill] = field(default_factory=list)
    holding: _Holding | None = None
    closed: list[ClosedTrade] = field(default_factory=list)
    orphan_sells: int = 0  # sell fills with nothing held
    orphan_fees: Decimal = ZERO
    oversells: int = 0  # sell fills larger than the holding (the excess is ignored)
    notified: int = 0  # closed trades already handed out by `take_closed`

    def reset(self) -> None:
        self.holding, self.closed = None, []
        self.orphan_sells, self.orphan_fees, self.oversells = 0, ZERO, 0


class Registry:
    """Orders, fills and positions; changed only through `record_intent`, `apply_update`,
    `apply_fill` and `mark`. `take_closed` hands out every completed round trip once."""

    name = "registry"

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._intents: dict[str, OrderIntent] = {}
        self._working: dict[str, None] = {}  # client order ids of non-terminal orders
        self._order_keys: dict[str, tuple] = {}
        self._fill_ids: set[tuple[str, str]] = set()
        self._books: dict[str, _Book] = {}
        self._marks: dict[str, Decimal] = {}
        self._closed_new: list[ClosedTrade] = []  # completed since the last `take_closed`
        self.counters = collections.Counter[str]()

    # ---- orders ----------------------------------------------------------------------------

    def record_intent(self, intent: OrderIntent) -> bool:
        """Register an order before it is sent, so a working entry blocks a second one.

        Idempotent: a known client order id changes nothing (it may only add the strategy to an
        order first seen in an update). Recording an entry that `can_enter` denies is a bug and
        raises ValueError.
        """
        known = self._orders.get(intent.client_order_id)
        if known is not None:
            return self._adopt(known, intent)
        if intent.kind is OrderKind.ENTRY:
            reason = self._entry_denial(intent)
            if reason is not None:
                raise ValueError(f"second entry refused: {reason}")
        self._intents[intent.client_order_id] = intent
        self._store(Order(
            intent.client_order_id, "", intent.strategy, intent.product_id, intent.side,
            intent.kind, OrderStatus.PENDING, intent.size, intent.quote_size,
            intent.limit_price, ZERO, ZERO, ZERO, 0, ""))
        self._order_keys[intent.client_order_id] = (-1,)
        self.counters["intents"] += 1
        return True

    def _adopt(self, known: Order, intent: OrderIntent) -> bool:
        if known.strategy or not intent.strategy:
            return False
        self._intents[intent.client_order_id] = intent
        self._store(dataclasses.replace(
            known, strategy=intent.strategy, kind=intent.kind, size=intent.size,
            quote_size=intent.quote_size, limit_price=intent.limit_price))
        book = self._books.get(intent.product_id)
        if book is not None:
            self._refold(book)
        return True

    def apply_update(self, update: OrderUpdate) -> bool:
        """Take an order update; True if the order changed. Older or repeated updates are no-ops."""
        self.counters["updates"] += 1
        coid = update.client_order_id or update.order_id
        key = _update_key(update.status, update.filled_size, update.total_fees, update.time_ns)
        known = self._orders.get(coid)
        if known is None:
            self.counters["updates_unknown_order"] += 1
            known = self._outside_order(coid, update)
            self._order_keys[coid] = (-1,)
        reopened = self._reopens(known, update)
        if key <= self._order_keys[coid] and not reopened:
            self.counters["updates_stale"] += 1
            return False
        self._order_keys[coid] = key
        order = dataclasses.replace(
            known, order_id=update.order_id or known.order_id, status=update.status,
            filled_size=update.filled_size, average_filled_price=update.average_filled_price,
            total_fees=update.total_fees, updated_ns=update.time_ns,
            reject_reason=update.reject_reason if reopened
            else update.reject_reason or known.reject_reason)
        changed = order != known or coid not in self._orders
        self._store(order)
        return changed

    def _reopens(self, known: Order, update: OrderUpdate) -> bool:
        """Whether `update` reopens an order closed on our own reading, not the exchange's."""
        if not (known.status.is_terminal and not known.order_id and update.order_id):
            return False
        self.counters["orders_reopened"] += 1
        log.warning("order %s was %s on our reading (%s), but the exchange has it as %s %s: "
                    "taking the exchange's state", known.client_order_id, known.status,
                    known.reject_reason or "no reason", update.order_id, update.status)
        return True

    @staticmethod
    def _outside_order(coid: str, update: OrderUpdate) -> Order:
        kind = OrderKind.ENTRY if update.side is Side.BUY else OrderKind.EXIT
        return Order(coid, update.order_id, "", update.product_id, update.side, kind,
                     OrderStatus.PENDING, None, None, None, ZERO, ZERO, ZERO, 0, "")

    def _store(self, order: Order) -> None:
        self._orders[order.client_order_id] = order
        if order.status.is_terminal:
            self._working.pop(order.client_order_id, None)
        else:
            self._working[order.client_order_id] = None

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def orders(self) -> list[Order]:
        """Every order known, terminal ones included, in the order first seen."""
        return list(self._orders.values())

    def open_orders(self, product_id: str | None = None) -> list[Order]:
        """Orders not in a terminal state (PENDING, OPEN, UNKNOWN), optionally of one product."""
        orders = (self._orders[c] for c in self._working)
        return [o for o in orders if product_id is None or o.product_id == product_id]

    def _entry_denial(self, intent: OrderIntent) -> str | None:
        """A later attempt of an entry (a reprice of its unfilled rest) may add to the
        position its own earlier attempts opened; anything else is a second entry."""
        if intent.attempt == 0:
            return self.can_enter(intent.strategy, intent.product_id)
        for order in self.open_orders(intent.product_id):
            if order.kind is OrderKind.ENTRY:
                return f"an entry order for {intent.product_id} is {order.status}"
        book = self._books.get(intent.product_id)
        if book is not None and book.holding is not None:
            if book.holding.strategy != intent.strategy:
                return f"{intent.product_id} is already held by {book.holding.strategy}"
        return None

    def can_enter(self, strategy: str, product_id: str) -> str | None:
        """Why `strategy` may not open `product_id` now (one position per product), or None."""
        book = self._books.get(product_id)
        if book is not None and book.holding is not None:
            owner = book.holding.strategy
            who = "this strategy" if owner == strategy else (owner or "an outside order")
            return f"{product_id} is already held by {who}"
        for order in self.open_orders(product_id):
            if order.kind is OrderKind.ENTRY:
                return (f"an entry order for {product_id} is {order.status} "
                        f"({order.strategy or 'outside order'})")
        return None

    # ---- fills and positions ---------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> bool:
        """Take a fill; True if new. A `(product_id, trade_id)` seen before changes nothing."""
        fill_id = (fill.product_id, fill.trade_id)
        if fill_id in self._fill_ids:
            self.counters["fills_duplicate"] += 1
            return False
        self._fill_ids.add(fill_id)
        self.counters["fills"] += 1
        book = self._books.setdefault(fill.product_id, _Book())
        if book.fills and _fill_key(fill) < _fill_key(book.fills[-1]):
            self.counters["fills_reordered"] += 1
            bisect.insort(book.fills, fill, key=_fill_key)
            self._refold(book)
        else:
            book.fills.append(fill)
            self._step(book, fill)
        self._notify(book)
        return True

    def _refold(self, book: _Book) -> None:
        old = book.holding
        book.reset()
        for fill in book.fills:
            self._step(book, fill)
        new = book.holding
        if old is not None and new is not None and old.opened_by == new.opened_by:
            new.peak_price = max(new.peak_price, old.peak_price)  # the same position: keep marks

    def _step(self, book: _Book, fill: Fill) -> None:
        if fill.side is Side.BUY:
            self._buy(book, fill)
        elif book.holding is None:
            book.orphan_sells += 1
            book.orphan_fees += fill.fee
        else:
            self._sell(book, fill)

    def _buy(self, book: _Book, fill: Fill) -> None:
        held = book.holding
        if held is None:
            intent = self._intents.get(fill.client_order_id)
            order = self._orders.get(fill.client_order_id)
            held = book.holding = _Holding(
                order.strategy if order else "", fill.trade_id, fill.time_ns,
                intent.stop_price if intent else None,
                intent.take_profit_price if intent else None, fill.price)
        held.size += fill.size
        held.bought += fill.size
        held.cost += Fraction(fill.price * fill.size)
        held.bought_value += fill.price * fill.size
        held.fees += fill.fee
        held.peak_price = max(held.peak_price, fill.price)
        held.updated_ns = fill.time_ns

    def _sell(self, book: _Book, fill: Fill) -> None:
        held = book.holding
        assert held is not None
        size = min(fill.size, held.size)
        if size < fill.size:
            book.oversells += 1
        removed = (held.cost if size == held.size
                   else held.cost * Fraction(size) / Fraction(held.size))
        held.realized += Fraction(fill.price * size) - removed
        held.sold += size
        held.sold_value += fill.price * size
        held.size -= size
        held.cost -= removed
        held.fees += fill.fee
        held.updated_ns = fill.time_ns
        if held.size == 0:
            book.closed.append(_closed(fill.product_id, held))
            book.holding = None

    def _notify(self, book: _Book) -> None:
        book.notified = min(book.notified, len(book.closed))
        self._closed_new += book.closed[book.notified:]
        book.notified = len(book.closed)

    def take_closed(self) -> list[ClosedTrade]:
        """The round trips completed since the last call, each once, oldest first."""
        closed, self._closed_new = self._closed_new, []
        return closed

    def mark(self, product_id: str, price: Decimal) -> None:
        """Set the price unrealized PnL and trailing stops use for `product_id`."""
        self._marks[product_id] = price
        book = self._books.get(product_id)
        if book is not None and book.holding is not None:
            book.holding.peak_price = max(book.holding.peak_price, price)

    def position(self, product_id: str) -> Position | None:
        book = self._books.get(product_id)
        if book is None or book.holding is None:
            return None
        return self._view(product_id, book.holding)

    def positions(self, strategy: str | None = None) -> dict[str, Position]:
        """Held products (optionally of one strategy) by product id."""
        return {p: self._view(p, h) for p, h in self._holdings()
                if strategy is None or h.strategy == strategy}

    def _holdings(self) -> Iterator[tuple[str, _Holding]]:
        for product_id, book in self._books.items():
            if book.holding is not None:
                yield product_id, book.holding

    def _view(self, product_id: str, held: _Holding) -> Position:
        mark = self._marks.get(product_id)
        cost = _decimal(held.cost)
        unrealized = ZERO if mark is None else mark * held.size - cost
        return Position(
            product_id, held.strategy, held.size, cost, _decimal(held.cost / Fraction(held.size)),
            _decimal(held.realized), held.fees, unrealized, mark, held.peak_price, held.stop_price,
            held.take_profit_price, held.opened_ns, held.updated_ns)

    def closed_trades(self) -> list[ClosedTrade]:
        return [t for book in self._books.values() for t in book.closed]

    def pnl(self, strategy: str | None = None) -> PnL:
        """PnL of one strategy, or of everything (None). Fees of sells with nothing held
        count under strategy "" (and in the total)."""
        # summed exactly: a Decimal sum would round differently with the products' order
        realized = unrealized = fees = Fraction(0)
        for trade in self.closed_trades():
            if strategy is None or trade.strategy == strategy:
                realized += Fraction(trade.realized_pnl)
                fees += Fraction(trade.fees)
        for position in self.positions(strategy).values():
            realized += Fraction(position.realized_pnl)
            unrealized += Fraction(position.unrealized_pnl)
            fees += Fraction(position.fees)
        if strategy in (None, ""):
            fees += sum((Fraction(b.orphan_fees) for b in self._books.values()), Fraction(0))
        return PnL(_decimal(realized), _decimal(unrealized), _decimal(fees))

    # ---- what risk reads -------------------------------------------------------------------

    def open_count(self) -> int:
        """Products held or with an entry order working (each will be one position)."""
        entering = {o.product_id for o in self.open_orders() if o.kind is OrderKind.ENTRY}
        return len(entering | {p for p, _ in self._holdings()})

    def exposure_usd(self) -> Decimal:
        """Notional held (at the mark, else at cost) plus the unfilled rest of working entries."""
        total = ZERO
        for product_id, held in self._holdings():
            mark = self._marks.get(product_id)
            total += _decimal(held.cost) if mark is None else mark * held.size
        for order in self.open_orders():
            if order.kind is OrderKind.ENTRY:
                total += self._unfilled_notional(order)
        return total

    def _unfilled_notional(self, order: Order) -> Decimal:
        if order.quote_size is not None:
            return max(order.quote_size - order.filled_size * order.average_filled_price, ZERO)
        price = order.limit_price or self._marks.get(order.product_id, ZERO)
        return max((order.size or ZERO) - order.filled_size, ZERO) * price

    def snapshot(self) -> dict[str, Any]:
        books = self._books.values()
        counters: dict[str, float] = dict(self.counters)
        counters["sells_without_position"] = sum(b.orphan_sells for b in books)
        counters["oversells"] = sum(b.oversells for b in books)
        counters["open_orders"] = len(self._working)
        counters["positions"] = sum(1 for _ in self._holdings())
        total = self.pnl()
        counters.update(realized_pnl=float(total.realized), unrealized_pnl=float(total.unrealized),
                        fees=float(total.fees), net_pnl=float(total.net))
        products = {p: {"position_size": float(v.size), "entry_price": float(v.average_entry_price),
                        "unrealized_pnl": float(v.unrealized_pnl)}
                    for p, v in self.positions().items()}
        return {"counters": counters, "products": products}


def _closed(product_id: str, held: _Holding) -> ClosedTrade:
    return ClosedTrade(
        product_id, held.strategy, held.bought, held.bought_value / held.bought,
        held.sold_value / held.sold, _decimal(held.realized), held.fees,
        _decimal(held.realized) - held.fees, held.opened_ns, held.updated_ns)


def _decimal(value: Fraction) -> Decimal:
    """An exact rational as a Decimal: the same value always rounds the same way."""
    return Decimal(value.numerator) / Decimal(value.denominator)
