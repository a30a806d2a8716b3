"""The simulator's private side speaks Coinbase: checked with raw aiohttp and the SDK's JWTs.

The market is a hand-made tape (prices on the 0.01 tick, prints of size 1) replayed on a clock
the tests move, so every fill is known in advance.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import numpy as np
import pytest
from coinbase import jwt_generator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import eventually, start_simulator
from trader.kernels.series import CandleArrays
from trader.simulator.exchange import ExchangeConfig
from trader.simulator.order_faults import OrderFaults
from trader.simulator.orders_api import PrivateConfig
from trader.simulator.run import aimed_at
from trader.simulator.server import Simulator
from trader.simulator.tape import tape_from_candles

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "coinbase_samples"
PREFIX = "/api/v3/brokerage"
START_S = 1522886400
KEY_NAME = "organizations/sim-test/apiKeys/0b8c6f2e"
# Each minute's prints (tape.py): open, then low/high (high/low for a bar closing down), close;
# at +3, +18, +33 and +54 s, size 1 each. Minute 1 prints 100, 100, 99, 99; minute 3 98, 98, 101.
BARS = [(100, 100, 100, 100), (100, 100, 99, 99), (99, 99, 98, 98), (98, 101, 98, 101),
        *[(101, 101, 101, 101)] * 6]
MAKER, TAKER = Decimal("0.005"), Decimal("0.009")


def pem(which: str = "ours") -> str:
    """A throwaway P-256 key: "ours" is the one the simulator knows."""
    return _pem(which)


@cache
def _pem(which: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def public_key(which: str = "ours") -> Any:
    return serialization.load_pem_private_key(pem(which).encode(), None).public_key()


def candles() -> CandleArrays:
    o, h, lo, c = (np.array(column, dtype=float) for column in zip(*BARS, strict=True))
    times = START_S + 60 * np.arange(len(BARS), dtype=np.int64)
    return CandleArrays(times, o, h, lo, c, np.full(len(BARS), 4.0))


class FakeClock:
    """The simulator's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


