"""The registry: idempotent updates and fills, no double entry, exact PnL and fees."""

from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.trading.registry import ZERO, Registry, client_order_id
from trader.types import (
    ClosedTrade,
    Fill,
    Liquidity,
    OrderIntent,
    OrderKind,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
)

BAR_NS = 1_709_294_400 * 10**9  # 2024-03-01T12:00:00Z


def intent(strategy: str = "sma_cross", product_id: str = "BTC-USD", side: Side = Side.BUY,
           size: str = "1", price: str = "100", attempt: int = 0, bar_time_ns: int = BAR_NS,
           stop: str | None = None, take_profit: str | None = None) -> OrderIntent:
    kind = OrderKind.ENTRY if side is Side.BUY else OrderKind.EXIT
    return OrderIntent(
        strategy, product_id, side, kind, OrderType.LIMIT, D(size), None, D(price), True,
        TimeInForce.GTC, bar_time_ns, attempt,
        client_order_id(strategy, product_id, bar_time_ns, attempt), "test",
        D(stop) if stop else None, D(take_profit) if take_profit else None)


def update(coid: str, status: OrderStatus, filled: str = "0", price: str = "0", fees: str = "0",
           time_ns: int = 1, product_id: str = "BTC-USD", side: Side = Side.BUY,
           order_id: str = "ex-1", reason: str = "") -> OrderUpdate:
    return OrderUpdate(coid, order_id, product_id, side, status, D(filled), D(price), D(fees),
                       time_ns, reason)


def fill(trade_id: str, side: Side, size: str, price: str, fee: str, time_ns: int,
         coid: str = "", product_id: str = "BTC-USD") -> Fill:
    return Fill(trade_id, "ex-1", coid, product_id, side, D(price), D(size), D(fee),
                Liquidity.MAKER, time_ns)


# ---- client order ids ----------------------------------------------------------------------

def test_client_order_id_is_a_stable_uuid5_of_its_four_parts():
    coid = client_order_id("sma_cross", "BTC-USD", BAR_NS, 0)
    assert uuid.UUID(coid).version == 5
    assert coid == client_order_id("sma_cross", "BTC-USD", BAR_NS, 0)
    # pinned: journaled intents must keep their ids across versions
    assert coid == "9be83f8b-be99-5c88-9799-0f3bcc4c6f3f"
    others = {client_order_id("ema_rsi", "BTC-USD", BAR_NS, 0),
              client_order_id("sma_cross", "ETH-USD", BAR_NS, 0),
              client_order_id("sma_cross", "BTC-USD", BAR_NS + 1, 0),
              client_order_id("sma_cross", "BTC-USD", BAR_NS, 1)}
    assert coid not in others and len(others) == 4


# ---- no double entry -----------------------------------------------------------------------

def test_a_recorded_entry_blocks_a_second_one_across_strategies_before_any_answer():
    registry = Registry()
    first = intent()
    assert registry.can_enter("sma_cross", "BTC-USD") is None
    assert registry.record_intent(first) is True
    assert registry.record_intent(first) is False  # a replayed intent changes nothing
    reason = registry.can_enter("ema_rsi", "BTC-USD")
    assert reason == "an entry order for BTC-USD is PENDING (sma_cross)"
    with pytest.raises(ValueError, match="second entry refused"):
        registry.record_intent(intent(strategy="ema_rsi"))
    assert registry.can_enter("ema_rsi", "ETH-USD") is None
    assert [o.client_order_id for o in registry.open_orders()] == [first.client_order_id]


def test_a_cancelled_entry_frees_the_product_a_filled_one_holds_it_until_the_exit():
    registry = Registry()
    first = intent()
    registry.record_intent(first)
    registry.apply_update(update(first.client_order_id, OrderStatus.CANCELLED, time_ns=5))
    assert registry.can_enter("ema_rsi", "BTC-USD") is None
    second = intent(attempt=1)
    registry.record_intent(second)
    registry.apply_fill(fill("t1", Side.BUY, "1", "100", "0.4", 10, second.client_order_id))
    registry.apply_update(update(second.client_order_id, OrderStatus.FILLED, "1", "100",
                                 "0.4", time_ns=11))
    assert registry.open_orders() == []
    assert registry.can_enter("sma_cross", "BTC-USD") == "BTC-USD is already held by this strategy"
    assert registry.can_enter("ema_rsi", "BTC-USD") == "BTC-USD is already held by sma_cross"
    registry.apply_fill(fill("t2", Side.SELL, "1", "101", "0.4", 20))
    assert registry.can_enter("ema_rsi", "BTC-USD") is None


# ---- order updates -------------------------------------------------------------------------

