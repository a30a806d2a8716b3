"""Exact order amounts: Decimal quantization to a product's increments and its order rules.

The only place floats become exchange strings. Coinbase rejects, never rounds, an amount off its
increment (`INVALID_SIZE_PRECISION`, `INVALID_PRICE_PRECISION`), so everything is rounded here,
in the direction that cannot hurt: a buy limit price down (never pay more), a sell limit price
up (never receive less), sizes and quote sizes down (never more than risk allowed). An order
that cannot be made valid is refused with a reason and never sent.

`prepare_limit` / `prepare_market` return a `PreparedOrder` or a reason string; `check_order`
validates amounts that are already exact. Quote sizes use the price increment (Coinbase's
`quote_increment`, equal to `price_increment` for every product in the 2026 catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Literal

from trader.types import Product, Side

OrderType = Literal["limit", "market"]
Number = float | int | Decimal

# Wide enough that size * price and value // increment stay exact for any catalogue product.
_CTX = Context(prec=60, rounding=ROUND_HALF_EVEN,
               traps=[InvalidOperation, DivisionByZero, Overflow])


@dataclass(frozen=True, slots=True)
class PreparedOrder:
    """An order that meets its product's rules: exact amounts, ready to send.

    A limit order has `size` (base units) and `limit_price`; a market order has exactly one of
    `size` / `quote_size` and no price. Field names follow `types.OrderIntent`.
    """

    product_id: str
    side: Side
    order_type: OrderType
    size: Decimal | None
    quote_size: Decimal | None
    limit_price: Decimal | None
    post_only: bool

    def as_wire(self) -> dict[str, str]:
        """The amounts as Coinbase order-configuration strings (`base_size`, `limit_price`...).

        `post_only` is left to the message builder: not every configuration accepts it.
        """
        amounts = {"base_size": self.size, "quote_size": self.quote_size,
                   "limit_price": self.limit_price}
        return {name: to_wire(value) for name, value in amounts.items() if value is not None}


def to_decimal(value: Number) -> Decimal:
    """An exact Decimal; a float by its shortest repr, so 0.29 is 0.29, not 0.28999...

    Raises ValueError for NaN, infinities and bools.
    """
    if isinstance(value, bool) or not isinstance(value, float | int | Decimal):
        raise ValueError(f"not a number: {value!r}")
    result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def to_wire(value: Decimal) -> str:
    """Plain decimal notation, no exponent and no trailing zeros: 1E-8 -> "0.00000001"."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    text = format(value.normalize(_CTX), "f")
    return "0" if text in ("-0", "") else text


def floor_to(value: Decimal, increment: Decimal) -> Decimal:
    """The largest multiple of `increment` (> 0) that is <= `value`."""
    return _CTX.multiply(_steps_down(value, increment), increment)


def ceil_to(value: Decimal, increment: Decimal) -> Decimal:
    """The smallest multiple of `increment` (> 0) that is >= `value`."""
    floor = floor_to(value, increment)
    return floor if floor == value else _CTX.add(floor, increment)


def is_multiple(value: Decimal, increment: Decimal) -> bool:
    """Whether `value` is a whole number of `increment`s (False when too large to tell)."""
    try:
        return increment > 0 and _CTX.remainder(value, increment) == 0
    except InvalidOperation:
        return False


def quantize_price(product: Product, price: Number, side: Side) -> Decimal:
    """A limit price on the product's tick: a buy rounds down, a sell rounds up."""
    exact = to_decimal(price)
    if Side(side) == Side.BUY:
        return floor_to(exact, product.price_increment)
    return ceil_to(exact, product.price_increment)


def quantize_size(product: Product, size: Number) -> Decimal:
    """A base size on the product's `base_increment`, rounded down."""
    return floor_to(to_decimal(size), product.base_increment)


def quantize_quote(product: Product, quote_size: Number) -> Decimal:
    """A quote size (market orders by notional) on the quote increment, rounded down."""
    return floor_to(to_decimal(quote_size), product.price_increment)


def check_product(product: Product, order_type: OrderType, post_only: bool) -> str | None:
    """Why the product takes no new order of this kind now, or None."""
    pid = product.product_id
    if product.status != "online":
        return f"{pid} is {product.status}, not online"
    if product.trading_disabled:
        return f"{pid} has trading disabled"
    if product.cancel_only:
        return f"{pid} is cancel-only: no new orders"
    if order_type == "market" and product.limit_only:
        return f"{pid} is limit-only: no market orders"
    if product.post_only and (order_type == "market" or not post_only):
        return f"{pid} is post-only: only post-only limit orders"
    if order_type == "market" and post_only:
        return f"{pid}: a market order cannot be post-only"
    if product.base_increment <= 0 or product.price_increment <= 0:
        return f"{pid} has no valid increments"
    return None


def check_order(product: Product, side: Side, order_type: OrderType, *,
                size: Decimal | None, quote_size: Decimal | None, price: Decimal | None,
                post_only: bool) -> str | None:
    """Why this exact order would be rejected, or None when it meets every product rule.

    A limit order needs `size` and `price` (the limit price, on the tick). A market order needs
    exactly one of `size` / `quote_size`; its `price`, optional, is a reference price used only
    to check a base-sized order's notional against `quote_min_size`.
    """
    reason = check_product(product, order_type, post_only)
    if reason is not None:
        return reason
    if order_type == "limit":
        return _check_limit(product, size, quote_size, price)
    return _check_market(product, size, quote_size, price)


