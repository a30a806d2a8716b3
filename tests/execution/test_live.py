"""Live execution against the simulator: the real trading core, registry and risk manager,
Coinbase's wire protocol, and the simulator's faults (lost answers, 429s, 5xxs, user-channel
drops), restarts over the same journal, and orders the journal does not know."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.helpers import eventually
from tests.live_desk import (
    FAST,
    PRODUCT,
    T0,
    Desk,
    coinbase_config,
    credentials,
    intent,
    live_rig,
)
from tests.simulator.test_orders import pem
from trader.clock import NS_PER_S
from trader.coinbase.user_feed import UserFeed
from trader.execution.journal import Journal, read_journal
from trader.execution.live import LiveExecution
from trader.execution.live_orders import intent_from_record, intent_record
from trader.types import (
    Action,
    Fill,
    Liquidity,
    OrderKind,
    OrderStatus,
    OrderType,
    Side,
    Signal,
)


def sim_fills(order: dict) -> tuple[Decimal, set[str]]:
    return Decimal(order["filled_size"]), {f["trade_id"] for f in order["fills"]}


async def test_a_limit_entry_rests_then_fills_through_the_user_channel_with_rest_fills(
        tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        assert live.equity_usd() == Decimal(10_000) + 2 * Decimal(100)  # USD, BTC at the mid
        desk.enter()
        await eventually(lambda: desk.registry.orders()
                         and desk.only_order().status is OrderStatus.OPEN, timeout_s=5)
        await rig.replay_until(120)  # 99 x 1 at +93 s and +114 s: through the 99.99 bid
        cid = desk.only_order().client_order_id
        await eventually(lambda: desk.status(cid) is OrderStatus.FILLED, timeout_s=5)
        (order,) = await rig.sim_orders()
        size, trade_ids = sim_fills(order)
        await eventually(lambda: desk.filled() == size, timeout_s=5)
        assert {f.trade_id for f in desk.fills} == trade_ids and len(trade_ids) == 2
        position = desk.registry.position(PRODUCT)
        assert position.size == size and position.average_entry_price == Decimal("99.99")
        assert position.strategy == "s"
        assert live.user_feed.counters["updates"] >= 3 and live.counters["poll_errors"] == 0
        entry = read_journal(rig.journal).entries[cid]
        assert (entry.state, entry.status, entry.order_id) == ("final", "FILLED",
                                                               order["order_id"])
        await eventually(lambda: live.equity_usd() is not None
                         and live.equity_usd() < Decimal(10_200), timeout_s=5)


# The answers Coinbase leaves unverified (PROTOCOL.md, Idempotency), as the simulator plays them
ANSWERS = {"existing": {"duplicate_answer": "existing"},
           "refuse": {"duplicate_answer": "refuse"},
           "refuse, short id retention": {"duplicate_answer": "refuse", "id_retention_s": 0.2}}


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("fault", ["accept_delay", "accept_drop"])
async def test_an_accepted_order_whose_answer_is_lost_is_found_and_not_duplicated(
        tmp_path, fault, answer):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        # out of sight past the client's timeout (1 s) and the grace before a resend (1 s), so
        # the resend runs; a market order, so it closes the moment it goes live and a short
        # retention forgets its id
        await rig.faults(lost_hidden_s=3.5, **ANSWERS[answer],
                         arm={fault: 1, "user_drop": 10_000})  # and no user channel to tell
        await rig.api.control("POST", "/_sim/drop_user")
        buy = intent(OrderType.MARKET, Side.BUY, size="0.5")
        cid = buy.client_order_id
        desk.send(buy)
        await eventually(lambda: desk.status(cid) is OrderStatus.FILLED
                         and desk.filled() == Decimal("0.5"), timeout_s=15)
        (order,) = await rig.sim_orders()
        assert desk.registry.order(cid).order_id == order["order_id"]
        assert desk.registry.position(PRODUCT).size == Decimal(order["filled_size"])
        statuses = [u.status for u in desk.updates]
        assert OrderStatus.UNKNOWN in statuses and OrderStatus.REJECTED not in statuses
        assert live.counters["resends"] >= 1
        assert (live.counters["id_exists_refusals"] >= 1) == (answer != "existing")
        entry = read_journal(rig.journal).entries[cid]
        assert (entry.state, entry.status, entry.history) == ("final", "FILLED",
                                                              ["unknown", "sent", "final"])
        counters = live.snapshot()["counters"]
        assert counters["working"] == counters["unknown"] == 0  # nothing left to resend
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [cid]


async def test_a_duplicate_client_order_id_refusal_adopts_the_exchanges_order(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(duplicate_answer="refuse")
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        cid = buy.client_order_id
        placed = await rig.api.limit(cid, "BUY", "0.5", "99.00")  # sent by a run before us
        desk.send(buy)
        await eventually(lambda: live.counters["adopted"], timeout_s=5)
        assert desk.status(cid) is OrderStatus.OPEN
        assert desk.registry.order(cid).order_id == placed["order_id"]
        assert (live.counters["id_exists_refusals"], live.counters["adopted"]) == (1, 1)
        assert OrderStatus.REJECTED not in [u.status for u in desk.updates]
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [cid]
        entry = read_journal(rig.journal).entries[cid]
        assert (entry.state, entry.order_id) == ("sent", placed["order_id"])
        await eventually(lambda: live.snapshot()["foreign_orders"] == [], timeout_s=5)


async def test_a_late_update_reopens_a_locally_rejected_order_and_its_fill_counts(
        tmp_path, caplog):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        buy = intent(OrderType.LIMIT, Side.BUY, size="1", price="99.50", post_only=True)
        cid = buy.client_order_id
        # our reading of a create answer said "refused"; the exchange took the order after all
        desk.registry.record_intent(buy)
        order = live.book.track(buy, time.time_ns())
        live.book.journal_intent(order)
        live.book.report(order, OrderStatus.REJECTED, "UNKNOWN_FAILURE_REASON")
        assert desk.status(cid) is OrderStatus.REJECTED
        assert desk.registry.can_enter("other", PRODUCT) is None
        placed = await rig.api.limit(cid, "BUY", "1", "99.50")
        await eventually(lambda: desk.status(cid) is OrderStatus.OPEN, timeout_s=5)
        assert desk.registry.can_enter("other", PRODUCT) is not None  # working again
        await rig.replay_until(100)  # 99 x 1 at +93 s fills it
        await eventually(lambda: desk.status(cid) is OrderStatus.FILLED
                         and desk.filled() == Decimal(1), timeout_s=5)
        position = desk.registry.position(PRODUCT)
        assert (position.size, position.strategy) == (Decimal(1), "s")
        assert live.book.counters["reopened"] == desk.registry.counters["orders_reopened"] == 1
        assert "reopened with the exchange's state" in caplog.text
        entry = read_journal(rig.journal).entries[cid]
        assert (entry.state, entry.status, entry.order_id, entry.history) == (
            "final", "FILLED", placed["order_id"], ["final", "reopen", "final"])
        assert live.snapshot()["foreign_orders"] == []


async def test_a_cancel_of_an_unknown_order_waits_until_it_is_found(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(arm={"accept_drop": 1, "user_drop": 10_000})
        await rig.api.control("POST", "/_sim/drop_user")
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        desk.send(buy)
        await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.UNKNOWN,
                         timeout_s=5)
        live.cancel(buy.client_order_id)
        await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.CANCELLED,
                         timeout_s=10)
        (order,) = await rig.sim_orders()
        assert order["status"] == "CANCELLED" and live.counters["cancel_batches"] == 1


async def test_an_order_the_exchange_never_got_is_sent_again_under_the_same_id(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(arm={"server_error": 1})  # a 5xx before the order is created
        buy = intent(OrderType.MARKET, Side.BUY, size="0.5")
        desk.send(buy)
        await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.FILLED
                         and desk.filled() == Decimal("0.5"), timeout_s=10)
        assert live.counters["resends"] == 1 and live.counters["outcome_unknown"] == 1
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [buy.client_order_id]


async def test_429s_are_retried_within_limits_and_beyond_them_the_order_fails(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(retry_after_s=0, arm={"rate_limit": 3})
        first = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        desk.send(first)
        await eventually(lambda: desk.status(first.client_order_id) is OrderStatus.OPEN,
                         timeout_s=10)
        assert live.client().counters["rate_limited"] == 3
        await rig.faults(retry_after_s=1, arm={"rate_limit": 6})  # all the client tries
        second = intent(OrderType.LIMIT, Side.SELL, size="0.5", price="101.00",
                        post_only=True)
        desk.send(second)
        await eventually(lambda: desk.status(second.client_order_id) is OrderStatus.FAILED,
                         timeout_s=15)
        assert [kind for kind, _ in desk.errors] == ["order_request"]
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [
            first.client_order_id]
        assert read_journal(rig.journal).entries[second.client_order_id].status == "FAILED"


async def test_5xx_answers_to_reads_are_retried(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        buy = intent(OrderType.LIMIT, Side.BUY, size="1", price="99.50", post_only=True)
        desk.send(buy)
        await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.OPEN,
                         timeout_s=5)
        await rig.faults(arm={"server_error": 2})  # the fills request after the fill
        await rig.replay_until(100)  # 99 x 1 at +93 s
        await eventually(lambda: desk.filled() == Decimal(1), timeout_s=10)
        assert live.client().counters["errors"] >= 2 and live.counters["fill_errors"] == 0


async def test_with_the_user_channel_down_orders_and_fills_come_by_polling(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        await rig.faults(arm={"user_drop": 10_000})  # every user frame cuts the connection
        await rig.api.control("POST", "/_sim/drop_user")
        await eventually(lambda: not live.user_feed.connected, timeout_s=5)
        desk.enter()
        await eventually(lambda: desk.registry.orders()
                         and desk.only_order().status is OrderStatus.OPEN, timeout_s=5)
        await rig.replay_until(120)
        cid = desk.only_order().client_order_id
        await eventually(lambda: desk.status(cid) is OrderStatus.FILLED, timeout_s=10)
        (order,) = await rig.sim_orders()
        size, trade_ids = sim_fills(order)
        await eventually(lambda: desk.filled() == size, timeout_s=5)
        assert {f.trade_id for f in desk.fills} == trade_ids
        assert not live.user_feed.connected and live.counters["polls"] >= 1
        assert live.user_feed.counters["connections"] >= 2


async def test_a_restart_finds_the_in_flight_order_and_applies_its_fills(tmp_path):
    async with live_rig(tmp_path) as rig:
        first = Desk()
        await rig.start(first, request_timeout_s=30)
        await rig.faults(arm={"accept_delay": 1, "user_drop": 10_000})
        await rig.api.control("POST", "/_sim/drop_user")
        first.enter()
        await eventually(lambda: rig.sim_orders(), timeout_s=5)
        await rig.crash()  # the answer is still on its way
        cid = first.only_order().client_order_id
        assert read_journal(rig.journal).entries[cid].state == "intent"
        await rig.faults(arm={"user_drop": 0})
        await rig.replay_until(100)  # 1 of its 1.00010001 fills while nothing runs

        second = Desk()
        live = await rig.start(second)
        (order,) = await rig.sim_orders()
        size, trade_ids = sim_fills(order)
        assert size == 1 and second.filled() == size  # before ready
        assert {f.trade_id for f in second.fills} == trade_ids
        restored = second.registry.order(cid)
        assert (restored.status, restored.strategy, restored.order_id) == (
            OrderStatus.OPEN, "s", order["order_id"])
        assert second.registry.position(PRODUCT).strategy == "s"
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        await rig.replay_until(120)
        await eventually(lambda: second.status(cid) is OrderStatus.FILLED, timeout_s=5)
        (order,) = await rig.sim_orders()
        await eventually(lambda: second.filled() == Decimal(order["filled_size"]), timeout_s=5)
        assert second.registry.position(PRODUCT).size == Decimal("1.00010001")


async def test_a_restart_resends_fresh_intents_and_drops_stale_ones(tmp_path):
    async with live_rig(tmp_path) as rig:
        now_ns = time.time_ns()
        fresh = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        stale = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="98.00", post_only=True,
                       bar=1)
        journal = Journal(rig.journal)
        journal.open()
        journal.intent(fresh.client_order_id, intent_record(fresh, now_ns - 5 * NS_PER_S))
        journal.intent(stale.client_order_id, intent_record(stale, now_ns - 3600 * NS_PER_S))
        journal.close()
        desk = Desk()
        live = await rig.start(desk)
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [
            fresh.client_order_id]
        assert desk.status(fresh.client_order_id) is OrderStatus.OPEN
        assert desk.registry.order(fresh.client_order_id).strategy == "s"
        assert desk.registry.order(stale.client_order_id) is None
        assert (live.counters["restart_resends"], live.counters["never_sent"]) == (1, 1)
        entries = read_journal(rig.journal).entries
        assert list(entries) == [fresh.client_order_id]  # compacted: the stale one is gone
        assert entries[fresh.client_order_id].state == "sent"


@pytest.mark.parametrize("named", [False, True])
async def test_a_restart_adopts_an_order_out_of_sight_and_places_no_second_one(
        tmp_path, named):
    async with live_rig(tmp_path) as rig:
        await rig.faults(duplicate_answer="refuse", lost_hidden_s=2.0, arm={"accept_drop": 1})
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        cid = buy.client_order_id
        with pytest.raises(aiohttp.ServerDisconnectedError):  # a run sent it and died
            await rig.api.limit(cid, "BUY", "0.5", "99.00")
        (hidden,) = await rig.sim_orders()
        journal = Journal(rig.journal)
        journal.open()
        journal.intent(cid, intent_record(buy, time.time_ns() - NS_PER_S))
        if named:  # the answer came before the crash: the journal has the exchange order id
            journal.sent(cid, hidden["order_id"])
        journal.close()
        desk = Desk()
        live = await rig.start(desk)
        assert desk.status(cid) is (OrderStatus.PENDING if named else OrderStatus.UNKNOWN)
        assert (live.counters["not_in_sight"], live.counters["restart_resends"]) == (
            (1, 0) if named else (0, 1))  # unnamed: resent, refused as a duplicate
        await eventually(lambda: desk.status(cid) is OrderStatus.OPEN, timeout_s=10)
        assert desk.registry.order(cid).order_id == hidden["order_id"]
        assert desk.registry.order(cid).strategy == "s"
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [cid]
        assert OrderStatus.REJECTED not in [u.status for u in desk.updates]


async def test_a_restart_reopens_an_order_the_journal_closed_on_our_reading(tmp_path, caplog):
    async with live_rig(tmp_path) as rig:
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        cid = buy.client_order_id
        placed = await rig.api.limit(cid, "BUY", "0.5", "99.00")
        journal = Journal(rig.journal)
        journal.open()
        journal.intent(cid, intent_record(buy, time.time_ns() - NS_PER_S))
        journal.final(cid, "REJECTED", "UNKNOWN_FAILURE_REASON")  # what we read, wrongly
        journal.close()
        desk = Desk()
        live = await rig.start(desk)
        order = desk.registry.order(cid)
        assert (order.status, order.order_id, order.strategy) == (
            OrderStatus.OPEN, placed["order_id"], "s")
        assert live.snapshot()["foreign_orders"] == [] and live.book.counters["reopened"] == 1
        entry = read_journal(rig.journal).entries[cid]
        assert (entry.state, entry.order_id) == ("sent", placed["order_id"])
        assert "reopened with the exchange's state" in caplog.text


@pytest.mark.parametrize("cancel", [False, True])
async def test_exchange_orders_the_journal_does_not_know_are_reported_or_cancelled(
        tmp_path, caplog, cancel):
    async with live_rig(tmp_path) as rig:
        placed = await rig.api.limit("by-hand", "BUY", "0.1", "99.00")
        desk = Desk()
        section = dataclasses.replace(FAST, cancel_unknown_orders=cancel)
        live = await rig.start(desk, section)
        (foreign,) = live.snapshot()["foreign_orders"]
        assert (foreign["order_id"], foreign["client_order_id"]) == (placed["order_id"],
                                                                     "by-hand")
        (order,) = await rig.sim_orders()
        assert order["status"] == ("CANCELLED" if cancel else "OPEN")
        assert any("not in the journal" in r.getMessage() for r in caplog.records)
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        assert desk.registry.orders() == []  # never handed to the trading core
        assert live.book.counters["foreign_updates"] >= (0 if cancel else 1)


async def test_a_bad_key_is_an_authentication_failure_retried_with_backoff(tmp_path):
    async with live_rig(tmp_path) as rig:
        errors: list[tuple[str, str]] = []
        feed = UserFeed(coinbase_config(rig.url).user_ws_url, credentials("theirs"),
                        lambda updates: None, 60.0, on_error=lambda *e: errors.append(e),
                        backoff_base_s=0.05, backoff_cap_s=0.2)
        task = asyncio.create_task(feed.run())
        try:
            await eventually(lambda: feed.counters["user_auth_failures"] >= 2, timeout_s=5)
        finally:
            await feed.drain()
            await rig.crash(task)
        assert not feed.connected and feed.counters["connections"] >= 2
        assert errors[0] == ("user_auth", "authentication failure")


async def test_key_material_is_never_in_a_log_record_or_the_snapshot(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(retry_after_s=0, arm={"accept_drop": 1, "rate_limit": 2})
        desk.enter()
        await eventually(lambda: desk.registry.orders()
                         and desk.only_order().status is OrderStatus.OPEN, timeout_s=10)
        await rig.api.control("POST", "/_sim/drop_user")
        crossing = intent(OrderType.LIMIT, Side.SELL, size="0.5", price="99.99",
                          post_only=True)
        desk.send(crossing)
        await eventually(lambda: desk.status(crossing.client_order_id)
                         is OrderStatus.REJECTED, timeout_s=5)
        outsider = Desk()
        await rig.start(outsider, creds=credentials("theirs"), wait_ready=False)
        await eventually(lambda: any("401" in r.getMessage() for r in caplog.records),
                         timeout_s=5)
        feed = UserFeed(live.user_feed.ws_url, credentials("theirs"), lambda updates: None,
                        60.0, backoff_base_s=0.05)
        task = asyncio.create_task(feed.run())
        await eventually(lambda: feed.counters["user_auth_failures"], timeout_s=5)
        await feed.drain()
        await rig.crash(task)
        snapshots = orjson.dumps([live.snapshot(), outsider.execution.snapshot(),
                                  feed.snapshot()]).decode()
    secrets = [line for which in ("ours", "theirs") for line in pem(which).splitlines()
               if line and not line.startswith("-----")]
    texts = [snapshots] + [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert {"trader.execution.live", "trader.execution.reconcile",
            "trader.coinbase.user_feed"} <= {r.name for r in caplog.records}
    for text in texts:
        assert "PRIVATE KEY" not in text and "eyJ" not in text  # no PEM, no JWT
        assert not any(secret in text for secret in secrets)


async def test_drain_finishes_queued_sends_and_closes_the_user_channel(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk, dataclasses.replace(FAST, cancel_on_shutdown=False))
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        desk.send(buy)
        await live.drain()
        assert [o["client_order_id"] for o in await rig.sim_orders()] == [buy.client_order_id]
        assert desk.status(buy.client_order_id) is OrderStatus.OPEN
        await eventually(lambda: not live.user_feed.connected, timeout_s=5)


async def test_drain_cancels_every_open_order_even_one_whose_answer_was_lost(tmp_path):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)  # cancel_on_shutdown is on by default
        resting = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        desk.send(resting)
        await eventually(lambda: desk.status(resting.client_order_id) is OrderStatus.OPEN,
                         timeout_s=5)
        await rig.faults(lost_hidden_s=1.5, arm={"accept_drop": 1})
        lost = intent(OrderType.LIMIT, Side.SELL, size="0.5", price="101.00", post_only=True)
        desk.send(lost)
        await eventually(lambda: desk.status(lost.client_order_id) is OrderStatus.UNKNOWN,
                         timeout_s=5)
        queued = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="98.00", post_only=True,
                        bar=1, kind=OrderKind.EXIT)  # not sent yet when the drain begins
        live.submit(queued)
        drain = asyncio.create_task(live.drain())
        await eventually(lambda: not live.ready(), timeout_s=1)
        late = intent(OrderType.MARKET, Side.SELL, size="0.5", bar=2)  # decided meanwhile
        desk.send(late)
        async with asyncio.timeout(10):
            await drain
        orders = {o["client_order_id"]: o["status"] for o in await rig.sim_orders()}
        assert orders == {resting.client_order_id: "CANCELLED",
                          lost.client_order_id: "CANCELLED"}
        assert live.book.working() == [] and live.counters["resends"] == 0
        assert desk.status(lost.client_order_id) is OrderStatus.CANCELLED
        assert desk.status(late.client_order_id) is OrderStatus.CANCELLED


async def test_an_order_still_unknown_at_the_shutdown_deadline_is_named_in_the_log(
        tmp_path, caplog):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk)
        await rig.faults(arm={"server_error": 1})  # the exchange never got it; nothing says so
        buy = intent(OrderType.LIMIT, Side.BUY, size="0.5", price="99.00", post_only=True)
        desk.send(buy)
        await eventually(lambda: desk.status(buy.client_order_id) is OrderStatus.UNKNOWN,
                         timeout_s=5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):  # the daemon's shutdown deadline
                await live.drain()
        assert f"order {buy.client_order_id} (BUY BTC-USD) is still UNKNOWN: its create " \
               "answer was lost" in caplog.text
        assert await rig.sim_orders() == [] and live.counters["resends"] == 0


@pytest.mark.parametrize("cancel", [False, True])
async def test_an_exchange_order_not_ours_seen_while_running_is_reported_or_cancelled(
        tmp_path, caplog, cancel):
    async with live_rig(tmp_path) as rig:
        desk = Desk()
        live = await rig.start(desk, dataclasses.replace(FAST, cancel_unknown_orders=cancel))
        await eventually(lambda: live.user_feed.connected, timeout_s=5)
        assert live.snapshot()["foreign_orders"] == []
        placed = await rig.api.limit("by-hand", "BUY", "0.1", "99.00")

        async def status() -> str:
            (order,) = await rig.sim_orders()
            return order["status"]

        if cancel:
            await eventually(lambda: live.counters["foreign_cancelled"] == 1, timeout_s=5)
            assert await status() == "CANCELLED"
            await eventually(lambda: live.snapshot()["foreign_orders"] == [], timeout_s=5)
        else:
            await eventually(lambda: live.snapshot()["foreign_orders"], timeout_s=5)
            (foreign,) = live.snapshot()["foreign_orders"]
            assert (foreign["order_id"], foreign["client_order_id"]) == (placed["order_id"],
                                                                         "by-hand")
            assert await status() == "OPEN"
        assert "is not ours (not in the journal)" in caplog.text
        assert desk.registry.orders() == []


def test_a_gap_in_the_user_channel_sequence_asks_for_a_catch_up():
    resyncs: list[None] = []
    feed = UserFeed("ws://unused", credentials(), lambda updates: None, 60.0,
                    on_resync=lambda: resyncs.append(None))

    def frame(seq: int, channel: str = "heartbeats") -> bytes:
        return orjson.dumps({"channel": channel, "timestamp": "2026-01-01T00:00:00Z",
                             "sequence_num": seq, "events": [{"type": "update",
                                                              "orders": []}]})

    assert feed.on_raw_frame(frame(0)) and feed.on_raw_frame(frame(1)) and not resyncs
    assert feed.on_raw_frame(frame(3))
    assert len(resyncs) == 1 and feed.counters["sequence_gaps"] == 1
    assert feed.on_raw_frame(frame(3)) and feed.counters["stale_frames"] == 1
    assert feed.on_raw_frame(frame(4, "user")) and feed.connected and len(resyncs) == 2
    assert not feed.on_raw_frame(b'{"type":"error","message":"authentication failure"}')
    assert feed.counters["user_auth_failures"] == 1


def test_a_journaled_intent_reads_back_as_the_same_intent():
    original = dataclasses.replace(intent(OrderType.LIMIT, price="99.99", post_only=True),
                                   stop_price=Decimal("95.5"), attempt=2)
    record = orjson.loads(orjson.dumps(intent_record(original, 123)))
    assert intent_from_record(record) == original and record["intent_ns"] == 123


def test_no_exit_leaves_before_reconciliation_has_made_the_execution_ready(tmp_path: Path):
    desk = Desk()
    live = LiveExecution(tmp_path / "orders.journal", credentials(),
                         coinbase_config("http://127.0.0.1:9"), FAST, desk.quotes)
    desk.attach(live)
    desk.registry.apply_fill(Fill("t1", "o1", "", PRODUCT, Side.BUY, Decimal("100"),
                                  Decimal("0.5"), Decimal("0"), Liquidity.MAKER, T0))
    desk.trading.on_signals([Signal("s", PRODUCT, T0 + 60 * 10**9, -0.5, Action.EXIT, None,
                                    None, "test")])
    assert not live.ready() and desk.registry.open_orders() == []
    assert "execution is not ready" in desk.trading.last_refusal[PRODUCT]
