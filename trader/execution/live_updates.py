"""Live execution's reading of the exchange: what it says of our orders, fills and accounts.

Updates come from the user channel. While it is down, open orders are polled over REST every
`execution.poll_interval_s`, and once more each time it comes back (updates sent while nobody
listened are lost). Whenever an order's cumulative filled size grows its fills are fetched
from REST (real trade ids) and handed on; the registry dedupes them by trade id. Terminal
updates close the order in the journal. An open exchange order that is not ours, seen while
running, is reported (log, snapshot) and cancelled if `execution.cancel_unknown_orders`.
Equity is the accounts' USD (available + hold) plus every other currency at its last quoted
USD price, refreshed every `execution.accounts_refresh_s` and after fills.

Built and driven by `LiveExecution` (live.py): its loops run in live's task group, its log
lines are live's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from decimal import Decimal
from typing import Any

from trader import money
from trader.coinbase.rest import PrivateRest, RestError
from trader.config import ExecutionConfig
from trader.execution.live_orders import LiveOrder, LiveOrders
from trader.execution.reconcile import EXPECTED
from trader.types import OrderUpdate, Quote

log = logging.getLogger("trader.execution.live")  # the live execution's, as before the split

ZERO = Decimal(0)
CASH = frozenset({"USD", "USDC"})  # Coinbase converts USD and USDC one to one
FILLS_RETRY_S = 1.0  # REST fills may lag the user channel: look again this much later
MAX_FILL_RETRIES = 30
COMPACT_AFTER_FINALS = 500  # rewrite the journal once this many orders closed since the last

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class LiveUpdates:
    """Order updates from any source, the fills they call for, orders not ours, balances.

    Collaborators come from `LiveExecution`: the REST client of the running session
    (`client`), a task spawner, whether it runs, whether the user channel is connected,
    `cancel` for a cancel an update calls for, and the trading core's `on_error` and
    `is_open_position` (journal compaction keeps the orders of held products).
    """

    def __init__(self, book: LiveOrders, section: ExecutionConfig, quotes: Mapping[str, Quote],
                 counters: collections.Counter[str], *, client: Callable[[], PrivateRest],
                 spawn: Spawn, running: Callable[[], bool], connected: Callable[[], bool],
                 cancel: Callable[[str], None], on_error: Callable[[str, str], None],
                 is_open_position: Callable[[str], bool]) -> None:
        self.book = book
        self.section = section  # replaced on a reload, with live's
        self.quotes = quotes  # read-only: the engine's quote book
        self.counters = counters  # live's
        self.foreign_orders: dict[str, OrderUpdate] = {}  # open, not ours (see reconcile.py)
        self.closed = asyncio.Event()  # an order closed (shutdown waits on these)
        self._client = client
        self._spawn = spawn
        self._running = running
        self._connected = connected
        self._cancel = cancel
        self._on_error = on_error
        self._is_open_position = is_open_position
        self._fills: asyncio.Queue[LiveOrder] = asyncio.Queue()
        self._fills_queued: set[str] = set()
        self._poll_now = asyncio.Event()
        self._accounts_due = asyncio.Event()
        self._balances: dict[str, Decimal] | None = None

    def equity_usd(self) -> Decimal | None:
        """USD and USDC (available + hold) plus other balances at their last quoted price;
        None until the accounts were read. A currency without a quote counts nothing."""
        if self._balances is None:
            return None
        total = ZERO
        for currency, amount in self._balances.items():
            if not amount:
                continue  # /accounts lists every wallet, mostly empty: price only the others
            price = Decimal(1) if currency in CASH else self._price(currency)
            if price is not None:
                total += amount * price
        return total

    def _price(self, currency: str) -> Decimal | None:
        quote = self.quotes.get(f"{currency}-USD")
        return money.to_decimal(quote.price) if quote is not None and quote.price else None

    # ---- updates ---------------------------------------------------------------------------

    def on_user_updates(self, updates: list[OrderUpdate]) -> None:
        """The user channel's updates."""
        for update in updates:
            self.apply_update(update)

    def apply_update(self, update: OrderUpdate) -> None:
        """An update from any source: to the trading core, then what it calls for."""
        order = self.book.apply(update)
        if order is None:
            self._not_ours(update)
            return
        self.foreign_orders.pop(order.order_id, None)  # seen before it became ours
        if order.done:
            self.closed.set()
        self.follow(order)

    def _not_ours(self, update: OrderUpdate) -> None:
        """An exchange order the journal never knew, seen while running: report it, and
        cancel it if `execution.cancel_unknown_orders` says so (reconcile.py does at start)."""
        if not self._running() or not update.order_id:
            return
        if update.status.is_terminal:
            self.foreign_orders.pop(update.order_id, None)
            return
        seen = update.order_id in self.foreign_orders
        self.foreign_orders[update.order_id] = update
        if seen:
            return
        cancel = self.section.cancel_unknown_orders
        log.warning("exchange order %s (%s %s, client order id %r) is not ours (not in the "
                    "journal): %s", update.order_id, update.side, update.product_id,
                    update.client_order_id, "cancelling it" if cancel else "left alone")
        if cancel:
            self._spawn(self._cancel_foreign(update.order_id),
                        f"live-foreign-{update.order_id[:8]}")

    async def _cancel_foreign(self, order_id: str) -> None:
        try:
            results = await self._client().cancel_orders([order_id])
        except EXPECTED as exc:
            self._on_error("cancel", f"cancel of foreign order {order_id} failed: {exc}")
            return
        self.counters["foreign_cancelled"] += sum(r.requested for r in results)

    def follow(self, order: LiveOrder) -> None:
        """What an order's news calls for: its fills, a wanted cancel, journal compaction."""
        self._want_fills(order)
        if order.cancel_wanted and order.order_id and not order.done:
            order.cancel_wanted = False
            self._cancel(order.cid)
        if self.book.finals_since_compaction >= COMPACT_AFTER_FINALS:
            self.book.compact(self._is_open_position)

    # ---- fills -----------------------------------------------------------------------------

    def _want_fills(self, order: LiveOrder) -> None:
        if order.order_id and order.fills_missing and order.cid not in self._fills_queued:
            self._fills_queued.add(order.cid)
            self._fills.put_nowait(order)

    async def fill_loop(self) -> None:
        """Fetch the fills of each order that lacks some, again later while REST lags."""
        while True:
            order = await self._fills.get()
            self._fills_queued.discard(order.cid)
            if not order.fills_missing:
                continue
            try:
                await self.fetch_fills(order)
            except EXPECTED as exc:
                self.counters["fill_errors"] += 1
                log.warning("fills of order %s: %s", order.cid, exc)
            if order.fills_missing:
                order.fill_fetches += 1
                self._spawn(self._fills_later(order), f"live-fills-{order.cid[:8]}")

    async def _fills_later(self, order: LiveOrder) -> None:
        if order.fill_fetches > MAX_FILL_RETRIES:
            log.warning("order %s: REST shows fills of %s of its %s filled; giving up",
                        order.cid, order.fills_size, order.filled_size)
            return
        await asyncio.sleep(FILLS_RETRY_S)
        self._want_fills(order)

    async def fetch_fills(self, order: LiveOrder) -> None:
        """Hand on the order's fills from REST that were not handed on yet."""
        fills = await self._client().list_fills(order_id=order.order_id)
        if self.book.add_fills(order, fills):
            self._accounts_due.set()
        if not order.fills_missing:
            order.fill_fetches = 0

    # ---- the REST fallback -----------------------------------------------------------------

    def request_poll(self) -> None:
        """Poll the working orders now (the poll loop's next round)."""
        self._poll_now.set()

    async def poll_loop(self) -> None:
        """Poll when asked, and every `execution.poll_interval_s` the user channel is down."""
        while True:
            await wait_event(self._poll_now, self.section.poll_interval_s)
            asked = self._poll_now.is_set()
            self._poll_now.clear()
            if asked or not self._connected():
                await self.poll()

    async def poll(self) -> None:
        """Every working order's state from REST: the open list, and each one not in it."""
        working = [o for o in self.book.working() if o.order_id]
        if not working:
            return
        self.counters["polls"] += 1
        try:
            listed = await self._client().list_orders("OPEN")
            for update in listed:  # ours, and any that is not
                self.apply_update(update)
            in_list = {u.order_id for u in listed}
            for order in working:
                if order.order_id not in in_list and not order.done:
                    await self._poll_one(order)
        except EXPECTED as exc:
            self.counters["poll_errors"] += 1
            log.warning("order poll failed: %s", exc)

    async def _poll_one(self, order: LiveOrder) -> None:
        try:
            self.apply_update(await self._client().get_order(order.order_id))
        except RestError as exc:
            if exc.status != 404:
                raise
            self.counters["poll_not_found"] += 1  # reads lag: the order is not in sight yet

    # ---- balances --------------------------------------------------------------------------

    async def accounts_loop(self) -> None:
        """Read the accounts every `execution.accounts_refresh_s`, and after fills."""
        while True:
            await wait_event(self._accounts_due, self.section.accounts_refresh_s)
            self._accounts_due.clear()
            await self.refresh_accounts()

    async def refresh_accounts(self) -> None:
        """The balances from REST; a failed read keeps the last ones."""
        try:
            balances = await self._client().accounts()
        except EXPECTED as exc:
            self.counters["account_errors"] += 1
            log.warning("accounts: %s", exc)
            return
        self._balances = {b.currency: b.available + b.hold for b in balances}


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Until `event` is set or `timeout_s` passed. Not `asyncio.wait_for`: on 3.11 it can
    swallow a cancellation that lands as the event is set, and the task never ends."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
