"""Create-order bodies, read and checked the way Coinbase reads and checks them.

A body the gateway cannot parse (not JSON, unknown field, bad enum, amount not a decimal string)
is HTTP 400 (`BadRequest`); a well-formed order the exchange does not take is a `Rejection`
(HTTP 200, `success: false`): amounts off the product's increments or outside its limits
(`check_amounts`), and, in the exchange, post-only orders that would cross and short funds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

REQUEST_FIELDS = frozenset({
    "client_order_id", "product_id", "side", "order_configuration", "leverage", "margin_type",
    "retail_portfolio_id", "preview_id", "attached_order_configuration", "sor_preference",
    "self_trade_prevention_id"})
# The configurations the simulator fills, with the fields each takes.
SUPPORTED = {"limit_limit_gtc": frozenset({"base_size", "limit_price", "post_only"}),
             "sor_limit_ioc": frozenset({"base_size", "limit_price"}),
             "market_market_ioc": frozenset({"base_size", "quote_size"})}
# Valid Coinbase configurations it does not model: rejected as unsupported, not malformed.
UNSUPPORTED = frozenset({
    "market_market_fok", "limit_limit_gtd", "limit_limit_fok", "stop_limit_stop_limit_gtc",
    "stop_limit_stop_limit_gtd", "trigger_bracket_gtc", "trigger_bracket_gtd",
    "twap_limit_gtd", "scaled_limit_gtc"})


@dataclass(frozen=True, slots=True)
class ProductRules:
    """What an order on one product must satisfy, read from its `/market/products` body."""

    product_id: str
    base: str
    quote: str
    base_increment: Decimal
    price_increment: Decimal
    quote_increment: Decimal
    base_min_size: Decimal
    base_max_size: Decimal
    quote_min_size: Decimal
    quote_max_size: Decimal
    tradable: bool = True
    limit_only: bool = False
    post_only: bool = False

    @classmethod
    def from_product(cls, body: Mapping[str, Any]) -> ProductRules:
        """Rules from a product body as the simulator serves it (wire.product)."""
        number = {k: Decimal(body[k]) for k in (
            "base_increment", "price_increment", "quote_increment", "base_min_size",
            "base_max_size", "quote_min_size", "quote_max_size")}
        tradable = body["status"] == "online" and not (
            body["trading_disabled"] or body["is_disabled"] or body["cancel_only"])
        return cls(body["product_id"], body["base_currency_id"], body["quote_currency_id"],
                   tradable=tradable, limit_only=bool(body["limit_only"]),
                   post_only=bool(body["post_only"]), **number)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A create-order body, parsed; amounts are exactly what the client sent."""

    client_order_id: str
    product_id: str
    side: str  # BUY | SELL
    kind: str  # the order_configuration key
    configuration: dict[str, Any]  # echoed back as sent
    base_size: Decimal | None = None
    quote_size: Decimal | None = None
    limit_price: Decimal | None = None
    post_only: bool = False


