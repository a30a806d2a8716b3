"""What the status view shows beyond the components' counters: the recent events (orders,
fills, signals, risk denials, reloads, reconnects, warnings) in a bounded ring, the session's
equity as a bounded series, and the open positions and orders in detail.

Orders, fills and signals come from the sinks the trading core and the signal book already
have; the rest from a logging handler on the `trader` loggers, so that every line an operator
would look for in the log (a denial, a reload, a reconnect) lands here without each component
knowing about the view (so `log.level = "warning"` leaves denials, reloads and reconnects
out of it too). Times are the daemon's wall clock (unix ns).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from trader.clock import Clock, wall_ns
from trader.trading.orders import Trading
from trader.types import Action, Fill, Order, OrderStatus, Position, Side, Signal

EVENTS_KEPT = 200
EQUITY_POINTS = 400  # a sparkline 200 columns wide shows at most half of them
EQUITY_MIN_GAP_NS = 1_000_000_000  # bars replayed at start-up collapse into one point
_HUNDRED = Decimal(100)
_FINISHED = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED,
             OrderStatus.FAILED, OrderStatus.REJECTED}
# INFO lines of these loggers are events; WARNING and above of any `trader` logger are too.
_LOGGER_KINDS = {"trader.trading.risk": "risk", "trader.daemon.reload": "reload",
                 "trader.coinbase.reconnect": "feed", "trader.coinbase.user_feed": "feed",
                 "trader.trading.orders": "trading", "trader.daemon.app": "daemon"}


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the recent-events panel."""

    time_ns: int
    kind: str  # order | fill | signal | risk | reload | feed | trading | daemon | warning | error
    text: str
    product_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"time_ns": self.time_ns, "kind": self.kind, "product_id": self.product_id,
                "text": self.text}


class EventLog:
    """The last `capacity` events, oldest first; fed by sinks and by `handler()`."""

    def __init__(self, clock: Clock = wall_ns, capacity: int = EVENTS_KEPT) -> None:
        self.clock = clock
        self.events: collections.deque[Event] = collections.deque(maxlen=capacity)
        self._order_status: dict[str, OrderStatus] = {}  # of working orders: one event a change
        self.held_since_ns: dict[str, int] = {}  # wall time of each position's opening fill

    def add(self, kind: str, text: str, product_id: str = "") -> None:
        self.events.append(Event(self.clock(), kind, text, product_id))

    def on_order(self, order: Order) -> None:
        """An order sink: one event per change of status (fills have their own events)."""
        if self._order_status.get(order.client_order_id) == order.status:
            return
        if order.status is OrderStatus.PENDING:  # an "open" or a refusal follows at once
            self._order_status[order.client_order_id] = order.status
            return
        if order.status in _FINISHED:
            self._order_status.pop(order.client_order_id, None)
        else:
            self._order_status[order.client_order_id] = order.status
        size = order.size if order.size is not None else order.quote_size
        price = f" @ {_plain(order.limit_price)}" if order.limit_price is not None else " market"
        why = f" ({order.reject_reason})" if order.reject_reason else ""
        self.add("order", f"{order.side.lower()} {order.kind} {_plain(size)}{price} "
                 f"{order.status.lower()}{why}", order.product_id)

    def on_fill(self, fill: Fill) -> None:
        """A fill sink."""
        if fill.side is Side.BUY:
            self.held_since_ns.setdefault(fill.product_id, self.clock())
        self.add("fill", f"{fill.side.lower()} {_plain(fill.size)} @ {_plain(fill.price)} "
                 f"fee {fill.fee:.2f} {fill.liquidity.lower()}", fill.product_id)

    def on_signal(self, signal: Signal) -> None:
        """A signal sink; holds are not events."""
        if signal.action is Action.HOLD:
            return
        reason = f": {signal.reason}" if signal.reason else ""
        self.add("signal", f"{signal.strategy} {signal.action} {signal.score:+.2f}{reason}",
                 signal.product_id)

    def handler(self) -> logging.Handler:
        """A logging handler that records the lines that matter (install it on `trader`)."""
        return _EventHandler(self)

    def snapshot(self) -> list[dict[str, Any]]:
        return [event.as_dict() for event in self.events]