def test_an_older_update_does_not_move_an_order_back_and_terminal_stays_terminal():
    registry = Registry()
    entry = intent()
    coid = entry.client_order_id
    registry.record_intent(entry)
    filled = update(coid, OrderStatus.FILLED, "1", "100", "0.6", time_ns=30)
    assert registry.apply_update(filled) is True
    assert registry.apply_update(filled) is False
    assert registry.apply_update(update(coid, OrderStatus.OPEN, "0.5", "100", "0.3",
                                        time_ns=20)) is False
    assert registry.apply_update(update(coid, OrderStatus.OPEN, time_ns=99)) is False
    order = registry.order(coid)
    assert (order.status, order.filled_size, order.total_fees) == (
        OrderStatus.FILLED, D("1"), D("0.6"))
    assert order.strategy == "sma_cross" and order.kind is OrderKind.ENTRY
    assert registry.counters["updates_stale"] == 3


def test_cumulative_fill_progress_is_taken_in_order_and_a_reject_keeps_its_reason():
    registry = Registry()
    entry = intent()
    registry.record_intent(entry)
    coid = entry.client_order_id
    assert registry.apply_update(update(coid, OrderStatus.OPEN, "0.2", "100", "0.1", time_ns=2))
    assert registry.apply_update(update(coid, OrderStatus.OPEN, "0.6", "100", "0.3", time_ns=3))
    assert registry.order(coid).filled_size == D("0.6")
    rejected = intent(product_id="ETH-USD")
    registry.record_intent(rejected)
    registry.apply_update(update(rejected.client_order_id, OrderStatus.REJECTED, time_ns=4,
                                 order_id="", product_id="ETH-USD",
                                 reason="INSUFFICIENT_FUND"))
    order = registry.order(rejected.client_order_id)
    assert (order.status, order.reject_reason) == (OrderStatus.REJECTED, "INSUFFICIENT_FUND")
    assert registry.can_enter("sma_cross", "ETH-USD") is None


def test_an_order_closed_on_our_reading_is_reopened_by_the_exchanges_word_once(caplog):
    registry = Registry()
    entry = intent()
    coid = entry.client_order_id
    registry.record_intent(entry)
    refused = update(coid, OrderStatus.REJECTED, time_ns=50, order_id="",
                     reason="UNKNOWN_FAILURE_REASON")  # our reading: no exchange order id
    assert registry.apply_update(refused)
    assert registry.can_enter("ema_rsi", "BTC-USD") is None
    opened = update(coid, OrderStatus.OPEN, time_ns=40, order_id="ex-1")  # older, even
    assert registry.apply_update(opened) is True
    order = registry.order(coid)
    assert (order.status, order.order_id, order.reject_reason) == (OrderStatus.OPEN, "ex-1", "")
    assert registry.counters["orders_reopened"] == 1
    assert "the exchange has it as ex-1 OPEN" in caplog.text
    assert registry.can_enter("ema_rsi", "BTC-USD") == (
        "an entry order for BTC-USD is OPEN (sma_cross)")
    assert registry.apply_update(opened) is False  # the usual rules again
    assert registry.apply_update(refused) is True  # a terminal outranks OPEN, as always
    assert registry.apply_update(opened) is False  # but now the exchange has named it
    assert registry.counters["orders_reopened"] == 1
    registry.apply_fill(fill("t1", Side.BUY, "1", "100", "0.5", 60, coid))
    assert registry.apply_fill(fill("t1", Side.BUY, "1", "100", "0.5", 60, coid)) is False
    assert registry.position("BTC-USD").size == D("1")
    assert registry.position("BTC-USD").strategy == "sma_cross"


def test_an_exchange_terminal_status_is_never_reopened():
    registry = Registry()
    entry = intent()
    coid = entry.client_order_id
    registry.record_intent(entry)
    registry.apply_update(update(coid, OrderStatus.CANCELLED, time_ns=50, order_id="ex-1"))
    assert registry.apply_update(update(coid, OrderStatus.OPEN, time_ns=60)) is False
    assert registry.order(coid).status is OrderStatus.CANCELLED
    assert registry.counters["orders_reopened"] == 0


def test_an_order_first_seen_in_an_update_is_kept_and_adopted_by_its_replayed_intent():
    registry = Registry()
    entry = intent()
    assert registry.apply_update(update(entry.client_order_id, OrderStatus.OPEN, time_ns=2))
    order = registry.order(entry.client_order_id)
    assert (order.strategy, order.kind, order.status) == ("", OrderKind.ENTRY, OrderStatus.OPEN)
    assert registry.counters["updates_unknown_order"] == 1
    assert registry.record_intent(entry) is True  # a journal replay after a restart
    order = registry.order(entry.client_order_id)
    assert (order.strategy, order.status, order.size) == ("sma_cross", OrderStatus.OPEN, D(1))