def prepare_limit(product: Product, side: Side, price: Number, *, size: Number | None = None,
                  notional: Number | None = None, post_only: bool = True) -> PreparedOrder | str:
    """A valid limit order, or the reason none exists.

    Give exactly one of `size` (base units) or `notional` (quote units, the most risk allows);
    the size is then the most whole increments that `notional` buys at the rounded price.
    """
    try:
        limit_price = quantize_price(product, price, side)
        base_size = _limit_size(product, limit_price, size, notional)
    except ValueError as exc:
        return f"{product.product_id}: {exc}"
    if isinstance(base_size, str):
        return base_size
    reason = check_order(product, side, "limit", size=base_size, quote_size=None,
                         price=limit_price, post_only=post_only)
    if reason is not None:
        return reason
    return PreparedOrder(product.product_id, Side(side), "limit", base_size, None, limit_price,
                         post_only)


def prepare_market(product: Product, side: Side, *, size: Number | None = None,
                   quote_size: Number | None = None,
                   reference_price: Number | None = None) -> PreparedOrder | str:
    """A valid market (IOC) order by base `size` or by `quote_size`, or the reason none exists.

    `reference_price`, when given, lets a base-sized order be checked against the minimum
    notional before the exchange does it.
    """
    if (size is None) == (quote_size is None):
        return f"{product.product_id}: give exactly one of size or quote_size"
    try:
        side = Side(side)
        base = None if size is None else quantize_size(product, _positive("size", size))
        quote = None if quote_size is None else quantize_quote(
            product, _positive("quote size", quote_size))
        ref = None if reference_price is None else _positive("reference price",
                                                             reference_price)
    except ValueError as exc:
        return f"{product.product_id}: {exc}"
    reason = check_order(product, side, "market", size=base, quote_size=quote, price=ref,
                         post_only=False)
    if reason is not None:
        return reason
    return PreparedOrder(product.product_id, side, "market", base, quote, None, False)


def _limit_size(product: Product, limit_price: Decimal, size: Number | None,
                notional: Number | None) -> Decimal | str:
    if (size is None) == (notional is None):
        return f"{product.product_id}: give exactly one of size or notional"
    if limit_price <= 0:
        return (f"{product.product_id}: price rounds to {to_wire(limit_price)}, "
                f"below one tick of {to_wire(product.price_increment)}")
    if size is not None:
        return floor_to(_positive("size", size), product.base_increment)
    assert notional is not None, "exactly one of size and notional, checked above"
    budget = _positive("notional", notional)
    # floor(budget / (price * increment)) whole increments: integer division, exact.
    steps = _steps_down(budget, _CTX.multiply(limit_price, product.base_increment))
    return _CTX.multiply(steps, product.base_increment)


def _steps_down(value: Decimal, increment: Decimal) -> Decimal:
    """floor(value / increment) as an integral Decimal, exactly."""
    if increment <= 0:
        raise ValueError(f"increment must be > 0, got {increment}")
    try:
        steps = _CTX.divide_int(value, increment)
    except InvalidOperation:  # more whole increments than the context has digits
        raise ValueError(f"{value:.3E} is too large") from None
    if _CTX.multiply(steps, increment) > value:  # divide_int truncates toward zero
        steps = _CTX.subtract(steps, 1)
    return steps


def _positive(name: str, value: Number) -> Decimal:
    exact = to_decimal(value)
    if exact <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return exact


def _check_limit(product: Product, size: Decimal | None, quote_size: Decimal | None,
                 price: Decimal | None) -> str | None:
    pid = product.product_id
    if size is None or price is None or quote_size is not None:
        return f"{pid}: a limit order needs a base size and a limit price"
    if price <= 0 or not is_multiple(price, product.price_increment):
        return (f"{pid}: limit price {to_wire(price)} is not a positive multiple of the "
                f"price increment {to_wire(product.price_increment)}")
    return _check_size(product, size) or _check_notional(product, _CTX.multiply(size, price))


def _check_market(product: Product, size: Decimal | None, quote_size: Decimal | None,
                  price: Decimal | None) -> str | None:
    pid = product.product_id
    if (size is None) == (quote_size is None):
        return f"{pid}: a market order needs exactly one of base size or quote size"
    if quote_size is not None:
        if not is_multiple(quote_size, product.price_increment):
            return (f"{pid}: quote size {to_wire(quote_size)} is not a multiple of the quote "
                    f"increment {to_wire(product.price_increment)}")
        return _check_notional(product, quote_size)
    assert size is not None
    reason = _check_size(product, size)
    if reason is None and price is not None:
        reason = _check_notional(product, _CTX.multiply(size, price))
    return reason


def _check_size(product: Product, size: Decimal) -> str | None:
    pid, base = product.product_id, product.base_currency
    if not is_multiple(size, product.base_increment):
        return (f"{pid}: size {to_wire(size)} {base} is not a multiple of the base increment "
                f"{to_wire(product.base_increment)}")
    if size <= 0 or size < product.base_min_size:
        return (f"{pid}: size {to_wire(size)} {base} is below the minimum "
                f"{to_wire(product.base_min_size)} {base}")
    if size > product.base_max_size:
        return (f"{pid}: size {to_wire(size)} {base} is above the maximum "
                f"{to_wire(product.base_max_size)} {base}")
    return None


def _check_notional(product: Product, notional: Decimal) -> str | None:
    if notional <= 0 or notional < product.quote_min_size:
        quote = product.quote_currency
        return (f"{product.product_id}: notional {to_wire(notional)} {quote} is below the "
                f"minimum {to_wire(product.quote_min_size)} {quote}")
    return None
