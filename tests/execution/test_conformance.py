"""One behaviour through the execution port, whatever the mode: paper, shadow, and live
against the simulator, each driven by the real trading core, registry and risk manager."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import eventually
from tests.live_desk import ASK, BID, PRODUCT, Desk, intent, live_rig
from trader.coinbase import orders
from trader.config import PaperConfig
from trader.execution.paper import PaperExecution
from trader.execution.shadow import ShadowExecution
from trader.types import OrderStatus, OrderType, Side, Trade

MODES = ["paper", "shadow", "live"]


class Venue:
    """Where a mode's orders end up: the paper book, or the simulator's."""

    def __init__(self, desk: Desk, rig: Any = None) -> None:
        self.desk = desk
        self.rig = rig

    async def orders(self) -> list[str]:
        """Client order ids of the orders the venue created."""
        if self.rig is None:
            return list(self.desk.execution.orders)
        return [o["client_order_id"] for o in await self.rig.sim_orders()]


@contextlib.asynccontextmanager
async def venue(mode: str, tmp_path: Any) -> AsyncIterator[Venue]:
    desk = Desk()
    if mode != "live":
        kind = PaperExecution if mode == "paper" else ShadowExecution
        desk.attach(kind(PaperConfig(), desk.quotes, desk.clock))
        yield Venue(desk)
        return
    async with live_rig(tmp_path) as rig:
        await rig.start(desk)
        yield Venue(desk, rig)


@pytest.fixture(params=MODES)
async def place(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Venue]:
    async with venue(request.param, tmp_path) as v:
        yield v


async def test_an_entry_is_submitted_and_reported_open(place):
    desk = place.desk
    desk.enter()
    await eventually(lambda: desk.registry.orders()
                     and desk.only_order().status is OrderStatus.OPEN, timeout_s=5)
    order = desk.only_order()
    assert order.order_id and order.side is Side.BUY and order.limit_price == Decimal("99.99")
    assert await place.orders() == [order.client_order_id]


async def test_a_cancel_is_reported_cancelled(place):
    desk = place.desk
    desk.enter()
    await eventually(lambda: desk.registry.orders()
                     and desk.only_order().status is OrderStatus.OPEN, timeout_s=5)
    desk.trading.cancel_all()
    cid = desk.only_order().client_order_id
    await eventually(lambda: desk.status(cid) is OrderStatus.CANCELLED, timeout_s=5)
    assert desk.registry.open_orders() == [] and desk.fills == []


async def test_a_market_ioc_buy_fills_and_the_position_is_the_fill(place):
    desk = place.desk
    buy = intent(OrderType.MARKET, Side.BUY, size="0.5")
    desk.send(buy)
    await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.FILLED
                     and desk.filled() == Decimal("0.5"), timeout_s=5)
    (fill,) = desk.fills
    position = desk.registry.position(PRODUCT)
    assert (position.size, position.average_entry_price) == (fill.size, fill.price)
    assert fill.price >= Decimal(str(ASK)) and fill.client_order_id == buy.client_order_id
    assert position.strategy == "s"


async def test_a_repeated_submit_of_the_same_intent_creates_nothing_new(place):
    desk = place.desk
    buy = intent(OrderType.MARKET, Side.BUY, size="0.5")
    desk.send(buy)
    await eventually(lambda: desk.filled() == Decimal("0.5"), timeout_s=5)
    desk.execution.submit(buy)  # a replayed decision reaching the port again
    marker = intent(OrderType.LIMIT, Side.SELL, size="0.5", price=str(BID), post_only=True)
    desk.send(marker)  # handled after the repeat: once it is answered, the repeat was too
    await eventually(lambda: desk.status(marker.client_order_id) is OrderStatus.REJECTED,
                     timeout_s=5)
    assert len(desk.fills) == 1 and desk.registry.position(PRODUCT).size == Decimal("0.5")
    assert await place.orders() == [buy.client_order_id]


async def test_a_post_only_order_that_would_cross_is_rejected(place):
    desk = place.desk
    crossing = intent(OrderType.LIMIT, Side.BUY, size="0.5", price=str(ASK), post_only=True)
    desk.send(crossing)
    await eventually(lambda: desk.status(crossing.client_order_id) is OrderStatus.REJECTED,
                     timeout_s=5)
    order = desk.registry.order(crossing.client_order_id)
    assert order.reject_reason.startswith("INVALID_LIMIT_PRICE_POST_ONLY")
    assert await place.orders() in ([], [crossing.client_order_id])  # paper keeps none
    assert desk.fills == [] and desk.registry.position(PRODUCT) is None


# ---- shadow only: what live would have sent ----------------------------------------------

async def test_shadow_logs_lives_exact_request_bodies_and_fills_like_paper(caplog):
    caplog.set_level(logging.INFO, logger="trader.execution.shadow")
    desk = Desk()
    desk.attach(ShadowExecution(PaperConfig(), desk.quotes, desk.clock))
    desk.enter()
    await eventually(lambda: desk.registry.orders()
                     and desk.only_order().status is OrderStatus.OPEN, timeout_s=5)
    order = desk.only_order()
    desk.trading.cancel_all()
    await eventually(lambda: desk.status(order.client_order_id) is OrderStatus.CANCELLED,
                     timeout_s=5)
    logged = [r.getMessage().split(" ", 3) for r in caplog.records]
    assert [(m[1], m[2]) for m in logged] == [("POST", "/orders"),
                                              ("POST", "/orders/batch_cancel")]
    sent = desk.registry._intents[order.client_order_id]
    assert json.loads(logged[0][3]) == orders.create_order_body(sent)
    assert json.loads(logged[1][3]) == orders.cancel_body([order.order_id])
    assert json.loads(logged[0][3])["order_configuration"] == {"limit_limit_gtc": {
        "base_size": str(sent.size), "limit_price": "99.99", "post_only": True}}
    desk.enter(bar=1)
    await eventually(lambda: [o.status for o in desk.registry.open_orders()] == [
        OrderStatus.OPEN], timeout_s=5)
    desk.execution.on_trades([Trade(PRODUCT, 1, 99.0, 5.0, Side.SELL, desk.clock())])
    await eventually(lambda: desk.registry.position(PRODUCT) is not None, timeout_s=5)
    assert desk.execution.counters["would_create"] == 2
