"""The order side of the wire format, both ways: request bodies from intents, and orders,
fills, cancels, accounts and user-channel frames into domain values.

Coinbase's field names stop here. Numbers travel as decimal strings and become `Decimal`
exactly; anything malformed raises `FrameError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from trader.coinbase.wire_time import parse_rfc3339_ns
from trader.errors import FrameError
from trader.money import to_wire
from trader.types import (
    Fill,
    Liquidity,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
)

_STATUS = {"PENDING": OrderStatus.PENDING, "QUEUED": OrderStatus.PENDING,
           "OPEN": OrderStatus.OPEN, "CANCEL_QUEUED": OrderStatus.OPEN,
           "FILLED": OrderStatus.FILLED, "CANCELLED": OrderStatus.CANCELLED,
           "EXPIRED": OrderStatus.EXPIRED, "FAILED": OrderStatus.FAILED}
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The answer to a create-order request: accepted with an order id, or refused."""

    accepted: bool
    order_id: str
    client_order_id: str
    reason: str  # Coinbase's failure reason and message when refused


@dataclass(frozen=True, slots=True)
class CancelResult:
    order_id: str
    requested: bool  # the cancel was queued (confirmation comes as an order update)
    reason: str


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    available: Decimal
    hold: Decimal


# ---- requests ------------------------------------------------------------------------------

def create_order_body(intent: OrderIntent) -> dict[str, Any]:
    """The `POST /orders` body for an intent whose numbers `money` already made valid."""
    return {"client_order_id": intent.client_order_id, "product_id": intent.product_id,
            "side": str(intent.side), "order_configuration": _configuration(intent)}


def _configuration(intent: OrderIntent) -> dict[str, Any]:
    sizes = ({"base_size": to_wire(intent.size)} if intent.size is not None
             else {"quote_size": to_wire(_required(intent.quote_size, "a size"))})
    if intent.order_type == OrderType.MARKET:
        return {"market_market_ioc": sizes}
    price = {"limit_price": to_wire(_required(intent.limit_price, "a limit price"))}
    if intent.time_in_force == TimeInForce.IOC:
        return {"sor_limit_ioc": {**sizes, **price}}
    return {"limit_limit_gtc": {**sizes, **price, "post_only": intent.post_only}}


def _required(value: Decimal | None, what: str) -> Decimal:
    if value is None:
        raise ValueError(f"an order intent without {what}")
    return value


def cancel_body(order_ids: list[str]) -> dict[str, Any]:
    return {"order_ids": list(order_ids)}


# ---- responses -----------------------------------------------------------------------------

def parse_create_response(body: Any, client_order_id: str) -> CreateResult:
    """Accepted (`success: true`) or refused with Coinbase's reason; both come as HTTP 200."""
    _mapping(body, "create-order response")
    if body.get("success") is True:
        ok = _mapping(body.get("success_response"), "success_response")
        return CreateResult(True, _text(ok, "order_id"),
                            ok.get("client_order_id") or client_order_id, "")
    error = body.get("error_response") or {}
    reason = (error.get("new_order_failure_reason") or error.get("error")
              or error.get("preview_failure_reason") or body.get("failure_reason") or "UNKNOWN")
    message = error.get("message") or ""
    return CreateResult(False, "", client_order_id, f"{reason}: {message}" if message else reason)


def parse_order(obj: Any) -> OrderUpdate:
    """One REST order object (`GET /orders/historical/...`)."""
    _mapping(obj, "order")
    filled = _decimal(obj, "filled_size")
    return OrderUpdate(
        client_order_id=obj.get("client_order_id") or "", order_id=_text(obj, "order_id"),
        product_id=_text(obj, "product_id"), side=_side(obj, "side"),
        status=_status(obj.get("status")), filled_size=filled,
        average_filled_price=_decimal(obj, "average_filled_price") if filled else Decimal(0),
        total_fees=_decimal(obj, "total_fees", default="0"),
        time_ns=_time(obj.get("last_fill_time") or obj.get("created_time")),
        reject_reason=_reject_reason(obj))


def parse_user_order(obj: Any, frame_time_ns: int) -> OrderUpdate:
    """One order of a `user` channel event: cumulative state, no trade ids."""
    _mapping(obj, "user order")
    filled = _decimal(obj, "cumulative_quantity", default="0")
    return OrderUpdate(
        client_order_id=obj.get("client_order_id") or "", order_id=_text(obj, "order_id"),
        product_id=_text(obj, "product_id"), side=_side(obj, "order_side"),
        status=_status(obj.get("status")), filled_size=filled,
        average_filled_price=_decimal(obj, "avg_price", default="0") if filled else Decimal(0),
        total_fees=_decimal(obj, "total_fees", default="0"), time_ns=frame_time_ns,
        reject_reason=_reject_reason(obj))