class Rejection(Exception):
    """An order refused by the exchange's rules (HTTP 200, `success: false`)."""

    def __init__(self, reason: str, message: str, preview: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.preview = preview or f"PREVIEW_{reason}"


class BadRequest(Exception):
    """A body the gateway refuses before the exchange sees it (HTTP 400)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def parse_order(body: Any) -> OrderRequest:
    """The order in a POST /orders body; raises BadRequest or Rejection."""
    if not isinstance(body, dict):
        raise BadRequest("INVALID_ARGUMENT", "request body must be a JSON object")
    _no_unknown_fields(body, REQUEST_FIELDS)
    client_order_id, product_id, side = (body.get(k) for k in (
        "client_order_id", "product_id", "side"))
    if not isinstance(client_order_id, str) or not client_order_id:
        raise BadRequest("INVALID_ARGUMENT", "client_order_id is required")
    if not isinstance(product_id, str) or not product_id:
        raise BadRequest("INVALID_ARGUMENT", "product_id is required")
    if side not in ("BUY", "SELL"):
        raise BadRequest("INVALID_ARGUMENT", f"invalid value for enum type: {side!r}")
    configuration = body.get("order_configuration")
    if not isinstance(configuration, dict) or len(configuration) != 1:
        raise Rejection("UNSUPPORTED_ORDER_CONFIGURATION",
                        "order_configuration must hold exactly one configuration")
    ((kind, fields),) = configuration.items()
    if kind in UNSUPPORTED:
        raise Rejection("UNSUPPORTED_ORDER_CONFIGURATION",
                        f"{kind} is not supported by the simulator")
    if kind not in SUPPORTED or not isinstance(fields, dict):
        raise BadRequest("unknown", f'proto: unknown field "{kind}"')
    _no_unknown_fields(fields, SUPPORTED[kind])
    return _request(client_order_id, product_id, side, kind, fields)


def _request(client_order_id: str, product_id: str, side: str, kind: str,
             fields: dict[str, Any]) -> OrderRequest:
    base, quote = _decimal(fields, "base_size"), _decimal(fields, "quote_size")
    price = _decimal(fields, "limit_price")
    post_only = fields.get("post_only", False)
    if not isinstance(post_only, bool):
        raise BadRequest("INVALID_ARGUMENT", "post_only must be a boolean")
    if kind == "market_market_ioc" and (base is None) == (quote is None):
        raise Rejection("UNSUPPORTED_ORDER_CONFIGURATION",
                        "exactly one of base_size and quote_size is required")
    if kind != "market_market_ioc" and (base is None or price is None):
        raise Rejection("UNSUPPORTED_ORDER_CONFIGURATION",
                        "base_size and limit_price are required")
    return OrderRequest(client_order_id, product_id, side, kind, fields, base_size=base,
                        quote_size=quote, limit_price=price, post_only=post_only)


def _no_unknown_fields(obj: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise BadRequest("unknown", f'proto: unknown field "{unknown[0]}"')


def _decimal(fields: dict[str, Any], key: str) -> Decimal | None:
    """An amount: a decimal string (as the proto has it), or None when absent."""
    value = fields.get(key)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise InvalidOperation
        number = Decimal(value)
    except InvalidOperation:
        raise BadRequest("INVALID_ARGUMENT", f"{key}: {value!r} is not a decimal") from None
    if not number.is_finite():
        raise BadRequest("INVALID_ARGUMENT", f"{key}: {value!r} is not a decimal")
    return number


def check_amounts(request: OrderRequest, rules: ProductRules, last_price: Decimal) -> None:
    """Refuse amounts off the product's increments or outside its limits, as Coinbase does.

    A market order sized in base has its notional valued at `last_price`.
    """
    if not rules.tradable:
        raise Rejection("UNTRADABLE_PRODUCT", "Product is not tradable")
    if rules.limit_only and request.limit_price is None:
        raise Rejection("ORDER_ENTRY_DISABLED", "Only limit orders are allowed")
    if rules.post_only and not request.post_only:
        raise Rejection("ORDER_ENTRY_DISABLED", "Only post-only orders are allowed")
    if request.limit_price is not None:
        if request.limit_price <= 0:
            raise Rejection("INVALID_LIMIT_PRICE", "Invalid limit price")
        if request.limit_price % rules.price_increment:
            raise Rejection("INVALID_PRICE_PRECISION", "Invalid order price precision")
    if request.base_size is not None:
        _check_base(request.base_size, rules)
        _check_quote(request.base_size * (request.limit_price or last_price), rules)
    if request.quote_size is not None:
        if request.quote_size % rules.quote_increment:
            raise Rejection("INVALID_SIZE_PRECISION", "Invalid order quote size precision",
                            "PREVIEW_INVALID_QUOTE_SIZE_PRECISION")
        _check_quote(request.quote_size, rules)


def _check_base(size: Decimal, rules: ProductRules) -> None:
    if size % rules.base_increment:
        raise Rejection("INVALID_SIZE_PRECISION", "Invalid order size precision")
    if size < rules.base_min_size or size <= 0:
        raise _size_limit("PREVIEW_INVALID_BASE_SIZE_TOO_SMALL", "Order size is too small")
    if size > rules.base_max_size:
        raise _size_limit("PREVIEW_INVALID_BASE_SIZE_TOO_LARGE", "Order size is too large")


def _check_quote(notional: Decimal, rules: ProductRules) -> None:
    if notional < rules.quote_min_size or notional <= 0:
        raise _size_limit("PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL", "Order value is too small")
    if notional > rules.quote_max_size:
        raise _size_limit("PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE", "Order value is too large")


def _size_limit(preview: str, message: str) -> Rejection:
    # Size limits are preview checks: the order-level reason stays unknown (PROTOCOL 5.3).
    return Rejection("UNKNOWN_FAILURE_REASON", message, preview)
