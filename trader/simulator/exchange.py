"""The simulator's exchange: our orders, matched against the replayed tape, with fills and balances.

Synchronous and free of I/O; the REST handlers and the user channel drive it and listen to it.
Matching is deliberately simple and documented here once:
- A resting limit buy fills when a replayed trade prints at or below its price (a sell: at or
  above), at the limit price, as maker, for at most the trade's size; orders share a print in
  price then time priority. Only prints later than the order's creation count.
- A market order, or a limit that is marketable on arrival, takes at once at the touch (the best
  ask for a buy, the best bid for a sell) as taker, in full: the book has no depth model. The
  touch is one price increment either side of the last replayed price, as in the ticker.
- An order is admitted (checked, PENDING with its hold, off the book), then activated at the
  touch of that moment; `submit` does both at once. The API keeps an order whose answer was
  lost PENDING for a while (order_faults.py), out of every list.
- Holds: a buy holds `size * limit * (1 + taker fee)` of quote, a sell holds its base size; fees
  are charged in quote per fill; a market buy by `quote_size` spends at most `quote_size`,
  fees included, its base truncated to the base increment.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from trader.simulator.order_request import OrderRequest, ProductRules, Rejection, check_amounts

ZERO = Decimal(0)
BPS = Decimal(10_000)
OPEN_STATUSES = ("PENDING", "OPEN", "CANCEL_QUEUED")


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def exact(value: float) -> Decimal:
    """A replayed float as the decimal the wire shows for it (shortest round trip)."""
    return Decimal(repr(float(value)))


# parse_order guarantees these by configuration: a limit order has base_size and limit_price;
# a market order has exactly one of base_size and quote_size.
def _limit_price(request: OrderRequest) -> Decimal:
    assert request.limit_price is not None, "only limit orders rest or reach here"
    return request.limit_price


def _base_size(request: OrderRequest) -> Decimal:
    assert request.base_size is not None, "a buy with no quote_size is sized in base"
    return request.base_size


def _quote_size(request: OrderRequest) -> Decimal:
    assert request.quote_size is not None, "an order with no base_size is sized in quote"
    return request.quote_size


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """Starting balances (currency -> amount) and fee rates in basis points."""

    balances: Mapping[str, Decimal | str] = field(default_factory=lambda: {"USD": "10000"})
    maker_fee_bps: Decimal = Decimal(50)
    taker_fee_bps: Decimal = Decimal(90)
    seed: int = 0  # order, fill and account ids


@dataclass(eq=False, slots=True)
class Order:
    """One order as the exchange keeps it; cumulative fields only grow."""

    order_id: str
    request: OrderRequest
    created_ns: int
    status: str = "OPEN"
    filled_size: Decimal = ZERO
    filled_value: Decimal = ZERO
    total_fees: Decimal = ZERO
    number_of_fills: int = 0
    hold: Decimal = ZERO  # outstanding, in quote (buy) or base (sell)
    last_fill_ns: int | None = None
    cancel_message: str = ""

    @property
    def leaves(self) -> Decimal:
        size = self.request.base_size
        return ZERO if size is None or not self.is_open else size - self.filled_size

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class Fill:
    entry_id: str
    trade_id: str
    order_id: str
    product_id: str
    side: str
    price: Decimal
    size: Decimal
    commission: Decimal
    liquidity: str  # MAKER | TAKER
    time_ns: int


@dataclass(slots=True)
class Account:
    uuid: str
    currency: str
    balance: Decimal  # total: available + hold
    hold: Decimal = ZERO

    @property
    def available(self) -> Decimal:
        return self.balance - self.hold


class Exchange:
    """Owns orders, fills and accounts; `listen` to hear of every order change."""

    def __init__(self, rules: Iterable[ProductRules], config: ExchangeConfig,
                 prices: Mapping[str, float], clock: Callable[[], int]) -> None:
        self.rules = {r.product_id: r for r in rules}
        self.config = config
        self.orders: dict[str, Order] = {}  # by order id, oldest first
        self.fills: list[Fill] = []  # oldest first
        self._by_client: dict[str, Order] = {}
        self._resting: dict[str, list[Order]] = {p: [] for p in self.rules}
        self._last = dict(prices)
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._listeners: list[Callable[[Order], None]] = []
        self._maker = config.maker_fee_bps / BPS
        self._taker = config.taker_fee_bps / BPS
        currencies = {c for r in self.rules.values() for c in (r.base, r.quote)}
        currencies |= set(config.balances)
        self.accounts = {c: Account(self._id(), c, Decimal(config.balances.get(c, ZERO)))
                         for c in sorted(currencies)}

    def listen(self, listener: Callable[[Order], None]) -> None:
        self._listeners.append(listener)

    def touch(self, product_id: str) -> tuple[Decimal, Decimal]:
        """(best bid, best ask): one price increment either side of the last replayed price."""
        tick = self.rules[product_id].price_increment
        last = exact(self._last[product_id])
        return floor_to(last - tick, tick), ceil_to(last + tick, tick)

    def open_orders(self) -> list[Order]:
        """Orders on the book (an admitted order not yet activated is not)."""
        return [o for o in self.orders.values() if o.is_open and o.status != "PENDING"]

    # ---- orders in --------------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> tuple[Order, bool]:
        """The order for `request` and whether it is new; a repeated client id creates nothing.

        Raises Rejection when the exchange's rules refuse the order.
        """
        existing = self.by_client(request.client_order_id)
        if existing is not None:
            return existing, False
        order = self.admit(request)
        self.activate(order)
        return order, True

    def by_client(self, client_order_id: str) -> Order | None:
        """The order that holds `client_order_id`, if any does."""
        return self._by_client.get(client_order_id)

    def admit(self, request: OrderRequest) -> Order:
        """A new order for `request`, PENDING with its hold: not on the book until `activate`.
        It takes the client order id over from any order that held it before.

        Raises Rejection when the exchange's rules refuse the order.
        """
        rules = self.rules.get(request.product_id)
        if rules is None:
            raise Rejection("INVALID_PRODUCT_ID", "Invalid product_id")
        bid, ask = self.touch(request.product_id)
        check_amounts(request, rules, exact(self._last[request.product_id]))
        if request.post_only and self._marketable(request, bid, ask):
            raise Rejection("INVALID_LIMIT_PRICE_POST_ONLY",
                            "Invalid limit price for post-only order")
        account, needed = self._hold_for(request, rules, bid, ask)
        if account.available < needed:
            raise Rejection("INSUFFICIENT_FUND", "Insufficient balance in source account")
        order = Order(self._id(), request, self._clock(), status="PENDING")
        self.orders[order.order_id] = order
        self._by_client[request.client_order_id] = order
        self._set_hold(order, needed)
        return order

    def activate(self, order: Order) -> None:
        """Put an admitted order to work at the touch of now: take what is marketable, rest a
        GTC limit, end an IOC's rest. A post-only order that would take by now is cancelled."""
        if order.status != "PENDING":
            return
        request, rules = order.request, self.rules[order.request.product_id]
        bid, ask = self.touch(request.product_id)
        marketable = self._marketable(request, bid, ask)
        order.status = "OPEN"
        if request.post_only and marketable:  # it was not when admitted: the price moved
            order.cancel_message = "Post-only order would take liquidity"
        elif marketable:
            self._take(order, rules, bid, ask)
        if order.is_open and request.kind == "limit_limit_gtc" and not order.cancel_message:
            self._resting[request.product_id].append(order)
        elif order.is_open:
            order.status = "CANCELLED"  # IOC: the rest is not kept
            self._set_hold(order, ZERO)
        self._notify(order)

    def cancel(self, order_id: str) -> str | None:
        """None when the order is cancelled, else Coinbase's cancel failure reason."""
        order = self.orders.get(order_id)
        if order is None or order.status == "PENDING":  # not on the book (yet)
            return "UNKNOWN_CANCEL_ORDER"
        if order.status == "FILLED":
            return "ORDER_IS_FULLY_FILLED"
        if not order.is_open:
            return "DUPLICATE_CANCEL_REQUEST"
        order.status = "CANCEL_QUEUED"
        self._notify(order)
        order.status = "CANCELLED"
        order.cancel_message = "User requested cancel"
        self._set_hold(order, ZERO)
        self._resting[order.request.product_id].remove(order)
        self._notify(order)
        return None

    def _marketable(self, request: OrderRequest, bid: Decimal, ask: Decimal) -> bool:
        if request.limit_price is None:
            return True
        if request.side == "BUY":
            return request.limit_price >= ask
        return request.limit_price <= bid

    def _hold_for(self, request: OrderRequest, rules: ProductRules, bid: Decimal,
                  ask: Decimal) -> tuple[Account, Decimal]:
        if request.side == "SELL":
            size = request.base_size
            if size is None:  # a market sell by quote size
                size = floor_to(_quote_size(request) / bid, rules.base_increment)
            return self.accounts[rules.base], size
        if request.quote_size is not None:
            return self.accounts[rules.quote], request.quote_size
        price = request.limit_price if request.limit_price is not None else ask
        return self.accounts[rules.quote], _base_size(request) * price * (1 + self._taker)

    def _take(self, order: Order, rules: ProductRules, bid: Decimal, ask: Decimal) -> None:
        request = order.request
        price = ask if request.side == "BUY" else bid
        size = request.base_size
        if size is None and request.side == "BUY":
            size = floor_to(_quote_size(request) / (price * (1 + self._taker)),
                            rules.base_increment)
        elif size is None:
            size = floor_to(_quote_size(request) / price, rules.base_increment)
        if size > 0:
            self._fill(order, price, size, "TAKER", self._clock())
        if order.is_open and request.base_size is None:
            order.status = "FILLED"  # sized in quote: done once its one fill is in
            self._set_hold(order, ZERO)

    # ---- the tape ---------------------------------------------------------------------------

    def on_trades(self, product_id: str, times_ns: np.ndarray, prices: np.ndarray,
                  sizes: np.ndarray) -> None:
        """Replayed prints of one product, oldest first: fill the resting orders they cross.

        Columns of a tape: int64 nanosecond times, float64 prices and sizes.
        """
        if len(prices):
            self._last[product_id] = float(prices[-1])
        resting = self._resting.get(product_id)
        if not resting:
            return
        for time_ns, price, size in zip(times_ns, prices, sizes, strict=True):
            self._match(product_id, int(time_ns), exact(price), exact(size))

    def _match(self, product_id: str, time_ns: int, price: Decimal, size: Decimal) -> None:
        rules = self.rules[product_id]
        crossed = [o for o in self._resting[product_id] if o.created_ns < time_ns and (
            price <= _limit_price(o.request) if o.request.side == "BUY"
            else price >= _limit_price(o.request))]
        crossed.sort(key=lambda o: (-_limit_price(o.request) if o.request.side == "BUY"
                                    else _limit_price(o.request), o.created_ns))
        remaining = floor_to(size, rules.base_increment)
        for order in crossed:
            if remaining <= 0:
                return
            quantity = min(order.leaves, remaining)
            remaining -= quantity
            self._fill(order, _limit_price(order.request), quantity, "MAKER", time_ns)
            if not order.is_open:
                self._resting[product_id].remove(order)
            self._notify(order)

    def _fill(self, order: Order, price: Decimal, size: Decimal, liquidity: str,
              time_ns: int) -> None:
        request, rules = order.request, self.rules[order.request.product_id]
        value = price * size
        fee = value * (self._maker if liquidity == "MAKER" else self._taker)
        base, quote = self.accounts[rules.base], self.accounts[rules.quote]
        if request.side == "BUY":
            base.balance += size
            quote.balance -= value + fee
        else:
            base.balance -= size
            quote.balance += value - fee
        order.filled_size += size
        order.filled_value += value
        order.total_fees += fee
        order.number_of_fills += 1
        order.last_fill_ns = time_ns
        if request.base_size is not None and order.filled_size >= request.base_size:
            order.status = "FILLED"
        self._set_hold(order, self._remaining_hold(order))
        self.fills.append(Fill(self._id(), self._id(), order.order_id, request.product_id,
                               request.side, price, size, fee, liquidity, time_ns))

    def _remaining_hold(self, order: Order) -> Decimal:
        price = order.request.limit_price
        if not order.is_open or order.request.side == "SELL":
            return order.leaves
        if price is None:
            return ZERO  # a market buy: it ends within submit
        return order.leaves * price * (1 + self._taker)

    def _set_hold(self, order: Order, amount: Decimal) -> None:
        rules = self.rules[order.request.product_id]
        currency = rules.quote if order.request.side == "BUY" else rules.base
        self.accounts[currency].hold += amount - order.hold
        order.hold = amount

    def _notify(self, order: Order) -> None:
        for listener in self._listeners:
            listener(order)

    def _id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