def parse_user_frame(msg: dict[str, Any]) -> tuple[str, list[OrderUpdate]]:
    """A decoded `user` channel frame: its event type ("snapshot"/"update") and order updates."""
    time_ns = parse_rfc3339_ns(_text(msg, "timestamp"))
    events = msg.get("events")
    if not isinstance(events, list):
        raise FrameError("bad_field", "user frame without an events list")
    kind, updates = "update", []
    for event in events:
        _mapping(event, "user event")
        kind = event.get("type", kind)
        updates += [parse_user_order(o, time_ns) for o in event.get("orders") or []]
    return kind, updates


def parse_fills(body: Any) -> tuple[list[Fill], str]:
    """A page of `GET /orders/historical/fills`: fills (FILL entries only) and the next cursor."""
    _mapping(body, "fills response")
    fills = body.get("fills")
    if not isinstance(fills, list):
        raise FrameError("bad_field", "fills response without a fills list")
    parsed = [parse_fill(f) for f in fills if f.get("trade_type", "FILL") == "FILL"]
    return parsed, body.get("cursor") or ""


def parse_fill(obj: Any) -> Fill:
    _mapping(obj, "fill")
    liquidity = obj.get("liquidity_indicator")
    return Fill(trade_id=_text(obj, "trade_id"), order_id=_text(obj, "order_id"),
                client_order_id=obj.get("client_order_id") or "",
                product_id=_text(obj, "product_id"), side=_side(obj, "side"),
                price=_decimal(obj, "price"), size=_decimal(obj, "size"),
                fee=_decimal(obj, "commission", default="0"),
                liquidity=Liquidity.MAKER if liquidity == "MAKER" else Liquidity.TAKER,
                time_ns=_time(obj.get("trade_time")))


def parse_orders_page(body: Any) -> tuple[list[OrderUpdate], str]:
    """A page of `GET /orders/historical/batch`: orders and the next cursor ("" at the end)."""
    _mapping(body, "orders response")
    orders = body.get("orders")
    if not isinstance(orders, list):
        raise FrameError("bad_field", "orders response without an orders list")
    more = body.get("has_next") is True
    return [parse_order(o) for o in orders], (body.get("cursor") or "") if more else ""


def parse_cancel_results(body: Any) -> list[CancelResult]:
    _mapping(body, "cancel response")
    results = body.get("results")
    if not isinstance(results, list):
        raise FrameError("bad_field", "cancel response without results")
    return [CancelResult(_text(r, "order_id"), r.get("success") is True,
                         "" if r.get("success") is True else r.get("failure_reason", ""))
            for r in results]


def parse_accounts(body: Any) -> tuple[list[Balance], str]:
    _mapping(body, "accounts response")
    accounts = body.get("accounts")
    if not isinstance(accounts, list):
        raise FrameError("bad_field", "accounts response without accounts")
    balances = [Balance(_text(a, "currency"), _decimal(a.get("available_balance"), "value"),
                        _decimal(a.get("hold") or {"value": "0"}, "value")) for a in accounts]
    return balances, (body.get("cursor") or "") if body.get("has_next") is True else ""


# ---- fields --------------------------------------------------------------------------------

def _mapping(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FrameError("bad_field", f"{what} is not an object")
    return obj


def _text(obj: Any, key: str) -> str:
    value = _mapping(obj, key).get(key)
    if not isinstance(value, str) or not value:
        raise FrameError("bad_field", f"{key} missing or not a string")
    return value


def _decimal(obj: Any, key: str, default: str | None = None) -> Decimal:
    value = _mapping(obj, key).get(key)
    if value in (None, "") and default is not None:
        value = default
    if value is None:
        raise FrameError("bad_number", f"{key}={value!r}")
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError):
        raise FrameError("bad_number", f"{key}={value!r}") from None
    if not number.is_finite():
        raise FrameError("bad_number", f"{key}={value!r}")
    return number


def _side(obj: Any, key: str) -> Side:
    value = _mapping(obj, key).get(key)
    if value not in ("BUY", "SELL"):
        raise FrameError("bad_field", f"{key}={value!r}")
    return Side(value)


def _status(value: Any) -> OrderStatus:
    return _STATUS.get(value, OrderStatus.UNKNOWN)


def _time(value: Any) -> int:
    if not isinstance(value, str) or not value or value == _ZERO_TIME:
        return 0
    return parse_rfc3339_ns(value)


def _reject_reason(obj: dict[str, Any]) -> str:
    reason = obj.get("reject_reason") or ""
    if reason in ("REJECT_REASON_UNSPECIFIED", ""):
        return obj.get("reject_message") or obj.get("cancel_reason") or ""
    return reason
