"""The simulator's own JSON for orders, fills and accounts (REST) and user-channel orders.

Built from the protocol notes and samples, independently of trader/coinbase/messages.py.
Amounts are plain decimal strings; the REST order carries every field of the sample Order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trader.simulator.exchange import ZERO, Account, Fill, Order
from trader.simulator.order_request import Rejection
from trader.simulator.wire import rfc3339

USER_ID = "5e1a7f3c-0b2d-4c6e-9f8a-1b2c3d4e5f60"
PORTFOLIO_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
ZERO_TIME = "0001-01-01T00:00:00Z"
FIAT = frozenset({"USD", "EUR", "GBP"})
TIME_IN_FORCE = {"limit_limit_gtc": "GOOD_UNTIL_CANCELLED",
                 "sor_limit_ioc": "IMMEDIATE_OR_CANCEL",
                 "market_market_ioc": "IMMEDIATE_OR_CANCEL"}
ACCOUNTS_CREATED = "2024-05-31T09:59:59.117Z"


def text(value: Decimal) -> str:
    """A decimal as Coinbase writes it: plain notation, no trailing zeros."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _average(order: Order) -> Decimal:
    return order.filled_value / order.filled_size if order.filled_size else ZERO


def _completion(order: Order) -> Decimal:
    size = order.request.base_size
    if order.status == "FILLED":
        return Decimal(100)
    return order.filled_size * 100 / size if size else ZERO


def _after_fees(order: Order) -> Decimal:
    sign = 1 if order.request.side == "BUY" else -1
    return order.filled_value + sign * order.total_fees


def create_success(order: Order) -> dict[str, Any]:
    """The create-order answer for an accepted (or repeated) client order id."""
    request = order.request
    return {"success": True, "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": order.order_id,
            "success_response": {"order_id": order.order_id, "product_id": request.product_id,
                                 "side": request.side,
                                 "client_order_id": request.client_order_id},
            "order_configuration": {request.kind: request.configuration}}


def create_failure(rejection: Rejection, configuration: Any) -> dict[str, Any]:
    """The create-order answer for a rejection (HTTP 200)."""
    return {"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
            "error_response": {"error": rejection.reason, "message": rejection.message,
                               "error_details": "",
                               "preview_failure_reason": rejection.preview,
                               "new_order_failure_reason": rejection.reason},
            "order_configuration": configuration}


def order(order: Order) -> dict[str, Any]:
    """The REST Order object (GET /orders/historical/...)."""
    request = order.request
    last_fill = order.last_fill_ns
    return {
        "order_id": order.order_id, "product_id": request.product_id, "user_id": USER_ID,
        "order_configuration": {request.kind: request.configuration},
        "side": request.side, "client_order_id": request.client_order_id,
        "status": order.status, "time_in_force": TIME_IN_FORCE[request.kind],
        "created_time": rfc3339(order.created_ns, 6),
        "completion_percentage": text(_completion(order)),
        "filled_size": text(order.filled_size), "average_filled_price": text(_average(order)),
        "fee": "", "number_of_fills": str(order.number_of_fills),
        "filled_value": text(order.filled_value), "pending_cancel": False,
        "size_in_quote": request.quote_size is not None,
        "total_fees": text(order.total_fees),
        "size_inclusive_of_fees": request.quote_size is not None,
        "total_value_after_fees": text(_after_fees(order)),
        "trigger_status": "INVALID_ORDER_TYPE",
        "order_type": "MARKET" if request.limit_price is None else "LIMIT",
        "reject_reason": "REJECT_REASON_UNSPECIFIED", "settled": not order.is_open,
        "product_type": "SPOT", "reject_message": "", "cancel_message": order.cancel_message,
        "order_placement_source": "RETAIL_ADVANCED",
        "outstanding_hold_amount": text(order.hold), "is_liquidation": False,
        "last_fill_time": None if last_fill is None else rfc3339(last_fill, 6),
        "edit_history": [], "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE",
        "retail_portfolio_id": PORTFOLIO_ID, "originating_order_id": "",
        "attached_order_id": "", "attached_order_configuration": None,
    }


def user_order(order: Order) -> dict[str, Any]:
    """An order in a `user` channel event: cumulative state, all strings."""
    request = order.request
    limit = request.limit_price
    return {
        "avg_price": text(_average(order)),
        "cancel_reason": order.cancel_message, "client_order_id": request.client_order_id,
        "completion_percentage": f"{_completion(order):.2f}",
        "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE",
        "cumulative_quantity": text(order.filled_size),
        "filled_value": text(order.filled_value),
        "leaves_quantity": text(order.leaves),
        "limit_price": "" if limit is None else text(limit),
        "number_of_fills": str(order.number_of_fills), "order_id": order.order_id,
        "order_side": request.side, "order_type": "Market" if limit is None else "Limit",
        "outstanding_hold_amount": text(order.hold),
        "post_only": "true" if request.post_only else "false",
        "product_id": request.product_id, "product_type": "SPOT", "reject_reason": "",
        "retail_portfolio_id": PORTFOLIO_ID,
        "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE", "status": order.status,
        "stop_price": "", "time_in_force": TIME_IN_FORCE[request.kind],
        "total_fees": text(order.total_fees),
        "total_value_after_fees": text(_after_fees(order)),
        "trigger_status": "INVALID_ORDER_TYPE",
        "creation_time": rfc3339(order.created_ns, 6),
        "end_time": ZERO_TIME, "start_time": ZERO_TIME,
    }


def user_event(kind: str, orders: list[Order]) -> dict[str, Any]:
    """One `user` event: a snapshot (with its empty positions) or an update."""
    event: dict[str, Any] = {"type": kind, "orders": [user_order(o) for o in orders]}
    if kind == "snapshot":
        event["positions"] = {"perpetual_futures_positions": [],
                              "expiring_futures_positions": []}
    return event


def fill(fill: Fill, size_in_quote: bool) -> dict[str, Any]:
    """A REST fill (GET /orders/historical/fills)."""
    stamp = rfc3339(fill.time_ns, 6)
    return {"entry_id": fill.entry_id, "trade_id": fill.trade_id, "order_id": fill.order_id,
            "trade_time": stamp, "trade_type": "FILL", "price": text(fill.price),
            "size": text(fill.size), "commission": text(fill.commission),
            "product_id": fill.product_id, "sequence_timestamp": stamp,
            "liquidity_indicator": fill.liquidity, "size_in_quote": size_in_quote,
            "user_id": USER_ID, "side": fill.side, "retail_portfolio_id": PORTFOLIO_ID}


def account(account: Account, now_ns: int) -> dict[str, Any]:
    """A REST account: available excludes the hold; both in the account's currency."""
    currency = account.currency
    fiat = currency in FIAT
    return {"uuid": account.uuid, "name": f"Cash ({currency})" if fiat else f"{currency} Wallet",
            "currency": currency,
            "available_balance": {"value": text(account.available), "currency": currency},
            "default": currency == "USD", "active": True, "created_at": ACCOUNTS_CREATED,
            "updated_at": rfc3339(now_ns, 3), "deleted_at": None,
            "type": "ACCOUNT_TYPE_FIAT" if fiat else "ACCOUNT_TYPE_CRYPTO", "ready": True,
            "hold": {"value": text(account.hold), "currency": currency},
            "retail_portfolio_id": PORTFOLIO_ID, "platform": "ACCOUNT_PLATFORM_CONSUMER"}
