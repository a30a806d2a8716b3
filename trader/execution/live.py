"""Live execution: the trading core's intents to Coinbase, their fate back to it.

`submit` and `cancel` only queue; the tasks of `run()` do the rest, every private request
through one `PrivateRest` paced at `coinbase.private_rest_rps`. This module sends exactly
what an intent says (maker-first pricing, reprices and fallbacks are the trading core's).

Sending one intent: the intent is journaled (synced) before POST /orders, then
- accepted: journal "sent"; OPEN (a resting limit) or PENDING;
- refused because the client order id exists (`DUPLICATE_CLIENT_ORDER_ID`, or any refusal
  saying so, or any refusal of an order the exchange has already named to us; Coinbase may
  answer a repeated id this way instead of with the order): not a rejection. The order is
  looked up by client order id and adopted with its real state; not found, it is UNKNOWN
  like a lost answer;
- refused otherwise (HTTP 200, success false): journal "final"; REJECTED with the reason;
- no answer (a timeout, a dropped connection or a 5xx after sending): journal "unknown";
  UNKNOWN, never FAILED. It is looked up (the product's orders since the decision, matched
  on client order id) with growing pauses; still absent `execution.unknown_grace_s` after
  the send, it is sent again with the same client order id, right after a lookup that did
  not find it (never after a failed one: an order that may have closed must not be sent
  again, as Coinbase may have forgotten a closed order's id). Never under a new id, and
  not at all once a cancel is wanted or the exchange said it has the id;
- another HTTP error (a 4xx; 429s past the client's retries): `on_error`, and REJECTED (400)
  or FAILED.
A terminal status of our own making is our reading: a later update from the exchange reopens
the order (live_orders.py). Cancels go out in batches by exchange order id; one for an order
still unknown (or not yet sent), or that the exchange did not find yet, waits until the
order is known.

Updates (the user channel, REST polls while it is down), fills, exchange orders that are not
ours and the balances behind `equity_usd`: live_updates.py.

`drain()` (shutdown) takes no new orders, finishes the queued sends and cancels and, with
`execution.cancel_on_shutdown`, cancels every working order and waits until each is closed;
cut short by the daemon's deadline, it names the orders still open and why.

At start, `ready()` stays False until reconcile.py has matched the journal with the exchange.
The key lives in `credentials` only; tokens and key material are never logged or shown.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
from collections.abc import Coroutine, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from trader.clock import NS_PER_S, Clock, wall_ns
from trader.coinbase import auth
from trader.coinbase.rest import OutcomeUnknown, Pacer, PrivateRest, RestError, RestTimer
from trader.coinbase.user_feed import UserFeed
from trader.config import CoinbaseConfig, ExecutionConfig
from trader.execution.journal import Journal
from trader.execution.live_orders import LiveOrder, LiveOrders
from trader.execution.live_updates import LiveUpdates, wait_event
from trader.execution.reconcile import EXPECTED, LOOKUP_MARGIN_S, Reconciler
from trader.ports import TradingEvents
from trader.types import OrderIntent, OrderStatus, OrderUpdate, Quote

log = logging.getLogger(__name__)

RESOLVE_FIRST_S = 0.5  # first lookup of an unknown order; the pause doubles up to the max
RESOLVE_MAX_S = 5.0
CREATE_ORDER_PATH = "/api/v3/brokerage/orders"
CANCEL_RECHECK_S = 1.0  # shutdown: ask again for cancels not confirmed within this long
# a refusal that says the client order id is taken: the order exists, look it up
ID_EXISTS = re.compile(r"DUPLICATE_CLIENT_ORDER_ID|client.?order.?id.*(exist|already|duplicate"
                       r"|in use|not unique)", re.IGNORECASE)


class LiveExecution:
    """The execution port against Coinbase (see the module docstring).

    Bound to the trading core (`bind`), which it reports to and asks whether a product is
    held (journal compaction keeps the orders of held products) and gives journaled intents
    back after a restart.
    """

    name = "live"

    def __init__(self, journal_path: Path | str, credentials: auth.Credentials,
                 coinbase: CoinbaseConfig, section: ExecutionConfig,
                 quotes: Mapping[str, Quote], clock: Clock = wall_ns, *,
                 rng: random.Random | None = None,
                 observe_rest: RestTimer | None = None) -> None:
        self.coinbase = coinbase
        self.observe_rest = observe_rest
        self.section = section
        self.quotes = quotes  # read-only: the engine's quote book
        self.clock = clock
        self.rng = rng or random.Random()
        self.journal = Journal(Path(journal_path))
        self._events: TradingEvents | None = None
        self.book = LiveOrders(self.journal, clock, on_reopen=self._reopened)
        self.pacer = Pacer(coinbase.private_rest_rps)
        self.counters = collections.Counter[str]()
        self._credentials = credentials
        self._order_tokens = auth.PremintedTokens(credentials)
        self._rest: PrivateRest | None = None
        self._group: asyncio.TaskGroup | None = None
        self._outbox: asyncio.Queue[LiveOrder] = asyncio.Queue()
        self._cancels: asyncio.Queue[str] = asyncio.Queue()
        self.updates = LiveUpdates(
            self.book, section, quotes, self.counters, client=self.client, spawn=self._spawn,
            running=lambda: self._group is not None, connected=lambda: self.user_feed.connected,
            cancel=self._cancels.put_nowait, on_error=self._on_error,
            is_open_position=self.is_open_position)
        self.user_feed = UserFeed(coinbase.user_ws_url, credentials, self.updates.on_user_updates,
                                  coinbase.stale_after_s, on_resync=self.updates.request_poll,
                                  on_error=self._on_error, rng=self.rng)
        self._ready = False
        self._draining = False

    def bind(self, events: TradingEvents) -> None:
        """Report to the trading core built from this execution; the order table too."""
        if self._events is not None:
            raise RuntimeError("live execution is bound already")
        self._events = events
        self.book.bind(events)

    @property
    def events(self) -> TradingEvents:
        if self._events is None:
            raise RuntimeError("live execution used before `bind`")
        return self._events

    def is_open_position(self, product_id: str) -> bool:
        return self.events.is_open_position(product_id)

    def restore_intent(self, intent: OrderIntent) -> None:
        self.events.restore_intent(intent)

    def _on_error(self, kind: str, detail: str) -> None:
        self.events.on_error(kind, detail)

    # ---- the port --------------------------------------------------------------------------

    def submit(self, intent: OrderIntent) -> None:
        if intent.client_order_id in self.book.orders:
            self.counters["repeated_submits"] += 1
            return  # Coinbase would return the existing order: nothing new either way
        order = self.book.track(intent, self.clock())
        if self._draining and self.section.cancel_on_shutdown:
            order.cancel_wanted = True  # shutting down: cancelled before it is sent
        self._outbox.put_nowait(order)

    def cancel(self, client_order_id: str) -> None:
        self._cancels.put_nowait(client_order_id)

    def ready(self) -> bool:
        return self._ready

    def equity_usd(self) -> Decimal | None:
        """USD and USDC (available + hold) plus other balances at their last quoted price;
        None until the accounts were read. A currency without a quote counts nothing."""
        return self.updates.equity_usd()

    @property
    def foreign_orders(self) -> dict[str, OrderUpdate]:
        """Open exchange orders that are not ours, by order id (see reconcile.py)."""
        return self.updates.foreign_orders

    @foreign_orders.setter
    def foreign_orders(self, orders: dict[str, OrderUpdate]) -> None:
        self.updates.foreign_orders = orders

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile, turn ready, then send, cancel, follow and poll until cancelled."""
        async with aiohttp.ClientSession() as session:
            self._rest = PrivateRest(session, self.coinbase.rest_url, self.pacer,
                                     self._authorize, timeout_s=self.coinbase.request_timeout_s,
                                     rng=self.rng, observe=self.observe_rest)
            try:
                await Reconciler(self, self.journal.open()).run()
                self._ready = True
                self._order_tokens.refill(self.coinbase.rest_url.rstrip("/") + CREATE_ORDER_PATH)
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    self._start(group)
            finally:
                self._ready = False
                self._group = self._rest = None
                self.journal.close()

    def _start(self, group: asyncio.TaskGroup) -> None:
        jobs = {"user-feed": self.user_feed.run, "send": self._send_loop,
                "cancel": self._cancel_loop, "fills": self.updates.fill_loop,
                "poll": self.updates.poll_loop, "accounts": self.updates.accounts_loop}
        for name, job in jobs.items():
            group.create_task(job(), name=f"live-{name}")
        for order in self.book.working():
            if order.unknown:  # left unknown by a re-send during reconciliation
                self._spawn(self._resolve(order), f"live-resolve-{order.cid[:8]}")

    async def drain(self) -> None:
        """Shutdown: take no new orders, finish the queued sends and cancels, cancel every
        working order and wait until each is closed (`execution.cancel_on_shutdown`), then
        close the user channel. Cut short (the daemon's deadline), it names what is open."""
        self._ready = False  # the trading core decides nothing new
        self._draining = True
        cancel = self.section.cancel_on_shutdown
        try:
            if self._group is not None:
                if cancel:
                    for order in self.book.working():
                        if not order.order_id:  # unsent or unknown: never sent (again)
                            order.cancel_wanted = True
                        self.cancel(order.cid)
                await self._outbox.join()
                await self._cancels.join()
                if cancel:
                    await self._until_cancelled()
        except asyncio.CancelledError:
            self._name_open_orders(cancel)
            raise
        await self.user_feed.drain()

    async def _until_cancelled(self) -> None:
        """Until no order works; when none closed for CANCEL_RECHECK_S, the cancels are
        asked again and the exchange polled (a cancel may have failed, or found nothing)."""
        while waiting := self.book.working():
            self.updates.closed.clear()
            await wait_event(self.updates.closed, CANCEL_RECHECK_S)
            if not self.updates.closed.is_set():
                for order in waiting:
                    if order.order_id and not order.done:
                        self._cancels.put_nowait(order.cid)
                self.updates.request_poll()

    def _name_open_orders(self, cancelling: bool) -> None:
        for order in self.book.working():
            if order.unknown:
                why = "its create answer was lost and no lookup has found it"
            elif not cancelling:
                continue
            elif not order.order_id:
                why = "it was never sent"
            else:
                why = "its cancel is not confirmed"
            log.error("shutdown: order %s (%s %s) is still %s: %s", order.cid,
                      order.intent.side, order.intent.product_id, order.status.name, why)

    def apply_execution(self, section: ExecutionConfig) -> None:
        """A reloaded `[execution]`."""
        self.section = self.updates.section = section

    def apply_coinbase(self, section: CoinbaseConfig) -> None:
        """A reloaded `[coinbase]`: the private request rate and the user channel's silence."""
        self.coinbase = section
        self.pacer.rate_per_s = section.private_rest_rps
        self.user_feed.stale_after_s = section.stale_after_s

    def client(self) -> PrivateRest:
        """The REST client of the running session."""
        if self._rest is None:
            raise RuntimeError("live execution is not running")
        return self._rest

    def _authorize(self, method: str, url: str) -> str:
        if method == "POST" and url.endswith(CREATE_ORDER_PATH):
            return f"Bearer {self._order_tokens.take(url)}"
        return f"Bearer {auth.rest_jwt(self._credentials, method, url)}"

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        if self._group is None:
            job.close()
            raise RuntimeError("live execution is not running")
        self._group.create_task(job, name=name)

    # ---- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            order = await self._outbox.get()
            self._spawn(self._place(order), f"live-place-{order.cid[:8]}")

    async def _place(self, order: LiveOrder) -> None:
        try:
            await self.create(order)
            if order.unknown:
                await self._resolve(order)
        finally:
            self._outbox.task_done()

    async def create(self, order: LiveOrder) -> None:
        """Journal the intent, send it once, and take what the answer says."""
        if order.cancel_wanted and order.journal_state == "new":
            return self.book.report(order, OrderStatus.CANCELLED, "cancelled before sending")
        self.book.journal_intent(order)
        try:
            result = await self.client().create_order(order.intent)
        except OutcomeUnknown as exc:
            self.counters["outcome_unknown"] += 1
            log.warning("order %s: no answer (%s); looking it up", order.cid, exc)
            return self.book.unknown(order, str(exc))
        except EXPECTED as exc:
            self.events.on_error("order_request", f"order {order.cid}: {exc}")
            status = (OrderStatus.REJECTED if isinstance(exc, RestError) and exc.status == 400
                      else OrderStatus.FAILED)
            return self.book.report(order, status, str(exc)[:200])
        if result.accepted:
            self.counters["accepted"] += 1
            self.book.accepted(order, result.order_id)
            self.updates.follow(order)
        elif ID_EXISTS.search(result.reason) or order.order_id:
            self.counters["id_exists_refusals"] += 1
            log.warning("order %s refused as %s: the exchange has this client order id; "
                        "looking it up", order.cid, result.reason)
            await self._adopt(order, result.reason)
        else:
            self.counters["refused"] += 1
            self.book.report(order, OrderStatus.REJECTED, result.reason)

    async def _adopt(self, order: LiveOrder, why: str) -> None:
        """The exchange has an order under this client id: take its state, or look on."""
        try:
            found = await self.lookup(order)
        except EXPECTED as exc:
            self.counters["lookup_errors"] += 1
            log.warning("lookup of order %s failed: %s", order.cid, exc)
            found = None
        if found is not None:
            self.counters["adopted"] += 1
            self.apply_update(found)
        else:
            order.id_taken = True  # nothing a resend could add: look on, never send again
            self.book.unknown(order, why)

    async def _resolve(self, order: LiveOrder) -> None:
        """Look an unknown order up until found; send it again (same id) if it stays absent."""
        loop = asyncio.get_running_loop()
        since, pause = loop.time(), RESOLVE_FIRST_S
        while order.unknown and not order.done:
            await asyncio.sleep(pause)
            pause = min(2 * pause, RESOLVE_MAX_S)
            try:
                found = await self.lookup(order) if order.unknown else None
            except EXPECTED as exc:  # not "absent": never resend on a failed lookup
                self.counters["lookup_errors"] += 1
                log.warning("lookup of order %s failed: %s", order.cid, exc)
                continue
            if found is not None:
                self.counters["resolved_by_lookup"] += 1
                self.apply_update(found)
            elif (order.unknown and not (order.cancel_wanted or order.id_taken)
                  and loop.time() - since >= self.section.unknown_grace_s):
                self.counters["resends"] += 1
                log.warning("order %s not found after %.0f s: sending it again with the same "
                            "client order id", order.cid, self.section.unknown_grace_s)
                await self.create(order)
                since, pause = loop.time(), RESOLVE_FIRST_S
        if order.order_id and not order.done:
            self.updates.request_poll()  # its updates may have gone out before we knew it

    async def lookup(self, order: LiveOrder) -> OrderUpdate | None:
        """The exchange's order with this client order id (its product's orders since the
        decision), or None if it has none in sight. Raises what a request may end in."""
        start_s = max(order.intent_ns // NS_PER_S - LOOKUP_MARGIN_S, 0)
        listed = await self.client().list_orders(None, order.intent.product_id, start_s)
        return next((u for u in listed if u.client_order_id == order.cid), None)

    # ---- cancelling ------------------------------------------------------------------------

    async def _cancel_loop(self) -> None:
        while True:
            cids = [await self._cancels.get()]
            while not self._cancels.empty():  # a burst (cancel_all) goes out as one batch
                cids.append(self._cancels.get_nowait())
            try:
                await self._cancel_batch(cids)
            finally:
                for _ in cids:
                    self._cancels.task_done()

    async def _cancel_batch(self, cids: list[str]) -> None:
        targets: dict[str, LiveOrder] = {}
        for cid in dict.fromkeys(cids):
            order = self.book.get(cid)
            if order is None or order.done:
                continue
            if order.order_id:
                targets[order.order_id] = order
            else:
                order.cancel_wanted = True  # unsent or unknown: cancelled once known
        if not targets:
            return
        self.counters["cancel_batches"] += 1
        try:
            results = await self.client().cancel_orders(list(targets))
        except EXPECTED as exc:
            self.events.on_error("cancel", f"cancel of {len(targets)} orders failed: {exc}")
            return
        for result in results:
            if not result.requested:
                self.counters["cancels_refused"] += 1
                log.info("cancel of %s refused: %s", result.order_id, result.reason)
                cancelled = targets.get(result.order_id)
                if cancelled is not None and "UNKNOWN_CANCEL_ORDER" in result.reason:
                    cancelled.cancel_wanted = True  # not in sight yet: again on its update
        if not self.user_feed.connected or any(not r.requested for r in results):
            self.updates.request_poll()  # the order's real state, now

    # ---- updates (live_updates.py) ---------------------------------------------------------

    def apply_update(self, update: OrderUpdate) -> None:
        """An update from any source: to the trading core, then what it calls for."""
        self.updates.apply_update(update)

    def _reopened(self, order: LiveOrder) -> None:
        """An order closed on our reading is open on the exchange: follow it again."""
        self.restore_intent(order.intent)  # the trading core follows it for repricing again

    async def fetch_fills(self, order: LiveOrder) -> None:
        """Hand on the order's fills from REST that were not handed on yet."""
        await self.updates.fetch_fills(order)

    async def refresh_accounts(self) -> None:
        """The balances from REST; a failed read keeps the last ones."""
        await self.updates.refresh_accounts()

    # ---- status ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        working = self.book.working()
        equity = self.equity_usd()
        counters: dict[str, float] = {**self.counters, **self.book.counters}
        counters.update(working=len(working), unknown=sum(o.unknown for o in working),
                        foreign_orders=len(self.foreign_orders),
                        user_channel_connected=int(self.user_feed.connected))
        counters.update({f"user_{k}": v for k, v in self.user_feed.counters.items()})
        if self._rest is not None:
            counters.update({f"rest_{k}": v for k, v in self._rest.counters.items()})
        return {
            "ready": self._ready, "user_channel": self.user_feed.snapshot(),
            "equity_usd": None if equity is None else float(equity), "counters": counters,
            "foreign_orders": [{"order_id": u.order_id, "client_order_id": u.client_order_id,
                                "product_id": u.product_id, "side": str(u.side),
                                "status": str(u.status)} for u in self.foreign_orders.values()],
        }