@dataclass
class Api:
    """A raw aiohttp client signing each request with coinbase-advanced-py's jwt_generator."""

    session: aiohttp.ClientSession
    url: str

    def token(self, method: str, path: str, key: str = "ours", name: str = KEY_NAME) -> str:
        host = self.url.removeprefix("http://")
        return jwt_generator.build_rest_jwt(f"{method} {host}{path}", name, pem(key))

    async def call(self, method: str, path: str, body: Any = None, params: Any = None,
                   token: str | None = None, timeout_s: float = 10) -> tuple[int, Any]:
        path = PREFIX + path
        headers = {"Authorization": f"Bearer {token or self.token(method, path)}"}
        async with self.session.request(method, self.url + path, json=body, params=params,
                                        headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            text = await r.text()
            return r.status, json.loads(text) if r.content_type == "application/json" else text

    async def order(self, client_id: str, side: str, kind: str, product: str = "BTC-USD",
                    **config: Any) -> tuple[int, Any]:
        body = {"client_order_id": client_id, "product_id": product, "side": side,
                "order_configuration": {kind: config}}
        return await self.call("POST", "/orders", body)

    async def limit(self, client_id: str, side: str, size: str, price: str,
                    post_only: bool = True) -> dict[str, Any]:
        return (await self.order(client_id, side, "limit_limit_gtc", base_size=size,
                                 limit_price=price, post_only=post_only))[1]

    async def get_order(self, order_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/orders/historical/{order_id}")
        assert status == 200
        return body["order"]

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        status, body = await self.call("GET", "/accounts")
        assert status == 200
        return {a["currency"]: (Decimal(a["available_balance"]["value"]),
                                Decimal(a["hold"]["value"])) for a in body["accounts"]}

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as response:
            assert response.status == 200
            return await response.json()


@dataclass
class Rig:
    sim: Simulator
    clock: FakeClock
    api: Api

    async def replay_until(self, offset_s: int) -> None:
        """Move exchange time to START_S + offset_s and wait until that second is replayed."""
        self.clock.ns = offset_s * 1_000_000_000
        await eventually(lambda: self.sim._next_second > START_S + offset_s, timeout_s=5)


async def started(faults: OrderFaults | None = None) -> tuple[Simulator, FakeClock, str]:
    clock, bars = FakeClock(), candles()
    private = PrivateConfig(exchange=ExchangeConfig(balances={"USD": "10000", "BTC": "2"}),
                            faults=faults or OrderFaults(), keys={KEY_NAME: public_key()})
    sim = Simulator({"BTC-USD": tape_from_candles("BTC-USD", bars)}, {"BTC-USD": bars},
                    START_S, speed=1.0, monotonic_ns=clock, private=private)
    return sim, clock, await sim.start()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim, clock, url = await started()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(sim, clock, Api(session, url))
    finally:
        await sim.close()


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def shape(value: Any) -> Any:
    """The field names of a JSON value, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


async def sim_orders(rig: Rig) -> list[dict[str, Any]]:
    return (await rig.api.control("GET", "/_sim/orders"))["orders"]


# ---- orders: round trip, idempotency, rejections ---------------------------------------------

async def test_create_get_list_cancel_round_trip(rig):
    api = rig.api
    created = await api.limit("c-1", "BUY", "0.5", "99.50")
    assert shape(created) == shape(sample("rest_create_order_response_success.json"))
    assert created["success"] and created["success_response"]["client_order_id"] == "c-1"
    order_id = created["success_response"]["order_id"]
    order = await api.get_order(order_id)
    assert set(order) == set(sample("rest_get_order_response.json")["order"])
    assert (order["status"], order["order_type"], order["time_in_force"]) == (
        "OPEN", "LIMIT", "GOOD_UNTIL_CANCELLED")
    assert order["order_configuration"] == {"limit_limit_gtc": {
        "base_size": "0.5", "limit_price": "99.50", "post_only": True}}
    assert Decimal(order["outstanding_hold_amount"]) == Decimal("49.75") * (1 + TAKER)
    status, listed = await api.call("GET", "/orders/historical/batch",
                                    params=[("order_status", "OPEN")])
    assert status == 200 and [o["order_id"] for o in listed["orders"]] == [order_id]
    assert set(listed) == set(sample("rest_list_orders_response.json"))
    status, cancelled = await api.call("POST", "/orders/batch_cancel",
                                       {"order_ids": [order_id, "no-such-order"]})
    assert status == 200
    assert shape(cancelled) == shape(sample("rest_cancel_orders_response.json"))
    assert [(r["success"], r["failure_reason"]) for r in cancelled["results"]] == [
        (True, "UNKNOWN_CANCEL_FAILURE_REASON"), (False, "UNKNOWN_CANCEL_ORDER")]
    assert (await api.get_order(order_id))["status"] == "CANCELLED"
    assert (await api.balances())["USD"] == (Decimal(10000), 0)
    status, body = await api.call("GET", "/orders/historical/nope")
    assert status == 404 and body["error"] == "NOT_FOUND"


@pytest.mark.parametrize("answer", ["existing", "refuse"])
async def test_a_repeated_client_order_id_creates_nothing_and_is_answered_either_way(rig,
                                                                                      answer):
    await rig.api.control("POST", "/_sim/faults", {"duplicate_answer": answer})
    first = await rig.api.limit("same-id", "BUY", "0.5", "99.50")
    again = await rig.api.limit("same-id", "SELL", "1", "120.00")
    if answer == "existing":
        assert again["success"] and again["order_id"] == first["order_id"]
        assert again["order_configuration"] == first["order_configuration"]
    else:
        assert again["success"] is False and again["order_id"] == ""
        refusal = again["error_response"]
        assert refusal["new_order_failure_reason"] == refusal["error"] == (
            "DUPLICATE_CLIENT_ORDER_ID")
        assert shape(again) == shape(sample("rest_error_create_order_post_only.json"))
    assert [o["client_order_id"] for o in await sim_orders(rig)] == ["same-id"]


@pytest.mark.parametrize(("config", "sample_name", "preview"), [
    ({"base_size": "0.000000015", "limit_price": "65000"},
     "rest_error_create_order_size_precision.json", None),
    ({"base_size": "0.5", "limit_price": "100.01", "post_only": True},
     "rest_error_create_order_post_only.json", None),
    ({"base_size": "200", "limit_price": "99.00"},
     "rest_error_create_order_insufficient_fund.json", None),
    ({"base_size": "0.5", "limit_price": "99.555"}, None, "PREVIEW_INVALID_PRICE_PRECISION"),
    ({"base_size": "0.001", "limit_price": "99.00"}, None,
     "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"),
    ({"base_size": "3401", "limit_price": "99.00"}, None,
     "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE"),
])
async def test_rejections_are_http_200_with_coinbases_error_shape(rig, config, sample_name,
                                                                   preview):
    status, body = await rig.api.order("r-1", "BUY", "limit_limit_gtc", **config)
    assert status == 200 and body["success"] is False and body["order_id"] == ""
    assert body["order_configuration"] == {"limit_limit_gtc": config}
    if sample_name:
        expected = sample(sample_name)
        assert set(body) == set(expected)
        assert body["error_response"] == expected["error_response"]
    else:
        assert body["error_response"]["preview_failure_reason"] == preview
    assert await sim_orders(rig) == []


async def test_more_rejections_unsupported_market_and_sell_side(rig):
    api = rig.api
    _, body = await api.order("m-1", "BUY", "market_market_ioc", quote_size="10.001")
    assert body["error_response"]["preview_failure_reason"] == (
        "PREVIEW_INVALID_QUOTE_SIZE_PRECISION")
    _, body = await api.order("m-2", "SELL", "market_market_ioc", base_size="3")
    assert body["error_response"]["error"] == "INSUFFICIENT_FUND"
    _, body = await api.order("m-3", "SELL", "limit_limit_gtc", base_size="1",
                              limit_price="99.99", post_only=True)
    assert body["error_response"]["error"] == "INVALID_LIMIT_PRICE_POST_ONLY"
    _, body = await api.order("m-4", "BUY", "limit_limit_fok", base_size="1",
                              limit_price="99.99")
    assert body["error_response"]["error"] == "UNSUPPORTED_ORDER_CONFIGURATION"
    _, body = await api.order("m-5", "BUY", "limit_limit_gtc", product="NOPE-USD",
                              base_size="1", limit_price="1.00")
    assert body["error_response"]["error"] == "INVALID_PRODUCT_ID"
    status, body = await api.call("POST", "/orders", {"client_order_id": "m-6",
                                                      "product_id": "BTC-USD", "side": "BUY",
                                                      "max_floor": "1",
                                                      "order_configuration": {}})
    assert status == 400 and body["error"] == "unknown" and "max_floor" in body["message"]
    assert await sim_orders(rig) == []


# ---- matching, fees, balances ----------------------------------------------------------------

async def test_a_resting_limit_fills_at_its_price_when_prints_cross_it_partly_then_fully(rig):
    api = rig.api
    order_id = (await api.limit("buy-1", "BUY", "1.5", "99.50"))["order_id"]
    assert (await api.balances())["USD"] == (Decimal(10000) - Decimal("150.59325"),
                                             Decimal("150.59325"))
    await rig.replay_until(90)  # minute 1 has printed 100, 100: above the bid
    assert (await api.get_order(order_id))["filled_size"] == "0"
    await rig.replay_until(100)  # 99 x 1 at +93 s
    order = await api.get_order(order_id)
    assert (order["status"], order["filled_size"], order["number_of_fills"],
            order["average_filled_price"], order["total_fees"]) == (
        "OPEN", "1", "1", "99.5", "0.4975")
    assert Decimal(order["outstanding_hold_amount"]) == Decimal("49.75") * (1 + TAKER)
    await rig.replay_until(120)  # 99 x 1 at +114 s: the last 0.5
    order = await api.get_order(order_id)
    assert (order["status"], order["filled_size"], order["completion_percentage"]) == (
        "FILLED", "1.5", "100")
    assert order["outstanding_hold_amount"] == "0"
    _, body = await api.call("GET", "/orders/historical/fills", params={"order_ids": order_id})
    fills = body["fills"]
    assert set(fills[0]) == set(sample("rest_list_fills_response.json")["fills"][0])
    assert [(f["price"], f["size"], f["liquidity_indicator"]) for f in fills] == [
        ("99.5", "0.5", "MAKER"), ("99.5", "1", "MAKER")]  # newest first
    assert len({f["trade_id"] for f in fills}) == 2
    cost = Decimal("1.5") * Decimal("99.5") * (1 + MAKER)
    assert await api.balances() == {"USD": (Decimal(10000) - cost, 0), "BTC": (Decimal("3.5"), 0)}


async def test_orders_share_a_print_by_price_then_time_and_a_sell_fills_on_an_uptick(rig):
    api = rig.api
    low = (await api.limit("low", "BUY", "1", "99.00"))["order_id"]
    high = (await api.limit("high", "BUY", "1", "99.50"))["order_id"]
    sell = (await api.limit("sell", "SELL", "2", "101.00"))["order_id"]
    assert (await api.balances())["BTC"] == (0, 2)
    await rig.replay_until(100)  # one print of 99 x 1: the higher bid takes it all
    assert [(await api.get_order(i))["filled_size"] for i in (high, low)] == ["1", "0"]
    await rig.replay_until(240)  # 99 at +114 s, then minute 3 prints 101 at +213 and +234
    assert [(await api.get_order(i))["status"] for i in (high, low, sell)] == ["FILLED"] * 3
    usd, _ = (await api.balances())["USD"]
    assert usd == 10000 - Decimal("198.5") * (1 + MAKER) + 202 * (1 - MAKER)


async def test_market_and_marketable_orders_take_at_the_touch_with_the_taker_fee(rig):
    api = rig.api  # last print 100: bid 99.99, ask 100.01
    _, buy = await api.order("mkt-buy", "BUY", "market_market_ioc", base_size="0.5")
    order = await api.get_order(buy["order_id"])
    assert (order["status"], order["average_filled_price"], order["order_type"]) == (
        "FILLED", "100.01", "MARKET")
    assert Decimal(order["total_fees"]) == Decimal("50.005") * TAKER
    _, sell = await api.order("mkt-sell", "SELL", "market_market_ioc", base_size="0.5")
    assert (await api.get_order(sell["order_id"]))["average_filled_price"] == "99.99"
    _, spend = await api.order("by-quote", "BUY", "market_market_ioc", quote_size="50")
    order = await api.get_order(spend["order_id"])
    paid = Decimal(order["filled_value"]) + Decimal(order["total_fees"])
    assert Decimal(50) - Decimal("0.00000002") * 100 < paid <= 50
    assert order["size_in_quote"] and order["size_inclusive_of_fees"]
    through = await api.limit("through", "BUY", "0.1", "100.50", post_only=False)
    order = await api.get_order(through["order_id"])
    assert (order["status"], order["average_filled_price"]) == ("FILLED", "100.01")
    _, ioc = await api.order("ioc", "BUY", "sor_limit_ioc", base_size="0.1", limit_price="99.00")
    order = await api.get_order(ioc["order_id"])
    assert (order["status"], order["filled_size"], order["time_in_force"]) == (
        "CANCELLED", "0", "IMMEDIATE_OR_CANCEL")
    _, body = await api.call("GET", "/orders/historical/fills")
    assert {f["liquidity_indicator"] for f in body["fills"]} == {"TAKER"}
    assert (await api.balances())["USD"][1] == 0  # no hold left behind


async def test_fills_orders_and_accounts_paginate_with_cursors(rig):
    api = rig.api
    for i in range(5):
        await api.order(f"p-{i}", "BUY", "market_market_ioc", base_size="0.01")
    seen, cursor = [], ""
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body = await api.call("GET", "/orders/historical/fills", params=params)
        assert status == 200 and len(body["fills"]) <= 2
        seen += [f["trade_id"] for f in body["fills"]]
        cursor = body["cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    _, page = await api.call("GET", "/orders/historical/batch", params={"limit": "3"})
    assert page["has_next"] and [o["client_order_id"] for o in page["orders"]] == [
        "p-4", "p-3", "p-2"]
    await api.order("p-new", "BUY", "market_market_ioc", base_size="0.01")  # does not shift
    _, rest = await api.call("GET", "/orders/historical/batch",
                             params={"limit": "3", "cursor": page["cursor"]})
    assert not rest["has_next"] and [o["client_order_id"] for o in rest["orders"]] == [
        "p-1", "p-0"]
    _, accounts = await api.call("GET", "/accounts", params={"limit": "1"})
    assert accounts["has_next"] and accounts["size"] == 1
    assert shape(accounts["accounts"][0]) == shape(
        sample("rest_list_accounts_response.json")["accounts"][0])
    _, more = await api.call("GET", "/accounts", params={"limit": "1",
                                                         "cursor": accounts["cursor"]})
    assert not more["has_next"]
    assert {accounts["accounts"][0]["currency"], more["accounts"][0]["currency"]} == {
        "BTC", "USD"}


# ---- auth ------------------------------------------------------------------------------------

async def test_private_requests_without_a_valid_jwt_get_401_unauthorized(rig):
    api, path = rig.api, PREFIX + "/accounts"
    with mock.patch.object(jwt_generator.time, "time", return_value=time.time() - 600):
        expired = api.token("GET", path)
    tokens = {"bad signature": api.token("GET", path, key="theirs"),
              "expired": expired,
              "wrong uri": api.token("GET", PREFIX + "/orders/historical/batch"),
              "wrong method": api.token("POST", path),
              "unknown key": api.token("GET", path, name="organizations/x/apiKeys/y"),
              "garbage": "not-a-jwt"}
    for reason, token in tokens.items():
        assert await api.call("GET", "/accounts", token=token) == (401, "Unauthorized"), reason
    async with api.session.get(api.url + path) as response:
        assert (response.status, await response.text()) == (401, "Unauthorized")
    assert (await api.call("GET", "/accounts"))[0] == 200


# ---- the user channel ------------------------------------------------------------------------

async def user_ws(rig: Rig, token: str | None = "good", channel: str = "user",
                  products: tuple[str, ...] = ()) -> aiohttp.ClientWebSocketResponse:
    ws = await rig.api.session.ws_connect(rig.api.url.replace("http", "ws") + "/ws/user")
    request: dict[str, Any] = {"type": "subscribe", "channel": channel,
                               "product_ids": list(products)}
    if token == "good":
        request["jwt"] = jwt_generator.build_ws_jwt(KEY_NAME, pem())
    elif token is not None:
        request["jwt"] = token
    await ws.send_str(json.dumps(request))
    return ws


async def next_frame(ws: aiohttp.ClientWebSocketResponse, channel: str | None = "user") -> dict:
    """The next frame of `channel` (None: of any channel)."""
    while True:
        frame = json.loads((await ws.receive(timeout=5)).data)
        if channel is None or frame.get("channel") == channel:
            return frame


async def test_user_channel_refuses_a_missing_or_bad_jwt(rig):
    bad = jwt_generator.build_ws_jwt(KEY_NAME, pem("theirs"))
    for token in (None, bad):
        ws = await user_ws(rig, token)
        assert json.loads((await ws.receive(timeout=5)).data) == sample(
            "ws_error_authentication_failure.json")
        await ws.close()


async def test_user_channel_snapshots_open_orders_by_50_then_updates_cumulatively(rig):
    api = rig.api
    for i in range(51):
        await api.limit(f"rest-{i}", "BUY", "0.02", "90.00")
    ws = await user_ws(rig)
    frames = [await next_frame(ws, None) for _ in range(3)]
    assert [f["channel"] for f in frames] == ["user", "user", "subscriptions"]
    assert [len(f["events"][0]["orders"]) for f in frames[:2]] == [50, 1]
    snapshot = frames[0]["events"][0]
    assert snapshot["type"] == "snapshot"
    assert set(snapshot["orders"][0]) == set(sample("ws_user_snapshot.json")["events"][0]
                                            ["orders"][0])
    order_id = (await api.limit("watched", "BUY", "1.5", "99.50"))["order_id"]
    await rig.replay_until(120)
    updates = [(await next_frame(ws))["events"][0] for _ in range(3)]
    orders = [u["orders"][0] for u in updates]
    assert {u["type"] for u in updates} == {"update"} and {o["order_id"] for o in orders} == {
        order_id}
    assert [(o["status"], o["cumulative_quantity"], o["leaves_quantity"], o["number_of_fills"],
             o["total_fees"], o["filled_value"], o["avg_price"]) for o in orders] == [
        ("OPEN", "0", "1.5", "0", "0", "0", "0"),
        ("OPEN", "1", "0.5", "1", "0.4975", "99.5", "99.5"),
        ("FILLED", "1.5", "0", "2", "0.74625", "149.25", "99.5")]
    await api.call("POST", "/orders/batch_cancel",
                   {"order_ids": [(await sim_orders(rig))[0]["order_id"]]})
    statuses = [(await next_frame(ws))["events"][0]["orders"][0]["status"] for _ in range(2)]
    assert statuses == ["CANCEL_QUEUED", "CANCELLED"]
    await ws.close()


async def test_user_frames_are_numbered_per_connection_with_heartbeats_when_asked(rig):
    ws = await user_ws(rig, products=("BTC-USD",))
    await ws.send_str(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
    frames = [await next_frame(ws, None) for _ in range(3)]  # snapshot, ack, ack
    assert frames[2]["events"][0]["subscriptions"] == {"user": ["BTC-USD"],
                                                       "heartbeats": ["heartbeats"]}
    await rig.api.limit("hb", "BUY", "0.1", "99.50")
    await rig.replay_until(5)
    frames += [await next_frame(ws, None) for _ in range(6)]
    assert [f["sequence_num"] for f in frames] == list(range(9))
    assert [f["channel"] for f in frames[3:]] == ["user"] + ["heartbeats"] * 5
    counters = [f["events"][0]["heartbeat_counter"] for f in frames[4:]]
    assert counters == list(range(counters[0], counters[0] + 5))
    await ws.close()


# ---- faults ----------------------------------------------------------------------------------

async def test_armed_429_and_5xx_answer_the_next_private_requests(rig):
    api = rig.api
    await api.control("POST", "/_sim/faults", {"arm": {"rate_limit": 1, "server_error": 1}})
    path = PREFIX + "/accounts"
    async with api.session.get(api.url + path, headers={
            "Authorization": f"Bearer {api.token('GET', path)}"}) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert await response.json() == sample("rest_error_rate_limited.json")
    status, body = await api.call("GET", "/accounts")
    assert status in (500, 502, 503) and body["error"] == "INTERNAL"
    assert (await api.call("GET", "/accounts"))[0] == 200
    state = await api.control("GET", "/_sim/faults")
    assert state["fired"] == {"rate_limit": 1, "server_error": 1} and state["armed"] == {}
    async with api.session.post(api.url + "/_sim/faults", json={"arm": {"typo": 1}}) as r:
        assert r.status == 400


@pytest.mark.parametrize("mode", ["accept_delay", "accept_drop"])
async def test_an_accepted_order_whose_answer_is_lost_is_not_duplicated_by_a_retry(rig, mode):
    api = rig.api
    await api.control("POST", "/_sim/faults", {"arm": {mode: 1}})
    lost = {"client_order_id": "lost", "product_id": "BTC-USD", "side": "BUY",
            "order_configuration": {"limit_limit_gtc": {"base_size": "0.1",
                                                        "limit_price": "99.50"}}}
    with pytest.raises(TimeoutError if mode == "accept_delay"
                       else aiohttp.ServerDisconnectedError):
        await api.call("POST", "/orders", lost, timeout_s=0.5)
    [created] = await sim_orders(rig)
    retried = await api.limit("lost", "BUY", "0.1", "99.50")
    assert retried["success"] and retried["order_id"] == created["order_id"]
    assert len(await sim_orders(rig)) == 1


async def test_an_order_whose_answer_was_lost_can_stay_pending_and_out_of_sight(rig):
    api = rig.api
    ws = await user_ws(rig)
    assert (await next_frame(ws))["events"][0]["orders"] == []
    await api.control("POST", "/_sim/faults", {"lost_hidden_s": 0.5,
                                                "arm": {"accept_drop": 1}})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.limit("hidden", "BUY", "0.1", "99.50")
    [created] = await sim_orders(rig)  # the control sees the truth
    order_id = created["order_id"]
    assert created["status"] == "PENDING" and created["outstanding_hold_amount"] != "0"
    status, listed = await api.call("GET", "/orders/historical/batch")
    assert status == 200 and listed["orders"] == []
    assert (await api.call("GET", f"/orders/historical/{order_id}"))[0] == 404
    status, cancelled = await api.call("POST", "/orders/batch_cancel",
                                       {"order_ids": [order_id]})
    assert cancelled["results"][0]["failure_reason"] == "UNKNOWN_CANCEL_ORDER"
    frame = await next_frame(ws)  # the first update is the order going live
    assert [(o["order_id"], o["status"]) for o in frame["events"][0]["orders"]] == [
        (order_id, "OPEN")]
    assert (await api.get_order(order_id))["status"] == "OPEN"
    await ws.close()


async def test_a_closed_orders_client_id_can_be_forgotten_and_then_makes_a_new_order(rig):
    api = rig.api
    await api.control("POST", "/_sim/faults", {"id_retention_s": 0.3})
    market = {"base_size": "0.1"}
    status, first = await api.order("kept-a-while", "BUY", "market_market_ioc", **market)
    assert status == 200 and first["success"]
    again = (await api.order("kept-a-while", "BUY", "market_market_ioc", **market))[1]
    assert again["order_id"] == first["order_id"]  # closed, but not long ago
    resting = await api.limit("resting", "BUY", "0.1", "99.50")
    await asyncio.sleep(0.35)  # the retention passes
    later = (await api.order("kept-a-while", "BUY", "market_market_ioc", **market))[1]
    assert later["success"] and later["order_id"] != first["order_id"]
    assert (await api.limit("resting", "BUY", "0.1", "99.50"))["order_id"] == (
        resting["order_id"])  # an open order keeps its id
    assert [o["client_order_id"] for o in await sim_orders(rig)] == [
        "kept-a-while", "resting", "kept-a-while"]


async def test_a_dropped_user_connection_loses_the_update_and_a_new_one_resnapshots(rig):
    api = rig.api
    ws = await user_ws(rig)
    assert (await next_frame(ws))["events"][0]["orders"] == []
    await api.control("POST", "/_sim/faults", {"arm": {"user_drop": 1}})
    order_id = (await api.limit("dropped", "BUY", "0.1", "99.50"))["order_id"]
    message = await ws.receive(timeout=5)
    while message.type == aiohttp.WSMsgType.TEXT:  # the subscriptions ack may come first
        assert json.loads(message.data)["channel"] == "subscriptions"
        message = await ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR)
    await ws.close()
    ws = await user_ws(rig)
    snapshot = (await next_frame(ws))["events"][0]
    assert [o["order_id"] for o in snapshot["orders"]] == [order_id]
    assert await api.control("POST", "/_sim/drop_user") == {"dropped": 1}
    message = await ws.receive(timeout=5)
    while message.type == aiohttp.WSMsgType.TEXT:
        message = await ws.receive(timeout=5)
    await ws.close()


async def test_fault_rates_are_drawn_from_the_seed_reproducibly():
    async def statuses() -> list[int]:
        sim, _clock, url = await started(OrderFaults(seed=11, rate_limit_rate=0.2,
                                                     server_error_rate=0.2))
        try:
            async with aiohttp.ClientSession() as session:
                api = Api(session, url)
                return [(await api.call("GET", "/accounts"))[0] for _ in range(30)]
        finally:
            await sim.close()

    first = await statuses()
    assert first == await statuses()
    assert 200 in first and 429 in first and {500, 502, 503} & set(first)


# ---- `trader sim` ----------------------------------------------------------------------------

async def test_trader_sim_takes_a_key_file_and_balances_and_aims_configs_at_the_user_ws(
        tmp_path):
    key_file = tmp_path / "key.json"
    proc, url = start_simulator("--key-file", str(key_file), "--balance", "USD=500",
                                "--balance", "ETH=1.5", "--taker-fee-bps", "60",
                                "--duplicate-answer", "refuse", "--lost-hidden", "8",
                                "--id-retention", "2.5")
    try:
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        async with aiohttp.ClientSession() as session:
            api = Api(session, url)
            faults = (await api.control("GET", "/_sim/faults"))["faults"]
            assert (faults["duplicate_answer"], faults["lost_hidden_s"],
                    faults["id_retention_s"]) == ("refuse", 8.0, 2.5)
            async with session.post(url + "/_sim/faults",
                                    json={"duplicate_answer": "maybe"}) as refused:
                assert refused.status == 400
        key = json.loads(key_file.read_text())
        path = PREFIX + "/accounts"
        token = jwt_generator.build_rest_jwt(f"GET {url.removeprefix('http://')}{path}",
                                             key["name"], key["privateKey"])
        async with aiohttp.ClientSession() as session:
            async with session.get(url + path, headers={"Authorization": f"Bearer {token}"}) \
                    as response:
                accounts = (await response.json())["accounts"]
            balances = {a["currency"]: a["available_balance"]["value"] for a in accounts}
            assert balances["USD"] == "500" and balances["ETH"] == "1.5"
            ws_url = url.replace("http", "ws") + "/ws/user"
            assert f'user_ws_url = "{ws_url}"' in aimed_at(
                'user_ws_url = "wss://advanced-trade-ws-user.coinbase.com"', url)
            async with session.ws_connect(ws_url) as ws:
                await ws.send_str(json.dumps({"type": "subscribe", "channel": "user",
                                              "jwt": jwt_generator.build_ws_jwt(
                                                  key["name"], key["privateKey"])}))
                assert json.loads((await ws.receive(timeout=10)).data)["channel"] == "user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