# ---- fills, positions and PnL --------------------------------------------------------------

def test_pnl_and_fees_are_exact_and_a_fill_from_two_sources_counts_once():
    registry = Registry()
    entry = intent(stop="95", take_profit="110")
    registry.record_intent(entry)
    coid = entry.client_order_id
    first = fill("t1", Side.BUY, "0.5", "100.10", "0.30", 10, coid)
    assert registry.apply_fill(first) is True
    assert registry.apply_fill(fill("t2", Side.BUY, "0.5", "100.30", "0.30", 11, coid))
    assert registry.apply_fill(first) is False  # the same trade again, via REST
    registry.mark("BTC-USD", D("101"))
    position = registry.position("BTC-USD")
    assert (position.size, position.cost, position.average_entry_price) == (
        D("1.0"), D("100.200"), D("100.2"))
    assert (position.unrealized_pnl, position.fees, position.strategy) == (
        D("0.800"), D("0.60"), "sma_cross")
    assert (position.stop_price, position.take_profit_price) == (D(95), D(110))
    registry.apply_fill(fill("t3", Side.SELL, "1", "101.50", "0.61", 20))
    registry.apply_fill(fill("t3", Side.SELL, "1", "101.50", "0.61", 20))
    assert registry.position("BTC-USD") is None
    closed: list[ClosedTrade] = registry.take_closed()
    assert len(closed) == 1
    trade = closed[0]
    assert (trade.realized_pnl, trade.fees, trade.pnl) == (D("1.300"), D("1.21"), D("0.090"))
    assert (trade.average_entry_price, trade.average_exit_price) == (D("100.2"), D("101.5"))
    assert (trade.opened_ns, trade.closed_ns, trade.strategy) == (10, 20, "sma_cross")
    total = registry.pnl()
    assert (total.realized, total.unrealized, total.fees, total.net) == (
        D("1.300"), ZERO, D("1.21"), D("0.090"))
    assert registry.counters["fills"] == 3 and registry.counters["fills_duplicate"] == 2


def test_a_partial_exit_realizes_its_part_and_pnl_splits_by_strategy():
    registry = Registry()
    btc, eth = intent(), intent(strategy="ema_rsi", product_id="ETH-USD", price="10")
    registry.record_intent(btc)
    registry.record_intent(eth)
    registry.apply_fill(fill("b1", Side.BUY, "2", "100", "1", 1, btc.client_order_id))
    registry.apply_fill(fill("e1", Side.BUY, "10", "10", "0.5", 1, eth.client_order_id,
                             "ETH-USD"))
    registry.apply_fill(fill("b2", Side.SELL, "0.5", "104", "0.25", 2))
    registry.mark("BTC-USD", D("98"))
    registry.mark("ETH-USD", D("10.5"))
    btc_position = registry.position("BTC-USD")
    assert (btc_position.size, btc_position.cost, btc_position.realized_pnl) == (
        D("1.5"), D("150"), D("2.0"))
    sma, rsi = registry.pnl("sma_cross"), registry.pnl("ema_rsi")
    assert (sma.realized, sma.unrealized, sma.fees, sma.net) == (
        D("2.0"), D("-3.0"), D("1.25"), D("-2.25"))
    assert (rsi.realized, rsi.unrealized, rsi.fees) == (ZERO, D("5.0"), D("0.5"))
    assert registry.pnl().net == sma.net + rsi.net
    assert set(registry.positions("ema_rsi")) == {"ETH-USD"}


def test_a_sell_without_a_position_and_an_oversell_are_counted_not_fatal():
    registry = Registry()
    assert registry.apply_fill(fill("s0", Side.SELL, "1", "100", "0.5", 1))
    assert registry.position("BTC-USD") is None
    registry.apply_fill(fill("b1", Side.BUY, "1", "100", "0", 2))
    registry.apply_fill(fill("s1", Side.SELL, "1.5", "110", "0", 3))
    assert registry.position("BTC-USD") is None
    assert registry.closed_trades()[0].realized_pnl == D(10)
    counters = registry.snapshot()["counters"]
    assert (counters["sells_without_position"], counters["oversells"]) == (1, 1)
    assert registry.pnl().fees == D("0.5")  # the orphan sell's fee was still paid


def test_a_late_older_fill_refolds_the_product_in_time_order():
    registry = Registry()
    registry.apply_fill(fill("s1", Side.SELL, "1", "90", "0.1", 20))  # arrives first
    assert registry.snapshot()["counters"]["sells_without_position"] == 1
    registry.apply_fill(fill("b1", Side.BUY, "1", "100", "0.1", 10))
    assert registry.position("BTC-USD") is None
    trade, = registry.closed_trades()
    assert (trade.pnl, trade.opened_ns, trade.closed_ns) == (D("-10.2"), 10, 20)
    counters = registry.snapshot()["counters"]
    assert counters["sells_without_position"] == 0 and counters["fills_reordered"] == 1


