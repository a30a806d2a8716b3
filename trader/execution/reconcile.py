"""Live execution's start: the journal and the exchange agree before the first new order.

Each journal entry still open is resolved against the exchange:
- found (among the open orders, or the product's orders since it was decided, matched on
  client order id; else by its exchange order id): its state is taken and its fills fetched;
- not found but given an exchange order id before: the exchange has it (reads can lag): it
  stays working, PENDING, until an update or a poll shows it. Never sent again;
- not found, and decided within `execution.resend_window_s`: looked up once more, then sent
  again with the same client order id (Coinbase answers a repeated id with the existing order
  or refuses it as a duplicate, so this cannot duplicate while it keeps the id; a lookup
  right before is what keeps a closed order, whose id it may have forgotten, from a resend);
- not found and older: closed in the journal as never sent, and nobody is told. Its moment
  has passed (the price it was decided at is stale); the trading core decides afresh.
Entries closed before the restart but kept by the last compaction (their product was held)
get their fills fetched too, so the registry's positions are the exchange's fills again.
Each restored order's intent goes back to the registry after its first update
(`restore_intent`), which gives the position its strategy and exit levels.

An open exchange order whose journal entry we closed on our own reading (refused, failed) is
restored and reopened with the exchange's state. Open exchange orders the journal does not
know are reported (log and snapshot) and left alone, or cancelled when
`execution.cancel_unknown_orders` says so (live.py does the same while running). Then the
journal is compacted and the balances fetched. A failed request aborts the pass, which is
retried with backoff; every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from trader.backoff import Backoff
from trader.clock import NS_PER_S
from trader.coinbase.auth import AuthError
from trader.coinbase.rest import RestError
from trader.execution.journal import JournalEntry, Replay
from trader.execution.live_orders import LiveOrder, intent_from_record
from trader.types import Fill, OrderIntent, OrderStatus, OrderUpdate

if TYPE_CHECKING:
    from trader.execution.live import LiveExecution

log = logging.getLogger(__name__)

EXPECTED = (RestError, AuthError)  # what a private request may end in: counted and retried
LOOKUP_MARGIN_S = 300  # clocks differ: look for an order from a while before its decision
NEVER_ON_THE_BOOK = (OrderStatus.REJECTED, OrderStatus.FAILED)


class Reconciler:
    """One start's reconciliation (see the module docstring)."""

    def __init__(self, live: LiveExecution, replay: Replay) -> None:
        self.live = live
        self.replay = replay
        self._restored: set[str] = set()

    async def run(self) -> None:
        """Reconcile, retrying with capped jittered backoff until a pass succeeds."""
        if self.replay.torn_lines or self.replay.orphan_records:
            log.warning("journal: %d torn lines (never sent) and %d orphan records skipped",
                        self.replay.torn_lines, self.replay.orphan_records)
        backoff = Backoff(1.0, 30.0, self.live.rng)
        while True:
            try:
                return await self._pass()
            except EXPECTED as exc:
                self.live.counters["reconcile_errors"] += 1
                delay = backoff.next_s()
                log.warning("reconciliation failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _pass(self) -> None:
        rest = self.live.client()
        entries = list(self.replay.entries.values())
        open_orders = await rest.list_orders("OPEN")
        listed = {u.client_order_id: u for u in [*await self._recent(entries), *open_orders]
                  if u.client_order_id}
        for entry in entries:
            if entry.cid not in self._restored:
                await self._restore(entry, listed.get(entry.cid))
                self._restored.add(entry.cid)
        foreign = await self._foreign(open_orders)
        kept = self.live.book.compact(self.live.is_open_position)
        await self.live.refresh_accounts()
        log.info("reconciled: %d journal entries, %d kept; %d open exchange orders, %d not ours",
                 len(entries), kept, len(open_orders), foreign)

    async def _recent(self, entries: list[JournalEntry]) -> list[OrderUpdate]:
        """Orders of each product with an open entry, since its earliest open decision."""
        since: dict[str, int] = {}
        for entry in entries:
            if entry.open:
                product = entry.intent["product_id"]
                start_s = int(entry.intent.get("intent_ns") or 0) // NS_PER_S - LOOKUP_MARGIN_S
                since[product] = min(since.get(product, start_s), start_s)
        found: list[OrderUpdate] = []
        for product, start_s in since.items():
            found += await self.live.client().list_orders(None, product, max(start_s, 0))
        return found

    async def _restore(self, entry: JournalEntry, listed: OrderUpdate | None) -> None:
        intent = intent_from_record(entry.intent)
        intent_ns = int(entry.intent.get("intent_ns") or 0)
        if not entry.open:
            return await self._restore_closed(entry, intent, intent_ns)
        live = self.live
        order = live.book.track(intent, intent_ns, entry.state, entry.order_id or "")
        update = listed or await self._by_order_id(order)
        age_s = (live.clock() - intent_ns) / NS_PER_S
        if update is None and not order.order_id and age_s <= live.section.resend_window_s:
            update = await live.lookup(order)  # once more, right before a resend
        if update is not None:
            live.apply_update(update)
            if order.fills_missing:
                await live.fetch_fills(order)
        elif order.order_id:
            live.counters["not_in_sight"] += 1
            log.warning("order %s (%s %s) has exchange order id %s but is not in sight yet: "
                        "kept working", order.cid, intent.side, intent.product_id,
                        order.order_id)
        elif age_s <= live.section.resend_window_s:
            live.counters["restart_resends"] += 1
            log.info("order %s (%s %s) is not on the exchange: sending it again with the "
                     "same client order id", order.cid, intent.side, intent.product_id)
            await live.create(order)
        else:
            live.counters["never_sent"] += 1
            log.info("order %s (%s %s) is not on the exchange and was decided %.0f s ago: "
                     "closed as never sent", order.cid, intent.side, intent.product_id, age_s)
            return live.book.never_sent(order, "not on the exchange at restart")
        live.restore_intent(intent)

    async def _restore_closed(self, entry: JournalEntry, intent: OrderIntent,
                              intent_ns: int) -> None:
        """A closed order kept for its position: its fills, its final state, its intent."""
        status = OrderStatus(entry.status or OrderStatus.FILLED)
        if not entry.order_id or status in NEVER_ON_THE_BOOK:
            return
        book = self.live.book
        order = book.track(intent, intent_ns, "final", entry.order_id)
        fills = await self.live.client().list_fills(order_id=entry.order_id)
        if not fills:
            return book.forget(order)
        book.apply(_update_from_fills(order, status, fills))
        book.add_fills(order, fills)
        self.live.restore_intent(intent)

    async def _reopen(self, entry: JournalEntry, update: OrderUpdate) -> None:
        """A journal entry closed on our reading whose order is open on the exchange."""
        book = self.live.book
        order = book.track(intent_from_record(entry.intent),
                           int(entry.intent.get("intent_ns") or 0), "final")
        order.status = OrderStatus(entry.status or OrderStatus.FAILED)
        order.inferred = True  # what it was: closed with no exchange order id
        self.live.apply_update(update)  # reopens it and gives the intent back (live.py)
        if order.fills_missing:
            await self.live.fetch_fills(order)

    async def _by_order_id(self, order: LiveOrder) -> OrderUpdate | None:
        if not order.order_id:
            return None
        try:
            return await self.live.client().get_order(order.order_id)
        except RestError as exc:
            if exc.status == 404:
                return None
            raise

    async def _foreign(self, open_orders: list[OrderUpdate]) -> int:
        """Reopen open exchange orders the journal closed on our reading; report (or
        cancel) the ones it does not know."""
        foreign = []
        for update in open_orders:
            entry = self.replay.entries.get(update.client_order_id)
            if entry is None:
                foreign.append(update)
            elif (update.client_order_id not in self.live.book.orders
                  and not entry.open and entry.order_id is None):
                await self._reopen(entry, update)
        self.live.foreign_orders = {u.order_id: u for u in foreign}
        cancel = self.live.section.cancel_unknown_orders
        for update in foreign:
            log.warning("exchange order %s (%s %s, client order id %r) is not in the journal: "
                        "%s", update.order_id, update.side, update.product_id,
                        update.client_order_id, "cancelling it" if cancel else "left alone")
        if cancel and foreign:
            results = await self.live.client().cancel_orders([u.order_id for u in foreign])
            self.live.counters["foreign_cancelled"] += sum(r.requested for r in results)
        return len(foreign)


def _update_from_fills(order: LiveOrder, status: OrderStatus, fills: list[Fill]) -> OrderUpdate:
    """The cumulative state a closed order's fills add up to."""
    size = sum((f.size for f in fills), Decimal(0))
    value = sum((f.price * f.size for f in fills), Decimal(0))
    fees = sum((f.fee for f in fills), Decimal(0))
    return OrderUpdate(order.cid, order.order_id, order.intent.product_id, order.intent.side,
                       status, size, value / size if size else Decimal(0), fees,
                       max(f.time_ns for f in fills), "")
