"""The trading core: signals and prices into order intents, order events into the registry.

Synchronous and free of I/O, so every execution mode (and the backtest) shares it: the
execution only sends, cancels and reports. Entries are maker-first, post-only limit buys at
the best bid; a limit order still resting after `execution.limit_timeout_s` is cancelled and
repriced at the new touch, at most `execution.max_reprices` times, then the fallback takes
the rest (a market IOC order, or nothing). Protective exits (stop-loss, trailing stop, the
kill switch's flattening) go out as market IOC orders at once.

Client order ids are uuid5 of (strategy/kind, product, bar time, attempt): the kind keeps an
entry and an exit decided on the same bar apart, and a reprice is the next attempt.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from trader import money
from trader.clock import Clock, wall_ns
from trader.config import ExecutionConfig, RiskConfig
from trader.ports import Execution
from trader.trading.registry import Registry, client_order_id
from trader.trading.risk import RiskManager
from trader.types import (
    Action,
    Fill,
    Order,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Product,
    Quote,
    Side,
    Signal,
    TimeInForce,
    TradingState,
)

log = logging.getLogger(__name__)

URGENT_EXITS = ("stop-loss", "trailing stop", "kill switch")  # reasons that exit at market
OrderSink = Callable[[Order], None]
FillSink = Callable[[Fill], None]


@dataclass(slots=True)
class Working:
    """An order this core placed and still follows, for repricing and fallback."""

    intent: OrderIntent
    sent_ns: int
    repricing: bool = False  # a cancel was asked so the rest can go out at a new price
    fallback: bool = False  # the rest goes out at market once the cancel is confirmed


class Trading:
    """Owns the order flow between the strategies and an execution."""

    name = "trading"

    def __init__(self, registry: Registry, risk: RiskManager, execution: Execution,
                 section: ExecutionConfig, quotes: Mapping[str, Quote], clock: Clock = wall_ns,
                 *, flatten_on_kill: bool = False, order_sinks: Sequence[OrderSink] = (),
                 fill_sinks: Sequence[FillSink] = ()) -> None:
        self.registry = registry
        self.risk = risk
        self.execution = execution
        self.section = section
        self.quotes = quotes  # read-only: the engine's quote book
        self.clock = clock
        self.flatten_on_kill = flatten_on_kill
        self.order_sinks = tuple(order_sinks)  # every change of an order
        self.fill_sinks = tuple(fill_sinks)  # every new fill
        self._products: dict[str, Product] = {}
        self.products: Mapping[str, Product] = MappingProxyType(self._products)
        self.working: dict[str, Working] = {}
        self.counters = collections.Counter[str]()
        self.last_refusal: dict[str, str] = {}  # product -> why its last intent was refused
        self._risk_seen = (risk.state, risk.reason)

    # ---- decisions -------------------------------------------------------------------------

    def on_signals(self, signals: Iterable[Signal]) -> None:
        """Strategy decisions of one bar close: entries, and exits of what is held."""
        for signal in signals:
            if signal.action is Action.ENTER_LONG:
                self._enter(signal)
            elif signal.action is Action.EXIT and self.registry.position(signal.product_id):
                self._exit(signal.product_id, "strategy exit", signal.bar_time_ns)

    def on_prices(self, closes: dict[str, float], bar_time_ns: int) -> None:
        """Mark what is held at the bar's closes and take the protective exits they call for."""
        now_ns = self.clock()
        for product_id, position in self.registry.positions().items():
            close = closes.get(product_id)
            if close is None or close != close:  # absent or NaN
                continue
            price = money.to_decimal(close)
            self.registry.mark(product_id, price)
            marked = self.registry.position(product_id) or position
            reason = self.risk.exit_reason(marked, price, now_ns, strategy_said_exit=False)
            if reason is not None:
                self._exit(product_id, reason, bar_time_ns)
        self.risk.update()
        self._follow_risk()

    def on_tick(self, now_ns: int) -> None:
        """About once a second: reprice resting limit orders that waited too long."""
        timeout_ns = int(self.section.limit_timeout_s * 1e9)
        for cid, working in list(self.working.items()):
            order = self.registry.order(cid)
            if (order is None or working.repricing or order.status is not OrderStatus.OPEN
                    or working.intent.order_type is not OrderType.LIMIT
                    or now_ns - working.sent_ns < timeout_ns):
                continue
            working.repricing = True
            working.fallback = working.intent.attempt >= self.section.max_reprices
            self.counters["reprices" if not working.fallback else "fallbacks"] += 1
            self.execution.cancel(cid)

    # ---- entries and exits -----------------------------------------------------------------

    def _enter(self, signal: Signal) -> None:
        product = self.products.get(signal.product_id)
        quote = self.quotes.get(signal.product_id)
        if product is None or quote is None or not quote.best_bid:
            return self._refuse(signal.product_id, "no product rules or no quote yet")
        if not self.execution.ready():
            return self._refuse(signal.product_id, "execution is not ready (reconciling)")
        price = money.quantize_price(product, quote.best_bid, Side.BUY)
        stop = money.to_decimal(signal.stop) if signal.stop is not None else None
        notional = self.risk.entry_notional(self._equity(), price, stop)
        prepared = money.prepare_limit(product, Side.BUY, price, notional=notional)
        if isinstance(prepared, str):
            return self._refuse(signal.product_id, prepared)
        assert prepared.size is not None, "a prepared limit order is always sized in base"
        denied = self.risk.check_entry(signal.strategy, signal.product_id,
                                       prepared.size * price)
        self._follow_risk()
        if denied is not None:
            return self._refuse(signal.product_id, denied, log_it=False)  # risk logged it
        target = (money.to_decimal(signal.take_profit) if signal.take_profit is not None
                  else None)
        intent = self._intent(signal.strategy, prepared, OrderKind.ENTRY, signal.bar_time_ns,
                              0, signal.reason or "strategy entry", stop, target)
        self._send(intent)

    def _exit(self, product_id: str, reason: str, bar_time_ns: int) -> None:
        if not self.execution.ready():  # positions are not known until reconciled
            return self._refuse(product_id, f"exit ({reason}) waits: execution is not ready")
        denied = self.risk.check_exit(product_id)
        position = self.registry.position(product_id)
        product = self.products.get(product_id)
        if denied is not None or position is None or product is None:
            if denied is None:
                self._refuse(product_id, "no product rules for the exit")
            return
        urgent = reason.startswith(URGENT_EXITS)
        prepared = self._exit_order(product, position.size, urgent)
        if isinstance(prepared, str):
            return self._refuse(product_id, f"exit ({reason}) refused: {prepared}")
        intent = self._intent(position.strategy, prepared, OrderKind.EXIT, bar_time_ns, 0,
                              reason)
        log.info("exit %s: %s", product_id, reason)
        self._send(intent)

    def _exit_order(self, product: Product, size: Decimal,
                    urgent: bool) -> money.PreparedOrder | str:
        quote = self.quotes.get(product.product_id)
        if urgent or quote is None or not quote.best_ask:
            return money.prepare_market(product, Side.SELL, size=money.quantize_size(
                product, size), reference_price=_mid(quote))
        price = money.quantize_price(product, quote.best_ask, Side.SELL)
        return money.prepare_limit(product, Side.SELL, price, size=size)

    def _intent(self, strategy: str, prepared: money.PreparedOrder, kind: OrderKind,
                bar_time_ns: int, attempt: int, reason: str, stop: Decimal | None = None,
                target: Decimal | None = None) -> OrderIntent:
        market = prepared.order_type == "market"
        return OrderIntent(
            strategy=strategy, product_id=prepared.product_id, side=prepared.side, kind=kind,
            order_type=OrderType.MARKET if market else OrderType.LIMIT,
            size=prepared.size, quote_size=prepared.quote_size,
            limit_price=prepared.limit_price, post_only=prepared.post_only,
            time_in_force=TimeInForce.IOC if market else TimeInForce.GTC,
            bar_time_ns=bar_time_ns, attempt=attempt,
            client_order_id=client_order_id(f"{strategy}/{kind}", prepared.product_id,
                                            bar_time_ns, attempt),
            reason=reason, stop_price=stop, take_profit_price=target)

    def _send(self, intent: OrderIntent) -> None:
        if not self.registry.record_intent(intent):
            return  # already known: a replayed decision
        self._order_changed(intent.client_order_id)
        self.working[intent.client_order_id] = Working(intent, self.clock())
        self.counters[f"intents_{intent.kind}"] += 1
        self.last_refusal.pop(intent.product_id, None)
        self.execution.submit(intent)

    def _refuse(self, product_id: str, reason: str, log_it: bool = True) -> None:
        self.counters["refused"] += 1
        if log_it and self.last_refusal.get(product_id) != reason:
            log.info("no order for %s: %s", product_id, reason)
        self.last_refusal[product_id] = reason

    # ---- order events (from the execution) -------------------------------------------------

    def on_update(self, update: OrderUpdate) -> None:
        if not self.registry.apply_update(update):
            return
        self._order_changed(update.client_order_id or update.order_id)
        if update.status in (OrderStatus.REJECTED, OrderStatus.FAILED):
            self.counters["rejected"] += 1
            self.risk.record_error(f"order {update.status.lower()}")
            self._follow_risk()
            log.warning("order %s %s: %s", update.client_order_id, update.status,
                        update.reject_reason)
        if update.status.is_terminal:
            self._finished(update)

    def on_fill(self, fill: Fill) -> None:
        if self.registry.apply_fill(fill):
            self.counters["fills"] += 1
            for trade in self.registry.take_closed():
                self.risk.record_trade(trade)  # losses in a row start a cooldown
            self._follow_risk()
            for sink in self.fill_sinks:
                sink(fill)

    def _order_changed(self, client_order_id: str) -> None:
        order = self.registry.order(client_order_id)
        if order is not None:
            for sink in self.order_sinks:
                sink(order)

    def on_error(self, kind: str, detail: str) -> None:
        self.counters[f"error_{kind}"] += 1
        self.risk.record_error(kind)
        self._follow_risk()
        log.error("execution error (%s): %s", kind, detail)

    def _finished(self, update: OrderUpdate) -> None:
        working = self.working.pop(update.client_order_id, None)
        if working is None or not working.repricing:
            return
        intent = working.intent
        order = self.registry.order(update.client_order_id)
        remaining = (intent.size or Decimal(0)) - (order.filled_size if order else Decimal(0))
        if remaining <= 0 or update.status is not OrderStatus.CANCELLED:
            return
        if working.fallback and self.section.fallback != "market":
            self.counters["gave_up"] += 1
            log.info("%s %s: gave up after %d reprices", intent.kind, intent.product_id,
                     intent.attempt)
            return
        self._resend(intent, remaining, market=working.fallback)

    def _resend(self, intent: OrderIntent, remaining: Decimal, market: bool) -> None:
        product = self.products[intent.product_id]
        quote = self.quotes.get(intent.product_id)
        if intent.kind is OrderKind.ENTRY:
            state = self.risk.update()
            self._follow_risk()
            if state is not TradingState.ACTIVE:
                return  # no new exposure while halted or reducing
        if market:
            prepared = money.prepare_market(product, intent.side, size=money.quantize_size(
                product, remaining), reference_price=_mid(quote))
        else:
            touch = None if quote is None else (
                quote.best_bid if intent.side is Side.BUY else quote.best_ask)
            if not touch:
                return self._refuse(intent.product_id, "no quote to reprice at")
            price = money.quantize_price(product, touch, intent.side)
            prepared = money.prepare_limit(product, intent.side, price, size=remaining)
        if isinstance(prepared, str):
            return self._refuse(intent.product_id, f"reprice refused: {prepared}")
        again = self._intent(intent.strategy, prepared, intent.kind, intent.bar_time_ns,
                             intent.attempt + 1, intent.reason, intent.stop_price,
                             intent.take_profit_price)
        self._send(again)

    # ---- the kill switch and shutdown ------------------------------------------------------

    def kill(self, reason: str) -> None:
        """The kill switch: halt new entries, cancel every open order (and flatten if asked)."""
        self.risk.kill(reason)
        self._follow_risk()

    def apply_risk(self, section: RiskConfig) -> None:
        """A reloaded `[risk]`: new limits at once (the config kill switch halts here)."""
        self.risk.apply_config(section)
        self._follow_risk()

    def _follow_risk(self) -> None:
        """Act on a change of the trading state, right after a call that may make one."""
        seen = (self.risk.state, self.risk.reason)
        if seen != self._risk_seen:
            self._risk_seen = seen
            self._on_state(*seen)

    def _on_state(self, state: TradingState, reason: str) -> None:
        if state is TradingState.HALTED:
            self.cancel_all()
            if self.flatten_on_kill and reason.startswith("kill switch"):
                for product_id in list(self.registry.positions()):
                    self._exit(product_id, "kill switch: flatten", self.clock())

    def cancel_all(self) -> None:
        """Cancel every order still working (kill switch, shutdown); an order whose create
        answer was lost is looked up by the execution first."""
        for order in self.registry.open_orders():
            self.working.pop(order.client_order_id, None)
            self.execution.cancel(order.client_order_id)
            self.counters["cancels"] += 1

    # ---- restart ---------------------------------------------------------------------------

    def restore_intent(self, intent: OrderIntent) -> None:
        """A journaled intent after a restart (after its first update): adopted, and a working
        order is followed for repricing again."""
        self.registry.record_intent(intent)
        order = self.registry.order(intent.client_order_id)
        if order is not None and not order.status.is_terminal:
            self.working.setdefault(intent.client_order_id, Working(intent, self.clock()))

    def is_open_position(self, product_id: str) -> bool:
        return self.registry.position(product_id) is not None

    # ---- configuration and status ----------------------------------------------------------

    def apply(self, section: ExecutionConfig) -> None:
        """A reloaded `[execution]`: timeouts and reprices apply to the next decisions."""
        self.section = section

    def set_products(self, products: Iterable[Product]) -> None:
        """New order rules from the catalog (in place: `products` is a view executions hold)."""
        fresh = {p.product_id: p for p in products}
        self._products.clear()
        self._products.update(fresh)

    def _equity(self) -> Decimal:
        equity = self.execution.equity_usd()
        return equity if equity is not None else Decimal(0)

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.registry.snapshot()
        equity = self.execution.equity_usd()
        snapshot.update(
            mode=self.execution.name, ready=self.execution.ready(),
            state=str(self.risk.state), reason=self.risk.reason,
            equity_usd=float(equity) if equity is not None else None)
        snapshot["counters"].update(self.counters, working=len(self.working))
        for product_id, reason in self.last_refusal.items():
            snapshot["products"].setdefault(product_id, {})["refused"] = reason[:40]
        snapshot["orders"] = [  # the working ones only: a bounded list
            {"client_order_id": o.client_order_id, "order_id": o.order_id,
             "product_id": o.product_id, "side": str(o.side), "kind": str(o.kind),
             "status": str(o.status)} for o in self.registry.open_orders()]
        return snapshot


def _mid(quote: Quote | None) -> Decimal | None:
    if quote is None:
        return None
    if quote.best_bid and quote.best_ask:
        return money.to_decimal((quote.best_bid + quote.best_ask) / 2)
    return money.to_decimal(quote.price) if quote.price else None
