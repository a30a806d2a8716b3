"""Paper execution: the daemon's orders filled against the live trade stream, nothing sent.

A resting limit order fills when a public trade prints through its price (strictly below a
buy, above a sell), at its price, up to that trade's size, as a maker. A market order, or a
limit order that crosses on arrival (IOC), fills at once at the touch plus
`paper.slippage_bps`, as a taker. A post-only order that would cross is rejected, as
Coinbase does. Fees are charged in the quote currency; balances and holds are kept per
currency, starting with `paper.starting_balance_usd` of USD.

Events reach the trading core on the next loop iteration, never inside `submit`, as they
would from an exchange.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from trader import money
from trader.clock import Clock, wall_ns
from trader.config import PaperConfig
from trader.ports import TradingEvents
from trader.types import (
    Fill,
    Liquidity,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Product,
    Quote,
    Side,
    TimeInForce,
    Trade,
)

ZERO = Decimal(0)
_BPS = Decimal(10_000)
Defer = Callable[[Callable[[], None]], Any]


@dataclass(slots=True)
class PaperOrder:
    intent: OrderIntent
    order_id: str
    status: OrderStatus = OrderStatus.OPEN
    filled: Decimal = ZERO
    value: Decimal = ZERO  # sum of price * size over fills
    fees: Decimal = ZERO
    hold: Decimal = ZERO  # what this order still holds (quote for buys, base for sells)

    @property
    def remaining(self) -> Decimal:
        return (self.intent.size or ZERO) - self.filled


class PaperExecution:
    """The execution port against a simulated account (see the module docstring)."""

    name = "paper"

    def __init__(self, section: PaperConfig, quotes: Mapping[str, Quote],
                 clock: Clock = wall_ns, defer: Defer | None = None) -> None:
        self.section = section
        self.quotes = quotes  # read-only: the engine's quote book
        self._events: TradingEvents | None = None
        self.products: Mapping[str, Product] = {}
        self.clock = clock
        self._defer = defer
        self.balances: dict[str, Decimal] = collections.defaultdict(Decimal)
        self.balances["USD"] = money.to_decimal(section.starting_balance_usd)
        self.holds: dict[str, Decimal] = collections.defaultdict(Decimal)
        self.orders: dict[str, PaperOrder] = {}
        self.resting: dict[str, dict[str, PaperOrder]] = collections.defaultdict(dict)
        self.last_price: dict[str, float] = {}
        self.watched: set[str] = set()  # products held or with a resting order
        self.counters = collections.Counter[str]()
        self._ids = itertools.count(1)

    def bind(self, events: TradingEvents) -> None:
        """Report to the trading core built from this execution, and use its order rules."""
        if self._events is not None:
            raise RuntimeError(f"{self.name} execution is bound already")
        self._events = events
        self.products = events.products

    @property
    def events(self) -> TradingEvents:
        if self._events is None:
            raise RuntimeError(f"{self.name} execution used before `bind`")
        return self._events

    # ---- the port --------------------------------------------------------------------------

    def submit(self, intent: OrderIntent) -> None:
        self._later(lambda: self._accept(intent))

    def cancel(self, client_order_id: str) -> None:
        self._later(lambda: self._cancel(client_order_id))

    def ready(self) -> bool:
        return True

    def equity_usd(self) -> Decimal:
        """USD cash (held or not) plus every other balance at its last trade price."""
        equity = self.balances["USD"]
        for currency, amount in self.balances.items():
            if currency != "USD" and amount:
                price = self.last_price.get(f"{currency}-USD")
                equity += amount * money.to_decimal(price) if price is not None else ZERO
        return equity

    def apply(self, section: PaperConfig) -> None:
        """A reloaded `[paper]` (the starting balance counts at the next start only)."""
        self.section = section

    # ---- market data -----------------------------------------------------------------------

    def on_trades(self, trades: Iterable[Trade]) -> None:
        for t in trades:
            self.on_trade_columns((t.product_id,), (t.time_ns,), (t.price,), (t.size,))

    def on_trade_columns(self, product_ids: Sequence[str], times_ns: Sequence[int],
                         prices: Sequence[float], sizes: Sequence[float]) -> None:
        """One frame's trades; only products held or with a resting order cost any work."""
        watched = self.watched
        if not watched:
            return
        for i, product_id in enumerate(product_ids):
            if product_id in watched:
                self.last_price[product_id] = prices[i]
                resting = self.resting.get(product_id)
                if resting:
                    self._match(list(resting.values()), money.to_decimal(prices[i]),
                                money.to_decimal(sizes[i]), times_ns[i])

    def _match(self, resting: list[PaperOrder], price: Decimal, size: Decimal,
               time_ns: int) -> None:
        for order in resting:
            limit = order.intent.limit_price
            assert limit is not None, "only limit orders rest"
            through = price < limit if order.intent.side is Side.BUY else price > limit
            if through and size > 0:
                take = min(size, order.remaining)
                size -= take
                self._fill(order, limit, take, Liquidity.MAKER, time_ns)

    # ---- order handling --------------------------------------------------------------------

    def _accept(self, intent: OrderIntent) -> None:
        if intent.client_order_id in self.orders:
            return  # Coinbase returns the existing order for a repeated client order id
        product = self.products.get(intent.product_id)
        quote = self.quotes.get(intent.product_id)
        order = PaperOrder(intent, f"paper-{next(self._ids)}")
        reason = self._refusal(intent, product, quote)
        if reason:
            self.counters["rejected"] += 1
            return self._report(order, OrderStatus.REJECTED, reason)
        assert product is not None, "_refusal refuses an unknown product"
        self.orders[intent.client_order_id] = order
        self.counters["accepted"] += 1
        if intent.order_type is OrderType.MARKET or self._crosses(intent, quote):
            return self._take(order, product, quote)
        if intent.time_in_force is TimeInForce.IOC:  # nothing to take now: cancelled at once
            return self._report(order, OrderStatus.CANCELLED)
        self._hold(order)
        self.resting[intent.product_id][intent.client_order_id] = order
        self.watched.add(intent.product_id)
        self._report(order, OrderStatus.OPEN)

    def _refusal(self, intent: OrderIntent, product: Product | None,
                 quote: Quote | None) -> str:
        if product is None:
            return "INVALID_PRODUCT_ID"
        if intent.order_type is OrderType.MARKET and _touch(quote, intent.side) is None:
            return "INVALID_NO_LIQUIDITY"
        if intent.post_only and self._crosses(intent, quote):
            return "INVALID_LIMIT_PRICE_POST_ONLY"
        if self._needed(intent, quote) > self._available(product, intent.side):
            return "INSUFFICIENT_FUND"
        return ""

    def _take(self, order: PaperOrder, product: Product, quote: Quote | None) -> None:
        """Fill what the touch allows now (a market or crossing IOC order), cancel the rest."""
        intent = order.intent
        price = self._taker_price(intent, quote)
        if intent.size is None:  # a market buy by quote size: fees come out of it
            assert intent.quote_size is not None, "an intent has size or quote_size"
            spend = intent.quote_size / (1 + self._fee_rate(Liquidity.TAKER))
            size = money.floor_to(spend / price, product.base_increment)
            order.intent = _sized(intent, size)
        if order.remaining > 0:
            self._fill(order, price, order.remaining, Liquidity.TAKER, self.clock())
        else:
            self._report(order, OrderStatus.CANCELLED, "size under one base increment")

    def _taker_price(self, intent: OrderIntent, quote: Quote | None) -> Decimal:
        touch = _touch(quote, intent.side)
        assert touch is not None, "taken only with a touch: a market order without one is refused"
        slip = money.to_decimal(self.section.slippage_bps) / _BPS
        price = touch * (1 + slip) if intent.side is Side.BUY else touch * (1 - slip)
        if intent.limit_price is not None:  # an IOC limit never fills past its limit
            price = (min(price, intent.limit_price) if intent.side is Side.BUY
                     else max(price, intent.limit_price))
        return price

    def _fill(self, order: PaperOrder, price: Decimal, size: Decimal, liquidity: Liquidity,
              time_ns: int) -> None:
        intent = order.intent
        base, quote_ccy = intent.product_id.split("-", 1)
        value = price * size
        fee = value * self._fee_rate(liquidity)
        self._release(order, size)
        if intent.side is Side.BUY:
            self.balances[quote_ccy] -= value + fee
            self.balances[base] += size
        else:
            self.balances[base] -= size
            self.balances[quote_ccy] += value - fee
        order.filled += size
        order.value += value
        order.fees += fee
        self.counters["fills"] += 1
        fill = Fill(f"paper-fill-{next(self._ids)}", order.order_id, intent.client_order_id,
                    intent.product_id, intent.side, price, size, fee, liquidity, time_ns)
        done = order.remaining <= 0 or intent.time_in_force is TimeInForce.IOC
        if done:
            self.resting[intent.product_id].pop(intent.client_order_id, None)
            self._release(order, order.remaining)
        status = (OrderStatus.FILLED if order.remaining <= 0 else
                  OrderStatus.CANCELLED if done else OrderStatus.OPEN)
        self._watch(intent.product_id, base)
        self._later(lambda: self.events.on_fill(fill))
        self._report(order, status, time_ns=time_ns)

    def _cancel(self, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            return
        self.resting[order.intent.product_id].pop(client_order_id, None)
        self._release(order, order.remaining)
        self._watch(order.intent.product_id, order.intent.product_id.split("-", 1)[0])
        self._report(order, OrderStatus.CANCELLED)

    # ---- balances --------------------------------------------------------------------------

    def _watch(self, product_id: str, base: str) -> None:
        if self.balances[base] > 0 or self.resting.get(product_id):
            self.watched.add(product_id)
        else:
            self.watched.discard(product_id)

    def _needed(self, intent: OrderIntent, quote: Quote | None) -> Decimal:
        if intent.side is Side.SELL:
            return intent.size or ZERO
        if intent.size is None:
            return intent.quote_size or ZERO
        price = intent.limit_price or _touch(quote, Side.BUY) or ZERO
        return intent.size * price * (1 + self._fee_rate(Liquidity.TAKER))

    def _available(self, product: Product, side: Side) -> Decimal:
        currency = product.base_currency if side is Side.SELL else product.quote_currency
        return self.balances[currency] - self.holds[currency]

    def _hold(self, order: PaperOrder, quote: Quote | None = None) -> None:
        """Hold what the order needs (a market order: at the `quote`'s touch)."""
        intent = order.intent
        order.hold = self._needed(intent, quote)
        self.holds[_held_currency(intent)] += order.hold

    def _release(self, order: PaperOrder, size: Decimal) -> None:
        """Free the hold of `size` of the order (all of it once nothing remains)."""
        if not order.hold:
            return
        remaining = order.remaining
        part = order.hold if size >= remaining else order.hold * size / remaining
        order.hold -= part
        self.holds[_held_currency(order.intent)] -= part

    def _fee_rate(self, liquidity: Liquidity) -> Decimal:
        bps = (self.section.maker_fee_bps if liquidity is Liquidity.MAKER
               else self.section.taker_fee_bps)
        return money.to_decimal(bps) / _BPS

    @staticmethod
    def _crosses(intent: OrderIntent, quote: Quote | None) -> bool:
        touch = _touch(quote, intent.side)
        if touch is None or intent.limit_price is None:
            return False
        return intent.limit_price >= touch if intent.side is Side.BUY else (
            intent.limit_price <= touch)

    # ---- reporting -------------------------------------------------------------------------

    def _report(self, order: PaperOrder, status: OrderStatus, reason: str = "",
                time_ns: int | None = None) -> None:
        order.status = status
        average = order.value / order.filled if order.filled else ZERO
        update = OrderUpdate(order.intent.client_order_id, order.order_id,
                             order.intent.product_id, order.intent.side, status, order.filled,
                             average, order.fees, time_ns or self.clock(), reason)
        self._later(lambda: self.events.on_update(update))

    def _later(self, call: Callable[[], None]) -> None:
        defer = self._defer or asyncio.get_running_loop().call_soon
        defer(call)

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(self.counters),
                "balances": {c: float(v) for c, v in self.balances.items() if v},
                "holds": {c: float(v) for c, v in self.holds.items() if v}}


def _touch(quote: Quote | None, side: Side) -> Decimal | None:
    """The price a taker of `side` meets: the best ask for a buy, the best bid for a sell."""
    if quote is None:
        return None
    value = quote.best_ask if side is Side.BUY else quote.best_bid
    if not value:
        value = quote.price or None
    return money.to_decimal(value) if value else None


def _held_currency(intent: OrderIntent) -> str:
    base, quote = intent.product_id.split("-", 1)
    return quote if intent.side is Side.BUY else base


def _sized(intent: OrderIntent, size: Decimal) -> OrderIntent:
    return replace(intent, size=size, quote_size=None)
