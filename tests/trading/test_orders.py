"""The trading core with paper execution: entries at the bid, fills through the price,
reprices and fallback, protective exits, the kill switch, balances and fees."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest

from trader.clock import ManualClock
from trader.config import ExecutionConfig, PaperConfig, RiskConfig
from trader.execution.paper import PaperExecution
from trader.trading.orders import Trading
from trader.trading.registry import Registry
from trader.trading.risk import RiskManager
from trader.types import (
    Action,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    Product,
    Quote,
    Side,
    Signal,
    TimeInForce,
    Trade,
    TradingState,
)

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
BTC = Product("BTC-USD", "BTC", "USD", Decimal("0.00000001"), Decimal("0.01"),
              Decimal("0.00000001"), Decimal("3400"), Decimal("1"), "online", False, False,
              False, False, 50_000.0, 1e9)


class Desk:
    """A trading core, registry, risk manager and paper account on the running loop."""

    def __init__(self, risk: RiskConfig | None = None, execution: ExecutionConfig | None = None,
                 paper: PaperConfig | None = None) -> None:
        self.clock = ManualClock(T0)
        self.registry = Registry()
        self.risk = RiskManager(risk or RiskConfig(), self.registry, self.clock)
        self.quotes: dict[str, Quote] = {}
        self.paper = PaperExecution(paper or PaperConfig(), self.quotes, self.clock)
        self.trading = Trading(self.registry, self.risk, self.paper,
                               execution or ExecutionConfig(), self.quotes, self.clock)
        self.trading.set_products([BTC])
        self.products = self.trading.products
        self.paper.bind(self)
        self.updates, self.fills = [], []

    def on_update(self, update) -> None:
        self.updates.append(update)
        self.trading.on_update(update)

    def on_fill(self, fill) -> None:
        self.fills.append(fill)
        self.trading.on_fill(fill)

    def on_error(self, kind, detail) -> None:
        self.trading.on_error(kind, detail)

    def is_open_position(self, product_id: str) -> bool:
        return self.trading.is_open_position(product_id)

    def restore_intent(self, intent) -> None:
        self.trading.restore_intent(intent)

    def quote(self, bid: float, ask: float) -> None:
        self.quotes["BTC-USD"] = Quote("BTC-USD", (bid + ask) / 2, bid, ask, 1.0, 1.0, 0.0, 0.0,
                                       0.0, 0.0, self.clock())

    def trade(self, price: float, size: float = 1.0) -> None:
        self.paper.on_trades([Trade("BTC-USD", 1, price, size, Side.BUY, self.clock())])

    def signal(self, action: Action, stop: float | None = None, bar: int = 0) -> None:
        self.trading.on_signals([Signal("s", "BTC-USD", T0 + bar * 60 * 10**9, 0.5, action,
                                        stop, None, "test")])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_entry_rests_at_the_bid_and_fills_when_a_trade_prints_through_it():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    (order,) = desk.registry.open_orders()
    assert (order.status, order.limit_price, order.side) == (OrderStatus.OPEN,
                                                             Decimal("50000.00"), Side.BUY)
    assert order.size * order.limit_price <= Decimal("100")  # max_position_usd
    desk.trade(50_000.00)  # at the price, not through: no fill
    await settle()
    assert desk.fills == []
    desk.trade(49_999.99, size=1.0)
    await settle()
    position = desk.registry.position("BTC-USD")
    assert position.size == order.size and position.average_entry_price == Decimal("50000")
    fee = desk.fills[0].fee
    assert fee == order.size * Decimal("50000") * Decimal("0.004")  # maker 40 bps
    assert desk.paper.balances["USD"] == Decimal(10_000) - order.size * 50_000 - fee
    assert desk.paper.holds["USD"] == 0


async def test_a_second_entry_for_a_held_or_entering_product_is_refused():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG, bar=0)
    desk.signal(Action.ENTER_LONG, bar=1)  # before any exchange answer
    await settle()
    assert len(desk.registry.orders()) == 1
    desk.trade(49_000.0)
    await settle()
    desk.signal(Action.ENTER_LONG, bar=2)
    await settle()
    assert len(desk.registry.orders()) == 1
    assert desk.risk.counters["denied_held"] == 2


async def test_partial_fills_follow_trade_sizes():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    (order,) = desk.registry.open_orders()
    desk.trade(49_000.0, size=float(order.size) / 4)
    await settle()
    assert desk.registry.order(order.client_order_id).status is OrderStatus.OPEN
    desk.trade(49_000.0, size=1.0)
    await settle()
    assert desk.registry.order(order.client_order_id).status is OrderStatus.FILLED
    assert sum(f.size for f in desk.fills) == order.size


async def test_a_resting_entry_is_repriced_then_falls_back_to_market():
    desk = Desk(execution=dataclasses.replace(ExecutionConfig(), limit_timeout_s=5,
                                              max_reprices=1, fallback="market"))
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    first = desk.registry.open_orders()[0]
    desk.quote(50_010.00, 50_010.50)
    desk.clock.advance(6)
    desk.trading.on_tick(desk.clock())
    await settle()
    second = desk.registry.open_orders()[0]
    assert desk.registry.order(first.client_order_id).status is OrderStatus.CANCELLED
    assert second.limit_price == Decimal("50010.00") and second.client_order_id != (
        first.client_order_id)
    desk.clock.advance(6)
    desk.trading.on_tick(desk.clock())
    await settle()
    market = desk.registry.orders()[-1]
    assert market.status is OrderStatus.FILLED and market.limit_price is None
    fill = desk.fills[-1]
    assert fill.price == Decimal("50010.50") * Decimal("1.0005")  # ask + 5 bps slippage
    assert fill.fee == fill.price * fill.size * Decimal("0.006")  # taker 60 bps


async def test_fallback_cancel_gives_up_after_the_last_reprice():
    desk = Desk(execution=dataclasses.replace(ExecutionConfig(), limit_timeout_s=5,
                                              max_reprices=0, fallback="cancel"))
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    desk.clock.advance(6)
    desk.trading.on_tick(desk.clock())
    await settle()
    assert desk.registry.open_orders() == [] and len(desk.registry.orders()) == 1
    assert desk.trading.counters["gave_up"] == 1


async def test_a_stop_loss_exits_at_market_and_closes_the_position():
    desk = Desk(risk=dataclasses.replace(RiskConfig(), stop_loss_pct=2.0))
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    desk.trade(49_999.0)
    await settle()
    desk.quote(48_900.00, 48_900.50)
    desk.trading.on_prices({"BTC-USD": 48_900.0}, T0)
    await settle()
    exit_order = desk.registry.orders()[-1]
    assert exit_order.kind is OrderKind.EXIT and exit_order.status is OrderStatus.FILLED
    assert desk.registry.position("BTC-USD") is None
    (trade,) = desk.registry.closed_trades()
    assert trade.pnl < 0


async def test_a_strategy_exit_is_a_post_only_limit_at_the_ask():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    desk.trade(49_999.0)
    await settle()
    desk.signal(Action.EXIT, bar=3)
    await settle()
    exit_order = desk.registry.open_orders()[0]
    assert (exit_order.side, exit_order.limit_price) == (Side.SELL, Decimal("50000.50"))
    desk.trade(50_001.0)
    await settle()
    assert desk.registry.position("BTC-USD") is None


async def test_post_only_that_would_cross_is_rejected_and_counts_for_the_breaker():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    desk.quote(49_000.00, 49_000.50)  # the market moved before the order arrived
    await settle()
    (order,) = desk.registry.orders()
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason == "INVALID_LIMIT_PRICE_POST_ONLY"
    assert desk.trading.counters["rejected"] == 1


async def test_insufficient_funds_are_rejected():
    desk = Desk(risk=dataclasses.replace(RiskConfig(), max_position_usd=5_000,
                                         max_order_usd=5_000, max_exposure_usd=5_000),
                paper=dataclasses.replace(PaperConfig(), starting_balance_usd=100))
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    assert desk.registry.orders()[0].reject_reason == "INSUFFICIENT_FUND"


async def test_the_kill_switch_cancels_open_orders_and_halts_entries():
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    desk.signal(Action.ENTER_LONG)
    await settle()
    desk.trading.kill("SIGUSR1")
    await settle()
    assert desk.risk.state is TradingState.HALTED
    assert desk.registry.open_orders() == []
    assert desk.registry.orders()[0].status is OrderStatus.CANCELLED
    desk.signal(Action.ENTER_LONG, bar=5)
    await settle()
    assert len(desk.registry.orders()) == 1


async def test_without_a_quote_no_order_is_made():
    desk = Desk()
    desk.signal(Action.ENTER_LONG)
    await settle()
    assert desk.registry.orders() == []
    assert "no quote" in desk.trading.last_refusal["BTC-USD"]


@pytest.mark.parametrize("size_usd", ["25", "99.99"])
async def test_a_market_buy_by_quote_size_spends_at_most_that_including_fees(size_usd):
    desk = Desk()
    desk.quote(50_000.00, 50_000.50)
    intent = OrderIntent("s", "BTC-USD", Side.BUY, OrderKind.ENTRY, OrderType.MARKET, None,
                         Decimal(size_usd), None, False, TimeInForce.IOC, T0, 0, "cid-q", "t")
    desk.registry.record_intent(intent)
    desk.paper.submit(intent)
    await settle()
    spent = Decimal(10_000) - desk.paper.balances["USD"]
    assert 0 < spent <= Decimal(size_usd)
    assert desk.registry.position("BTC-USD").size == desk.fills[0].size
