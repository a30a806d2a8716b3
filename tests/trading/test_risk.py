"""Risk: every limit's denial reason, the trading state and its recovery, exits, sizing."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal as D
from typing import Any

import orjson
import pytest

from trader.clock import ManualClock
from trader.config import RiskConfig
from trader.trading.registry import Registry, client_order_id
from trader.trading.risk import RiskManager
from trader.types import (
    Fill,
    Liquidity,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    TradingState,
)

NOON_NS = 1_709_294_400 * 10**9  # 2024-03-01T12:00:00Z
_trade_ids = itertools.count()


def section(**overrides: Any) -> RiskConfig:
    """A `risk` section: config defaults, then `overrides`."""
    return dataclasses.replace(RiskConfig(), **overrides)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON_NS)


@pytest.fixture
def registry() -> Registry:
    return Registry()


def make_risk(registry: Registry, clock: ManualClock, **overrides: Any) -> RiskManager:
    return RiskManager(section(**overrides), registry, clock)


def buy(registry: Registry, product_id: str = "BTC-USD", size: str = "1", price: str = "100",
        strategy: str = "sma_cross", stop: str | None = None, take_profit: str | None = None,
        time_ns: int = NOON_NS) -> None:
    """An entry intent, its fill and its FILLED update."""
    coid = client_order_id(strategy, product_id, time_ns, next(_trade_ids))
    registry.record_intent(OrderIntent(
        strategy, product_id, Side.BUY, OrderKind.ENTRY, OrderType.LIMIT, D(size), None,
        D(price), True, TimeInForce.GTC, time_ns, 0, coid, "test",
        D(stop) if stop else None, D(take_profit) if take_profit else None))
    registry.apply_fill(Fill(f"t{next(_trade_ids):06d}", "ex", coid, product_id, Side.BUY, D(price),
                             D(size), D(0), Liquidity.MAKER, time_ns))
    registry.apply_update(OrderUpdate(coid, "ex", product_id, Side.BUY, OrderStatus.FILLED,
                                      D(size), D(price), D(0), time_ns))


def sell(registry: Registry, product_id: str = "BTC-USD", size: str = "1",
         price: str = "100", time_ns: int = NOON_NS) -> None:
    registry.apply_fill(Fill(f"t{next(_trade_ids):06d}", "ex", "", product_id, Side.SELL, D(price),
                             D(size), D(0), Liquidity.MAKER, time_ns))


# ---- entry limits --------------------------------------------------------------------------

def test_a_clean_book_allows_an_entry(registry, clock):
    risk = make_risk(registry, clock)
    assert risk.check_entry("sma_cross", "BTC-USD", D(100)) is None
    assert risk.state is TradingState.ACTIVE
    assert risk.counters["entries_allowed"] == 1


def test_a_held_product_is_denied_with_the_registry_reason(registry, clock):
    risk = make_risk(registry, clock)
    buy(registry)
    assert risk.check_entry("ema_rsi", "BTC-USD", D(50)) == "BTC-USD is already held by sma_cross"
    assert risk.counters["denied_held"] == 1


def test_no_size_is_denied(registry, clock):
    risk = make_risk(registry, clock)
    assert risk.check_entry("sma_cross", "BTC-USD", D(0)) == (
        "order notional is 0 (no size at this stop)")


def test_max_order_notional_is_a_fat_finger_guard(registry, clock):
    risk = make_risk(registry, clock, max_order_usd=250.0)
    assert risk.check_entry("sma_cross", "BTC-USD", D("2500")) == (
        "order notional 2500.00 USD > max_order_usd 250.00")


def test_max_position_usd(registry, clock):
    risk = make_risk(registry, clock, max_position_usd=100.0)
    assert risk.check_entry("sma_cross", "BTC-USD", D("100.01")) == (
        "position notional 100.01 USD > max_position_usd 100.00")
    assert risk.check_entry("sma_cross", "BTC-USD", D("100")) is None


def test_max_open_positions_counts_working_entries(registry, clock):
    risk = make_risk(registry, clock, max_open_positions=2)
    buy(registry, "BTC-USD")
    registry.record_intent(OrderIntent(
        "sma_cross", "ETH-USD", Side.BUY, OrderKind.ENTRY, OrderType.LIMIT, D(1), None, D(10),
        True, TimeInForce.GTC, NOON_NS, 0, "working-eth", "test"))
    assert risk.check_entry("sma_cross", "SOL-USD", D(10)) == (
        "2 positions open or entering, max_open_positions is 2")


def test_max_total_exposure(registry, clock):
    risk = make_risk(registry, clock, max_exposure_usd=150.0)
    buy(registry, "BTC-USD", price="100")
    registry.mark("BTC-USD", D("90"))  # exposure is counted at the mark
    assert risk.check_entry("sma_cross", "ETH-USD", D(60)) is None  # 150: at the limit
    assert risk.check_entry("sma_cross", "ETH-USD", D("60.01")) == (
        "exposure would be 150.01 USD > max_exposure_usd 150.00")


def test_new_limits_apply_at_once_on_reload(registry, clock):
    risk = make_risk(registry, clock)
    assert risk.check_entry("sma_cross", "BTC-USD", D(100)) is None
    risk.apply_config(section(max_order_usd=50.0))
    assert risk.check_entry("sma_cross", "BTC-USD", D(100)) == (
        "order notional 100.00 USD > max_order_usd 50.00")


def test_the_real_config_section_works_before_it_declares_the_new_keys(registry, clock):
    risk = RiskManager(RiskConfig(), registry, clock)
    assert risk.limits.max_position_usd == D("100.0")
    assert risk.limits.risk_fraction == 0 and risk.limits.breaker_max_errors == 5


# ---- daily loss, cooldown, circuit breaker, kill switch ------------------------------------

def test_the_daily_loss_limit_halts_entries_until_the_next_utc_day(registry, clock):
    risk = make_risk(registry, clock, daily_loss_limit_usd=50.0)
    risk.update()  # the day's start
    buy(registry, "BTC-USD", size="1", price="100")
    sell(registry, "BTC-USD", size="0.5", price="80")  # realized -10
    registry.mark("BTC-USD", D("20"))  # unrealized -40
    reason = risk.check_entry("sma_cross", "ETH-USD", D(10))
    assert reason == ("halted: daily loss 50.00 USD >= daily_loss_limit_usd 50.00; entries "
                      "resume at 00:00 UTC")
    assert risk.snapshot()["cancel_open_orders"] is True
    registry.mark("BTC-USD", D("60"))  # a recovery the same day does not lift the halt
    clock.set(NOON_NS + 11 * 3600 * 10**9 + 59 * 60 * 10**9)  # 23:59 UTC
    assert risk.check_entry("sma_cross", "ETH-USD", D(10)) is not None
    clock.set(NOON_NS + 12 * 3600 * 10**9)  # 00:00 UTC the next day
    assert risk.check_entry("sma_cross", "ETH-USD", D(10)) is None
    assert risk.state is TradingState.ACTIVE


def test_consecutive_losses_start_a_cooldown_that_expires(registry, clock):
    risk = make_risk(registry, clock, max_consecutive_losses=2, cooldown_s=600.0)

    def round_trip(exit_price: str) -> None:
        buy(registry, price="100")
        sell(registry, price=exit_price)
        for trade in registry.take_closed():  # what the trading core does after a fill
            risk.record_trade(trade)

    round_trip("99")  # loss 1
    round_trip("101")  # a win resets the streak
    round_trip("99")
    assert risk.state is TradingState.ACTIVE
    round_trip("99")  # the second loss in a row
    assert risk.state is TradingState.REDUCING
    assert risk.check_entry("sma_cross", "ETH-USD", D(10)) == (
        "reducing: cooldown after 2 losing trades in a row, until 2024-03-01T12:10:00Z")
    assert risk.snapshot()["cancel_open_orders"] is False
    clock.advance(599)
    assert risk.check_entry("sma_cross", "ETH-USD", D(10)) is not None
    clock.advance(1)
    assert risk.check_entry("sma_cross", "ETH-USD", D(10)) is None


def test_the_circuit_breaker_trips_on_errors_in_the_window_and_resets(registry, clock):
    risk = make_risk(registry, clock, breaker_max_errors=3, breaker_window_s=60.0,
                     breaker_halt_s=300.0)
    risk.record_error("reject")
    risk.record_error("reject")
    clock.advance(61)  # those two slid out of the window
    risk.record_error("timeout")
    risk.record_error("reject")
    assert risk.state is TradingState.ACTIVE
    risk.record_error("reject")
    assert risk.state is TradingState.HALTED
    assert risk.check_entry("sma_cross", "BTC-USD", D(10)) == (
        "halted: circuit breaker: 3 rejects/errors within 60 s, until 2024-03-01T12:06:01Z")
    assert (risk.counters["errors_reject"], risk.counters["errors_timeout"]) == (4, 1)
    clock.advance(300)
    assert risk.check_entry("sma_cross", "BTC-USD", D(10)) is None


def test_the_config_kill_switch_halts_and_lifts_on_reload(registry, clock):
    changes: list[tuple[TradingState, str]] = []
    risk = RiskManager(section(), registry, clock,
                       listeners=[lambda state, reason: changes.append((state, reason))])
    risk.apply_config(section(kill_switch=True))
    assert risk.check_entry("sma_cross", "BTC-USD", D(10)) == (
        "halted: kill switch (risk.kill_switch)")
    assert changes == [(TradingState.HALTED, "kill switch (risk.kill_switch)")]
    risk.apply_config(section(kill_switch=False))
    assert risk.state is TradingState.ACTIVE and changes[-1] == (TradingState.ACTIVE, "")


def test_the_signal_kill_switch_halts_and_asks_for_cancels(registry, clock):
    risk = make_risk(registry, clock)
    risk.kill()  # what the SIGUSR1 handler calls
    assert risk.check_entry("sma_cross", "BTC-USD", D(10)) == "halted: kill switch (SIGUSR1)"
    snapshot = risk.snapshot()
    assert (snapshot["state"], snapshot["cancel_open_orders"]) == ("halted", True)
    assert snapshot["counters"]["trading_state"] == 2
    orjson.dumps(snapshot)  # the status server can send it
    risk.reset_kill_switch()
    assert risk.check_entry("sma_cross", "BTC-USD", D(10)) is None


def test_exits_are_allowed_in_every_state(registry, clock):
    risk = make_risk(registry, clock)
    assert risk.check_exit("BTC-USD") == "nothing held in BTC-USD"
    buy(registry)
    risk.kill()
    assert risk.check_exit("BTC-USD") is None
    registry.record_intent(OrderIntent(
        "sma_cross", "BTC-USD", Side.SELL, OrderKind.EXIT, OrderType.MARKET, D(1), None, None,
        False, TimeInForce.IOC, NOON_NS, 0, "exit-1", "stop-loss"))
    assert risk.check_exit("BTC-USD") == "an exit order for BTC-USD is already PENDING"


# ---- exits ---------------------------------------------------------------------------------

def test_stop_loss_from_the_strategy_or_the_configured_percentage(registry, clock):
    risk = make_risk(registry, clock, stop_loss_pct=3.0)
    buy(registry, "BTC-USD", price="100", stop="95")
    buy(registry, "ETH-USD", price="10")
    btc, eth = registry.position("BTC-USD"), registry.position("ETH-USD")
    assert risk.exit_reason(btc, D("96"), NOON_NS, False) is None
    assert risk.exit_reason(btc, D("95"), NOON_NS, False) == "stop-loss: 95 <= stop 95"
    assert risk.exit_reason(eth, D("9.71"), NOON_NS, False) is None
    assert risk.exit_reason(eth, D("9.7"), NOON_NS, False) == "stop-loss: 9.7 <= stop 9.7"


def test_take_profit_from_the_strategy_or_the_configured_percentage(registry, clock):
    risk = make_risk(registry, clock, take_profit_pct=5.0)
    buy(registry, "BTC-USD", price="100", take_profit="110")
    buy(registry, "ETH-USD", price="10")
    btc, eth = registry.position("BTC-USD"), registry.position("ETH-USD")
    assert risk.exit_reason(btc, D("109"), NOON_NS, False) is None
    assert risk.exit_reason(btc, D("110"), NOON_NS, False) == "take-profit: 110 >= target 110"
    assert risk.exit_reason(eth, D("10.5"), NOON_NS, False) == (
        "take-profit: 10.5 >= target 10.5")


def test_the_trailing_stop_follows_the_peak(registry, clock):
    risk = make_risk(registry, clock, trailing_stop_pct=2.0)
    buy(registry, price="100")
    registry.mark("BTC-USD", D("120"))
    position = registry.position("BTC-USD")
    assert risk.exit_reason(position, D("117.61"), NOON_NS, False) is None
    assert risk.exit_reason(position, D("117.6"), NOON_NS, False) == (
        "trailing stop: 117.6 <= 117.6 (2 % under the peak)")


def test_strategy_exit_and_max_hold_time(registry, clock):
    risk = make_risk(registry, clock, max_hold_s=3600.0)
    buy(registry, price="100")
    position = registry.position("BTC-USD")
    assert risk.exit_reason(position, D("100"), NOON_NS + 3599 * 10**9, False) is None
    assert risk.exit_reason(position, D("100"), NOON_NS, True) == "strategy exit"
    assert risk.exit_reason(position, D("100"), NOON_NS + 3600 * 10**9, False) == (
        "max hold time: held 3600 s >= 3600 s")


def test_a_protective_exit_wins_over_the_strategy(registry, clock):
    risk = make_risk(registry, clock)
    buy(registry, price="100", stop="95")
    position = registry.position("BTC-USD")
    assert risk.exit_reason(position, D("90"), NOON_NS, True) == "stop-loss: 90 <= stop 95"


# ---- sizing --------------------------------------------------------------------------------

def test_fixed_sizing_uses_max_position_usd(registry, clock):
    risk = make_risk(registry, clock, max_position_usd=100.0)
    assert risk.entry_notional(D(10_000), D(100), D(95)) == D(100)


def test_risk_based_sizing_loses_the_fraction_at_the_stop_and_is_capped(registry, clock):
    risk = make_risk(registry, clock, risk_fraction=0.01, max_position_usd=5000.0,
                     max_exposure_usd=10_000.0, max_order_usd=5000.0)
    notional = risk.entry_notional(D(10_000), D(100), D(95))
    assert notional == D(2000)  # 20 units: a fall to 95 loses 100 = 1 % of the equity
    assert risk.entry_notional(D(100_000), D(100), D(95)) == D(5000)
    assert risk.entry_notional(D(10_000), D(100), D(100)) == 0
    assert risk.entry_notional(D(10_000), D(100), None) == D(5000)  # no stop: fixed size
    risk.apply_config(section(risk_fraction=0.01, stop_loss_pct=4.0, max_position_usd=5000.0,
                              max_exposure_usd=10_000.0, max_order_usd=5000.0))
    assert risk.entry_notional(D(10_000), D(100), None) == D(2500)