def test_exposure_and_open_count_include_working_entries():
    registry = Registry()
    registry.record_intent(intent(size="0.5", price="100"))
    assert registry.exposure_usd() == D("50.0")
    assert registry.open_count() == 1
    eth = intent(product_id="ETH-USD", size="2", price="10")
    registry.record_intent(eth)
    registry.apply_fill(fill("e1", Side.BUY, "1", "10", "0", 1, eth.client_order_id, "ETH-USD"))
    registry.apply_update(update(eth.client_order_id, OrderStatus.OPEN, "1", "10", "0", 2,
                                 "ETH-USD"))
    registry.mark("ETH-USD", D("12"))
    assert registry.open_count() == 2
    assert registry.exposure_usd() == D("50.0") + D("12") + D("10")  # held at mark + unfilled


def test_the_peak_follows_marks_while_held():
    registry = Registry()
    registry.apply_fill(fill("b1", Side.BUY, "1", "100", "0", 1))
    registry.mark("BTC-USD", D("120"))
    registry.mark("BTC-USD", D("110"))
    position = registry.position("BTC-USD")
    assert (position.peak_price, position.mark_price, position.unrealized_pnl) == (
        D(120), D(110), D(10))


def test_the_snapshot_is_plain_numbers():
    registry = Registry()
    registry.apply_fill(fill("b1", Side.BUY, "1", "100", "0.5", 1))
    snapshot = registry.snapshot()
    assert snapshot["products"]["BTC-USD"]["position_size"] == 1.0
    assert snapshot["counters"]["fees"] == 0.5
    assert all(isinstance(v, int | float) for v in snapshot["counters"].values())


# ---- any replay gives the clean result -----------------------------------------------------

PRODUCTS = ("BTC-USD", "ETH-USD")
_amounts = st.integers(1, 300).map(lambda n: D(n) / 100)
_steps = st.lists(st.tuples(st.sampled_from(PRODUCTS), st.sampled_from(Side), _amounts,
                            st.integers(5_000, 15_000).map(lambda n: D(n) / 100),
                            st.integers(0, 50).map(lambda n: D(n) / 100),
                            st.integers(0, 40), st.booleans()),
                  min_size=1, max_size=20)


def _clean_events(steps: list) -> list[OrderUpdate | Fill]:
    """One order per fill; updates PENDING, OPEN, then FILLED (or CANCELLED once filled)."""
    events: list[tuple[int, int, OrderUpdate | Fill]] = []
    for i, (product, side, size, price, fee, time_ns, cancelled) in enumerate(steps):
        coid = f"order-{i}"
        done = (OrderStatus.CANCELLED if cancelled else OrderStatus.FILLED, size)
        for n, (status, filled, t) in enumerate([(OrderStatus.PENDING, ZERO, time_ns),
                                                 (OrderStatus.OPEN, ZERO, time_ns),
                                                 (*done, time_ns + 1)]):
            events.append((t, n, OrderUpdate(coid, f"ex-{i}", product, side, status, filled,
                                             price if filled else ZERO,
                                             fee if filled else ZERO, t)))
        events.append((time_ns, 2, Fill(f"trade-{i}", f"ex-{i}", coid, product, side, price,
                                        size, fee, Liquidity.TAKER, time_ns)))
    return [event for *_, event in sorted(events, key=lambda e: e[:2])]


def _apply(events: list[OrderUpdate | Fill]) -> Registry:
    registry = Registry()
    for event in events:
        if isinstance(event, Fill):
            registry.apply_fill(event)
        else:
            registry.apply_update(event)
    for product in PRODUCTS:
        registry.mark(product, D("100"))
    return registry


def _state(registry: Registry) -> tuple:
    counters = registry.snapshot()["counters"]
    orders = sorted(registry.orders(), key=lambda o: o.client_order_id)
    return (registry.positions(), registry.pnl(), sorted(registry.closed_trades(), key=repr),
            orders, counters["sells_without_position"], counters["oversells"])


@settings(max_examples=150, deadline=None)
@given(steps=_steps, data=st.data())
def test_any_permutation_with_duplicates_gives_the_clean_result(steps, data):
    clean = _clean_events(steps)
    repeats = data.draw(st.lists(st.sampled_from(clean), max_size=len(clean)))
    messy = data.draw(st.permutations(clean + repeats))
    assert _state(_apply(messy)) == _state(_apply(clean))
