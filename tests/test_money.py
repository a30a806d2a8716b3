"""Order amounts: direction-aware rounding, product rules, wire strings; all 920 real products."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.recordings import ADVANCED_TRADE
from trader.coinbase.rest_bodies import parse_products
from trader.money import (
    PreparedOrder,
    ceil_to,
    check_order,
    floor_to,
    prepare_limit,
    prepare_market,
    quantize_price,
    quantize_quote,
    quantize_size,
    to_decimal,
    to_wire,
)
from trader.types import Product, Side

D = Decimal


@functools.cache
def recorded_products() -> tuple[Product, ...]:
    """The `/market/products` listing captured with the 2026-08-09 recording (920 products)."""
    with gzip.open(ADVANCED_TRADE, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["t"] == "http" and record["url"].endswith("/market/products"):
                return tuple(parse_products(json.loads(record["data"])))
    raise AssertionError("no product listing in the recording")


def product(product_id: str) -> Product:
    return next(p for p in recorded_products() if p.product_id == product_id)


def test_the_recording_holds_all_920_products():
    products = recorded_products()
    assert len(products) == 920
    assert sum(p.status != "online" for p in products) == 8
    assert sum(p.limit_only for p in products) == 30


@pytest.mark.parametrize(("value", "text"), [
    (D("1E-8"), "0.00000001"), (D("0.00000001"), "0.00000001"), (D("65000.10"), "65000.1"),
    (D("1E+2"), "100"), (D("100"), "100"), (D("0.00"), "0"), (D("-0"), "0"),
    (D("333333333.3333333333333333"), "333333333.3333333333333333"),
])
def test_wire_strings_have_no_exponent_and_no_trailing_zeros(value, text):
    assert to_wire(value) == text


def test_floats_become_their_shortest_decimal():
    assert to_decimal(0.29) == D("0.29")
    assert to_decimal(65086.18) == D("65086.18")
    assert to_decimal(1e-8) == D("1e-8")
    for bad in (float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError):
            to_decimal(bad)


def test_floor_and_ceil_to_an_increment():
    assert floor_to(D("0.2999"), D("0.01")) == D("0.29")
    assert ceil_to(D("0.2901"), D("0.01")) == D("0.30")
    assert ceil_to(D("0.29"), D("0.01")) == D("0.29")
    assert floor_to(D("-0.001"), D("0.01")) == D("-0.01")
    assert floor_to(D("7"), D("0.5")) == D("7.0") and ceil_to(D("7.1"), D("0.5")) == D("7.5")
    with pytest.raises(ValueError):
        floor_to(D("1"), D("0"))


def test_buy_prices_round_down_and_sell_prices_round_up():
    btc = product("BTC-USD")
    assert quantize_price(btc, 65086.187, Side.BUY) == D("65086.18")
    assert quantize_price(btc, 65086.181, Side.SELL) == D("65086.19")
    assert quantize_price(btc, 0.29, Side.BUY) == D("0.29")  # not 0.28 from 0.28999...
    assert quantize_price(btc, D("65086.18"), Side.SELL) == D("65086.18")
    with pytest.raises(ValueError):
        quantize_price(btc, 1.0, "buy")  # a misspelt side must not round the wrong way


def test_sizes_and_quote_sizes_round_down():
    btc, doge = product("BTC-USD"), product("DOGE-USD")
    assert quantize_size(btc, 0.123456789) == D("0.12345678")
    assert quantize_size(doge, 10.99) == D("10.9")
    assert quantize_quote(btc, 10.999) == D("10.99")


def test_a_limit_order_from_a_notional_never_spends_more_than_it():
    btc = product("BTC-USD")
    order = prepare_limit(btc, Side.BUY, 65086.187, notional=100)
    assert order == PreparedOrder("BTC-USD", Side.BUY, "limit", D("0.00153642"), None,
                                  D("65086.18"), True)
    assert order.size * order.limit_price <= 100
    assert order.as_wire() == {"base_size": "0.00153642", "limit_price": "65086.18"}


def test_tiny_increments_are_sent_without_exponents():
    shib = product("SHIB-USD")
    order = prepare_limit(shib, Side.SELL, 0.0000123456, size=1000000.7)
    assert order.as_wire() == {"base_size": "1000000", "limit_price": "0.00001235"}
    btc = product("BTC-USD")
    sell = prepare_market(btc, Side.SELL, size=1e-8)
    assert sell.as_wire() == {"base_size": "0.00000001"}


def test_a_market_order_by_quote_size():
    btc = product("BTC-USD")
    order = prepare_market(btc, Side.BUY, quote_size=25.009)
    assert order == PreparedOrder("BTC-USD", Side.BUY, "market", None, D("25"), None, False)
    assert order.as_wire() == {"quote_size": "25"}


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"price": 65000, "size": 0.000000009}, "size 0 BTC is below the minimum 0.00000001"),
    ({"price": 65000, "size": 3400.5}, "above the maximum 3400"),
    ({"price": 65000, "notional": 0.99}, "notional"),
    ({"price": 65000, "size": 0.00001}, "notional 0.65 USD is below the minimum 1 USD"),
    ({"price": 0.001, "size": 1}, "price rounds to 0"),
    ({"price": -1, "size": 1}, "price rounds to -1"),
    ({"price": 65000, "size": -1}, "size must be > 0"),
    ({"price": float("nan"), "size": 1}, "not a finite number"),
    ({"price": 65000}, "exactly one of size or notional"),
    ({"price": 65000, "size": 1, "notional": 1}, "exactly one of size or notional"),
])
def test_an_impossible_limit_order_is_refused_with_a_reason(kwargs, words):
    reason = prepare_limit(product("BTC-USD"), Side.BUY, **kwargs)
    assert isinstance(reason, str) and words in reason and reason.startswith("BTC-USD")


@pytest.mark.parametrize(("changes", "order_type", "post_only", "words"), [
    ({"status": "delisted"}, "limit", True, "BTC-USD is delisted, not online"),
    ({"trading_disabled": True}, "limit", True, "trading disabled"),
    ({"cancel_only": True}, "limit", True, "cancel-only"),
    ({"limit_only": True}, "market", False, "limit-only: no market orders"),
    ({"post_only": True}, "limit", False, "post-only"),
    ({"post_only": True}, "market", False, "post-only"),
])
def test_product_flags_refuse_orders(changes, order_type, post_only, words):
    flagged = dataclasses.replace(product("BTC-USD"), **changes)
    if order_type == "limit":
        reason = prepare_limit(flagged, Side.BUY, 65000, size=0.01, post_only=post_only)
    else:
        reason = prepare_market(flagged, Side.BUY, quote_size=100)
    assert isinstance(reason, str) and words in reason


def test_flags_that_allow_the_order_let_it_through():
    limit_only = dataclasses.replace(product("BTC-USD"), limit_only=True, post_only=True)
    assert isinstance(prepare_limit(limit_only, Side.BUY, 65000, size=0.01), PreparedOrder)


def test_market_order_refusals():
    btc = product("BTC-USD")
    assert "exactly one" in prepare_market(btc, Side.BUY)
    assert "exactly one" in prepare_market(btc, Side.BUY, size=1, quote_size=1)
    assert "below the minimum 1 USD" in prepare_market(btc, Side.BUY, quote_size=0.999)
    assert "notional" in prepare_market(btc, Side.SELL, size=0.00001, reference_price=65000)
    assert isinstance(prepare_market(btc, Side.SELL, size=0.00001), PreparedOrder)
    assert "not a valid Side" in prepare_market(btc, "sell", size=1)
    assert "not a valid Side" in prepare_limit(btc, "buy", 65000, size=1)


def test_check_order_rejects_amounts_off_their_increments():
    btc = product("BTC-USD")
    ok = {"size": D("0.01"), "quote_size": None, "price": D("65000.01"), "post_only": True}
    assert check_order(btc, Side.BUY, "limit", **ok) is None
    assert "price increment 0.01" in check_order(btc, Side.BUY, "limit",
                                                 **{**ok, "price": D("65000.001")})
    assert "base increment 0.00000001" in check_order(btc, Side.BUY, "limit",
                                                      **{**ok, "size": D("1E-9")})
    assert "needs a base size" in check_order(btc, Side.BUY, "limit", **{**ok, "size": None})
    assert "quote increment" in check_order(btc, Side.BUY, "market", size=None,
                                            quote_size=D("1.001"), price=None, post_only=False)
    assert "cannot be post-only" in check_order(btc, Side.BUY, "market", size=D("1"),
                                                quote_size=None, price=None, post_only=True)


# -- every recorded product: valid or refused, never in between ---------------------------------

def _is_multiple(value: Decimal, increment: Decimal) -> bool:
    return Fraction(value) % Fraction(increment) == 0


def _assert_valid(p: Product, order: PreparedOrder) -> None:
    """Independent of trader.money: exact multiples, bounds, flags, and the wire round trip."""
    assert p.status == "online" and not (p.trading_disabled or p.cancel_only)
    wire = order.as_wire()
    for text in wire.values():
        assert "E" not in text and "e" not in text and D(text) > 0
    if order.size is not None:
        assert D(wire["base_size"]) == order.size
        assert _is_multiple(order.size, p.base_increment)
        assert p.base_min_size <= order.size <= p.base_max_size
    if order.limit_price is not None:
        assert D(wire["limit_price"]) == order.limit_price
        assert _is_multiple(order.limit_price, p.price_increment)
        assert order.size * order.limit_price >= p.quote_min_size
    if order.quote_size is not None:
        assert _is_multiple(order.quote_size, p.price_increment)
        assert order.quote_size >= p.quote_min_size


def _best_limit_size(p: Product, price: float, notional: float, side: Side) -> Fraction | None:
    """The largest size a notional buys at the rounded price, by exact rational arithmetic."""
    tick = Fraction(p.price_increment)
    ticks = Fraction(repr(price)) / tick
    rounded = tick * (int(ticks) if side == Side.BUY else -int(-ticks // 1))
    if rounded <= 0:
        return None
    step = Fraction(p.base_increment)
    return step * int(Fraction(repr(notional)) / rounded / step)


prices_and_notionals = st.tuples(
    st.sampled_from(recorded_products()),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.floats(min_value=1e-4, max_value=1e4),  # a factor of the product's recorded price
    st.floats(min_value=1e-9, max_value=1e9),  # an absolute price
    st.booleans(),
    st.floats(min_value=1e-6, max_value=1e8),  # notional, quote units
)


@settings(max_examples=400, deadline=None)
@given(prices_and_notionals)
def test_every_product_gives_a_valid_limit_order_or_a_reason(case):
    p, side, factor, absolute, relative, notional = case
    price = p.price * factor if relative else absolute
    result = prepare_limit(p, side, price, notional=notional)
    best = _best_limit_size(p, price, notional, side)
    if isinstance(result, PreparedOrder):
        _assert_valid(p, result)
        assert Fraction(result.size) == best  # the most risk allowed, not less
        assert result.size * result.limit_price <= Fraction(repr(notional))
        tick = p.price_increment
        if side == Side.BUY:
            assert D(repr(price)) - tick < result.limit_price <= D(repr(price))
        else:
            assert D(repr(price)) <= result.limit_price < D(repr(price)) + tick
    else:
        assert result.startswith(p.product_id) and len(result) > len(p.product_id) + 5
        # refused only when no valid size exists at that price
        feasible = (p.status == "online" and not p.trading_disabled and best is not None
                    and p.base_min_size <= best <= p.base_max_size and best > 0)
        if feasible:
            rounded = Fraction(quantize_price(p, price, side))
            assert best * rounded < Fraction(p.quote_min_size), result


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(recorded_products()), st.sampled_from([Side.BUY, Side.SELL]),
       st.floats(min_value=1e-6, max_value=1e8), st.booleans())
def test_every_product_gives_a_valid_market_order_or_a_reason(p, side, amount, by_quote):
    if by_quote:
        result = prepare_market(p, side, quote_size=amount)
    else:
        result = prepare_market(p, side, size=amount, reference_price=p.price)
    if isinstance(result, PreparedOrder):
        _assert_valid(p, result)
        assert not p.limit_only
        if result.size is not None:
            assert result.size * D(repr(p.price)) >= p.quote_min_size
    else:
        assert result.startswith(p.product_id)


def test_each_recorded_product_at_its_own_price():
    """Not sampled: every one of the 920 products, both sides, a small and a large notional."""
    for p in recorded_products():
        for side in (Side.BUY, Side.SELL):
            for notional in (float(p.quote_min_size) * 3, 50_000.0):
                result = prepare_limit(p, side, p.price, notional=notional)
                if p.status != "online":
                    assert isinstance(result, str) and "not online" in result
                elif isinstance(result, PreparedOrder):
                    _assert_valid(p, result)
                else:
                    assert "maximum" in result or "minimum" in result, result


def test_absurdly_large_amounts_are_refused_not_raised():
    btc = product("BTC-USD")
    assert "too large" in prepare_limit(btc, Side.BUY, 1e300, size=1)
    assert "too large" in prepare_limit(btc, Side.BUY, 65000, notional=1e300)
    assert "too large" in prepare_market(btc, Side.BUY, quote_size=1e300)
    assert "above the maximum" in prepare_market(btc, Side.SELL, size=1e40)
    assert "not a multiple" in check_order(btc, Side.SELL, "market", size=D("1E+100"),
                                           quote_size=None, price=None, post_only=False)