class _EventHandler(logging.Handler):
    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        kind = _LOGGER_KINDS.get(record.name)
        if kind is None and record.levelno < logging.WARNING:
            return
        if record.levelno >= logging.ERROR:
            kind = "error"
        elif kind is None:
            kind = "warning"
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a malformed log call must not break the daemon
            self.handleError(record)
            return
        self.log.add(kind, text)


class EquityCurve:
    """The account's equity at each 1-minute close over the whole session, in at most
    `capacity` points: when full, every other point goes and new ones come half as often."""

    def __init__(self, equity: Callable[[], Decimal | None], clock: Clock = wall_ns,
                 capacity: int = EQUITY_POINTS) -> None:
        self.equity = equity
        self.clock = clock
        self.capacity = capacity
        self.points: list[tuple[int, float]] = []  # (wall time ns, equity)
        self._gap_ns = EQUITY_MIN_GAP_NS

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        """A bar sink: sample at every 1-minute close."""
        value = self.equity()
        if interval_s == 60 and value is not None:
            self.sample(float(value))

    def sample(self, value: float) -> None:
        now_ns = self.clock()
        if self.points and now_ns - self.points[-1][0] < self._gap_ns:
            self.points[-1] = (self.points[-1][0], value)  # the newest shows the latest
            return
        self.points.append((now_ns, value))
        if len(self.points) > self.capacity:
            self.points = self.points[::2] if len(self.points) % 2 else self.points[1::2]
            span_ns = self.points[-1][0] - self.points[0][0]
            self._gap_ns = max(self._gap_ns, span_ns // max(1, len(self.points) - 1))

    def snapshot(self) -> dict[str, Any]:
        return {"times_ns": [t for t, _ in self.points],
                "equity_usd": [round(v, 2) for _, v in self.points]}


def trading_detail(trading: Trading, events: EventLog, now_ns: int) -> dict[str, Any]:
    """Open positions and working orders in full, and each product's price increment."""
    held = trading.registry.positions()
    for product_id in list(events.held_since_ns):
        if product_id not in held:
            del events.held_since_ns[product_id]
    positions = [_position(p, trading, events.held_since_ns.get(p.product_id), now_ns)
                 for p in held.values()]
    sent = {cid: working.sent_ns for cid, working in trading.working.items()}
    orders = [_order(o, sent.get(o.client_order_id), now_ns)
              for o in trading.registry.open_orders()]
    increments = {p: str(product.price_increment) for p, product in trading.products.items()}
    return {"positions": positions, "open_orders": orders, "price_increments": increments}


def _position(position: Position, trading: Trading, held_since_ns: int | None,
              now_ns: int) -> dict[str, Any]:
    limits = trading.risk.limits
    entry = position.average_entry_price
    stop = position.stop_price
    if stop is None and limits.stop_loss_pct:  # risk's rule: the configured percentage
        stop = entry * (1 - limits.stop_loss_pct / _HUNDRED)
    target = position.take_profit_price
    if target is None and limits.take_profit_pct:
        target = entry * (1 + limits.take_profit_pct / _HUNDRED)
    # paper fills may carry the simulated exchange's time: the daemon's own clock when it saw
    # the opening fill, else the registry's
    opened_ns = held_since_ns if held_since_ns is not None else position.opened_ns
    return {"product_id": position.product_id, "strategy": position.strategy,
            "size": float(position.size), "entry_price": float(entry),
            "last_price": _float(position.mark_price),
            "unrealized_pnl": float(position.unrealized_pnl), "cost_usd": float(position.cost),
            "stop_price": _float(stop), "take_profit_price": _float(target),
            "age_s": max(0.0, (now_ns - opened_ns) / 1e9)}


def _order(order: Order, sent_ns: int | None, now_ns: int) -> dict[str, Any]:
    since_ns = sent_ns if sent_ns is not None else order.updated_ns
    return {"client_order_id": order.client_order_id, "product_id": order.product_id,
            "strategy": order.strategy, "side": str(order.side), "kind": str(order.kind),
            "status": str(order.status), "size": _float(order.size),
            "quote_size": _float(order.quote_size), "limit_price": _float(order.limit_price),
            "filled_size": float(order.filled_size),
            "age_s": max(0.0, (now_ns - since_ns) / 1e9) if since_ns else None}


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _plain(value: Decimal | None) -> str:
    """A Decimal without exponent or trailing zeros."""
    if value is None:
        return "?"
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
