"""The order wire format against Coinbase's documented samples (shared/coinbase/samples)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.recordings import SAMPLES
from trader.coinbase import orders
from trader.errors import FrameError
from trader.money import to_wire
from trader.types import (
    Liquidity,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)


def sample(name: str):
    return json.loads((SAMPLES / name).read_text())


def intent(**changes) -> OrderIntent:
    fields = dict(strategy="s", product_id="BTC-USD", side=Side.BUY, kind=OrderKind.ENTRY,
                  order_type=OrderType.LIMIT, size=Decimal("0.0015"), quote_size=None,
                  limit_price=Decimal("65000"), post_only=True, time_in_force=TimeInForce.GTC,
                  bar_time_ns=0, attempt=0, client_order_id="trader-20260809-000042", reason="")
    return OrderIntent(**{**fields, **changes})


def test_request_bodies_equal_the_documented_ones():
    documented = sample("rest_create_order_requests.json")
    assert orders.create_order_body(intent()) == documented["limit_limit_gtc_post_only"]
    market_buy = intent(order_type=OrderType.MARKET, size=None, quote_size=Decimal("25.00"),
                        limit_price=None, post_only=False, time_in_force=TimeInForce.IOC,
                        client_order_id="trader-20260809-000044")
    expected = documented["market_market_ioc_buy_by_quote"]
    expected["order_configuration"]["market_market_ioc"]["quote_size"] = "25"  # same number
    assert orders.create_order_body(market_buy) == expected
    sell = documented["market_market_ioc_sell_by_base"]
    market_sell = intent(order_type=OrderType.MARKET, side=Side.SELL, kind=OrderKind.EXIT,
                         size=Decimal(sell["order_configuration"]["market_market_ioc"]
                                      ["base_size"]), product_id=sell["product_id"],
                         limit_price=None, time_in_force=TimeInForce.IOC,
                         client_order_id=sell["client_order_id"])
    assert orders.create_order_body(market_sell) == sell
    ioc = documented["sor_limit_ioc"]
    config = ioc["order_configuration"]["sor_limit_ioc"]
    limit_ioc = intent(side=Side(ioc["side"]), product_id=ioc["product_id"],
                       size=Decimal(config["base_size"]),
                       limit_price=Decimal(config["limit_price"]), post_only=False,
                       time_in_force=TimeInForce.IOC, client_order_id=ioc["client_order_id"])
    assert orders.create_order_body(limit_ioc)["order_configuration"]["sor_limit_ioc"] == {
        key: to_wire(Decimal(value)) for key, value in config.items()}


def test_sizes_go_out_without_exponents():
    body = orders.create_order_body(intent(size=Decimal("1E-8"), limit_price=Decimal("7E+4")))
    config = body["order_configuration"]["limit_limit_gtc"]
    assert (config["base_size"], config["limit_price"]) == ("0.00000001", "70000")


def test_create_responses_accepted_and_refused():
    ok = orders.parse_create_response(sample("rest_create_order_response_success.json"), "x")
    assert ok == orders.CreateResult(True, "5b8f3c2e-1a4d-4e6f-9b7a-2c3d4e5f6a7b",
                                     "trader-20260809-000042", "")
    for name, reason in [("rest_error_create_order_post_only.json",
                          "INVALID_LIMIT_PRICE_POST_ONLY"),
                         ("rest_error_create_order_insufficient_fund.json", "INSUFFICIENT_FUND"),
                         ("rest_error_create_order_size_precision.json",
                          "INVALID_SIZE_PRECISION")]:
        refused = orders.parse_create_response(sample(name), "cid")
        assert not refused.accepted and refused.reason.startswith(reason)
        assert refused.client_order_id == "cid"


def test_an_order_object_becomes_an_update_with_exact_decimals():
    update = orders.parse_order(sample("rest_get_order_response.json")["order"])
    assert update.status == OrderStatus.OPEN and update.side == Side.BUY
    assert update.filled_size == 0 and update.average_filled_price == 0
    assert update.client_order_id == "trader-20260809-000042"
    page, _ = orders.parse_orders_page(sample("rest_list_orders_response.json"))
    filled = page[0]
    assert filled.status == OrderStatus.FILLED
    assert filled.filled_size == Decimal("0.00038069")
    assert filled.average_filled_price == Decimal("65083.67")


def test_fills_carry_trade_ids_fees_and_liquidity():
    fills, cursor = orders.parse_fills(sample("rest_list_fills_response.json"))
    assert cursor == ""
    fill = fills[0]
    assert fill.trade_id == "6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a"
    assert (fill.price, fill.size, fill.fee) == (Decimal("65083.67"), Decimal("0.00038069"),
                                                 Decimal("0.2229903209907"))
    assert fill.liquidity == Liquidity.TAKER and fill.time_ns > 0


def test_user_frames_are_cumulative_updates():
    kind, snapshot = orders.parse_user_frame(sample("ws_user_snapshot.json"))
    assert kind == "snapshot" and snapshot[0].status == OrderStatus.OPEN
    kind, updates = orders.parse_user_frame(sample("ws_user_update.json"))
    (done,) = updates
    assert kind == "update" and done.status == OrderStatus.FILLED
    assert (done.filled_size, done.average_filled_price, done.total_fees) == (
        Decimal("0.0015"), Decimal("65000"), Decimal("0.4875"))


def test_cancels_and_accounts():
    first, second = orders.parse_cancel_results(sample("rest_cancel_orders_response.json"))
    assert first.requested and first.reason == ""
    assert not second.requested and second.reason == "UNKNOWN_CANCEL_ORDER"
    balances, cursor = orders.parse_accounts(sample("rest_list_accounts_response.json"))
    usd = {b.currency: b for b in balances}["USD"]
    assert (usd.available, usd.hold, cursor) == (Decimal("1402.33"), Decimal("98.3775"), "")


@pytest.mark.parametrize("broken", [
    {"success": True},
    {"order_id": "x", "product_id": "BTC-USD", "side": "UP", "filled_size": "0"},
    {"order_id": "x", "product_id": "BTC-USD", "side": "BUY", "filled_size": "lots"},
    {"order_id": "x", "product_id": "BTC-USD", "side": "BUY", "filled_size": "NaN"},
    [],
])
def test_malformed_bodies_raise_frame_errors(broken):
    with pytest.raises(FrameError):
        if isinstance(broken, dict) and "success" in broken:
            orders.parse_create_response(broken, "c")
        else:
            orders.parse_order(broken)
