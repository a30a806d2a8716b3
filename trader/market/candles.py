"""Candles from trades into ring-buffer windows, with suspect minutes held back until repaired.

The flow of one minute: trades fold into it (kernels/candles); exchange time passing its end
plus the grace closes it for every product at once; the closed rows wait in a queue; the
oldest queued minute is emitted when no product has it marked dirty: pushed to the 1-minute
window, folded into the higher intervals, and announced bar by bar to the one bar-close
callback (the engine's `on_bar`, bound once), each while it is the newest. A minute is dirty
when prints may be missing (a sequence gap, a reconnect, a stale feed, the partial first
minute, warm-up history) and stays queued until `apply_repair` gives it the exchange's
own candle. So no window ever holds a hole or a half-seen minute.

A row with zero volume is a quiet minute: at emission it becomes a flat candle at the
product's previous emitted close, so repairs of earlier minutes carry forward correctly.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trader.kernels import candles as ck
from trader.kernels import ring
from trader.kernels.series import CandleArrays
from trader.types import Trade

MINUTE_NS = ck.MINUTE_NS
PENDING_FRAMES = 64  # frames held before a fold: bounds the fold left for a bar close
BarListener = Callable[[int, int], None]  # (interval_s, bar_time_s)


@dataclass
class QueuedMinute:
    """A closed minute waiting to be emitted; `dirty[slot]` marks rows awaiting repair."""

    minute_s: int
    rows: np.ndarray
    dirty: np.ndarray


@dataclass(frozen=True, slots=True)
class RepairSpan:
    """Minutes [start_s, end_s) of one product that need the exchange's candles."""

    product_id: str
    start_s: int
    end_s: int


class Market:
    """Owns the candle builder, the emission queue and one window per interval."""

    def __init__(self, products: Iterable[str], intervals_s: Iterable[int], capacity: int,
                 grace_ms: int, warmup_bars: int, spare_slots: int = 8) -> None:
        self.intervals_s = sorted(set(intervals_s) | {60})
        self.capacity = capacity
        self._grace_ns = grace_ms * 1_000_000
        self._due_ns = -1  # exchange ns at which the open minute closes; -1: not started
        self.warmup_bars = warmup_bars
        self.slots: dict[str, int] = {}
        self._on_bar: BarListener | None = None
        self.queue: collections.deque[QueuedMinute] = collections.deque()
        self.counters = collections.Counter[str]()
        self.last_emitted_s: int | None = None
        self._pending_dirty: dict[int, np.ndarray] = {}  # not yet closed minute -> slot mask
        self._started = False  # the first exchange time starts the clock (`_start`)
        self.live_from_s: int | None = None  # the first minute seen live; earlier is warm-up
        self._pending: list[tuple[Sequence[Any], ...]] = []  # frames' trade columns
        wanted = list(dict.fromkeys(products))
        self._allocate(len(wanted) + spare_slots)
        for product_id in wanted:
            self._open_slot(product_id)

    def bind(self, on_bar: BarListener) -> None:
        """The one callback that hears of every closed bar (the engine); bound once."""
        if self._on_bar is not None:
            raise RuntimeError("the market announces its bars to one callback, already bound")
        self._on_bar = on_bar

    def _announce(self, interval_s: int, bar_time_s: int) -> None:
        if self._on_bar is not None:
            self._on_bar(interval_s, bar_time_s)

    # ---- slots ------------------------------------------------------------------------------

    def _allocate(self, n_slots: int) -> None:
        self.builder = ck.new_builder(n_slots)
        self.windows = {s: ring.new_window(n_slots, self.capacity) for s in self.intervals_s}
        self.folds = {s: ck.new_interval(n_slots, s) for s in self.intervals_s if s > 60}
        self._rows = np.empty((n_slots, ck.FIELDS))
        self._free = list(range(n_slots - 1, -1, -1))

    def _grow(self) -> None:
        """Double the slot count, keeping every array's contents (the windows stay aligned)."""
        old, new = len(self._rows), 2 * len(self._rows)
        builder = ck.new_builder(new)
        builder.clock[:] = self.builder.clock
        builder.acc[:, :old] = self.builder.acc
        builder.last[:old] = self.builder.last
        builder.active[:old] = self.builder.active
        self.builder = builder
        for interval_s, window in self.windows.items():
            grown = ring.new_window(new, self.capacity)
            grown.buf[:old] = window.buf
            grown.head[:] = window.head
            grown.count[:old] = window.count
            self.windows[interval_s] = grown
        for interval_s, fold in self.folds.items():
            grown_fold = ck.new_interval(new, interval_s)
            grown_fold.agg[:old] = fold.agg
            grown_fold.meta[:] = fold.meta
            self.folds[interval_s] = grown_fold
        for queued in self.queue:
            queued.rows = _padded(queued.rows, new, np.nan)
            queued.rows[:, ck.TIME] = queued.minute_s
            queued.dirty = _padded(queued.dirty, new, False)
        self._pending_dirty = {m: _padded(d, new, False) for m, d in self._pending_dirty.items()}
        self._rows = np.empty((new, ck.FIELDS))
        self._free = list(range(new - 1, old - 1, -1)) + self._free
        self.counters["slot_growths"] += 1

    def _open_slot(self, product_id: str) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.slots[product_id] = slot
        ck.open_slot(self.builder.acc, self.builder.last, self.builder.active, slot)
        for window in self.windows.values():
            ring.reset_slot(window.buf, window.count, slot)
        for fold in self.folds.values():
            ck.free_interval_slot(fold.agg, slot)
        return slot

    def set_products(self, products: Iterable[str]) -> tuple[list[str], list[str]]:
        """Add and free product slots; returns (added, removed). Added ones need history."""
        self.flush()  # pending trades belong to the slots as they are
        wanted = list(dict.fromkeys(products))
        removed = [p for p in self.slots if p not in wanted]
        added = [p for p in wanted if p not in self.slots]
        for product_id in removed:
            slot = self.slots.pop(product_id)
            ck.free_slot(self.builder.acc, self.builder.last, self.builder.active, slot)
            for window in self.windows.values():
                ring.reset_slot(window.buf, window.count, slot)
            for queued in self.queue:
                queued.dirty[slot] = False
            self._free.append(slot)
        for product_id in added:
            slot = self._open_slot(product_id)
            if self._started:  # its current minute began before it was subscribed
                mask = np.zeros(len(self._rows), bool)
                mask[slot] = True
                self._mark_open_minutes_dirty(mask)
        return added, removed

    # ---- input ------------------------------------------------------------------------------

    def on_trades(self, trades: list[Trade]) -> None:
        """Fold one frame's trades (oldest first); see `on_trade_columns`."""
        self.on_trade_columns([t.product_id for t in trades], [t.time_ns for t in trades],
                              [t.price for t in trades], [t.size for t in trades])

    def on_trade_columns(self, product_ids: Sequence[str], times_ns: Sequence[int],
                         prices: Sequence[float], sizes: Sequence[float]) -> None:
        """Take one frame's trades (columns, oldest first); close whatever minutes are due.

        The frame waits in `_pending`; pending frames are folded in one kernel call when a
        minute is due (or PENDING_FRAMES are held). Nothing reads an open minute before it
        closes and every close folds first, so the candles and the late-trade counts are those
        of folding each frame at once; `flush` brings the counters up to date.
        """
        if not self._started:  # the first heartbeat starts the clock; history comes from REST
            self.counters["trades_before_start"] += len(times_ns)
            return
        if not times_ns:
            return
        pending = self._pending
        pending.append((product_ids, times_ns, prices, sizes))
        if len(pending) >= PENDING_FRAMES:
            self.flush()
        latest = max(times_ns)
        if latest >= self._due_ns:
            self.advance(latest)

    def flush(self) -> None:
        """Fold the pending trades into the open minutes, in arrival order."""
        if not self._pending:
            return
        ids, times, prices, sizes = (itertools.chain.from_iterable(c)
                                     for c in zip(*self._pending, strict=True))
        n = sum(len(frame[1]) for frame in self._pending)
        self._pending.clear()
        slots = np.fromiter(map(self.slots.get, ids, itertools.repeat(-1)), np.int64, n)
        columns: tuple[np.ndarray, ...] = (
            slots, np.fromiter(times, np.int64, n), np.fromiter(prices, np.float64, n),
            np.fromiter(sizes, np.float64, n))
        known = columns[0] >= 0  # products no longer subscribed are ignored
        if not known.all():
            columns = tuple(c[known] for c in columns)
        self._fold(*columns)

    def _fold(self, slot_ids: np.ndarray, times: np.ndarray, prices: np.ndarray,
              sizes: np.ndarray) -> None:
        b = self.builder
        while True:
            late, bad, pending = ck.fold_trades(b.clock, b.acc, b.active, slot_ids, times,
                                                prices, sizes)
            processed = pending if pending >= 0 else len(times)
            self.counters["late_trades"] += late
            self.counters["bad_trades"] += bad
            self.counters["trades"] += processed - late - bad
            if pending < 0:
                return
            for _ in range(ck.closes_needed(b.clock, int(times[pending]))):
                self._close_minute()
            slot_ids, times = slot_ids[pending:], times[pending:]
            prices, sizes = prices[pending:], sizes[pending:]

    def advance(self, exchange_ns: int) -> None:
        """Exchange time reached `exchange_ns` (a trade or heartbeat): close due minutes."""
        if not self._started:
            self._start(exchange_ns)
        if exchange_ns < self._due_ns:
            return  # the common case: no minute ends yet, no kernel call
        self.flush()
        clock = self.builder.clock
        ck.note_time(clock, exchange_ns)
        for _ in range(ck.minutes_due(clock, self.grace_ns)):
            self._close_minute()

    @property
    def grace_ns(self) -> int:
        return self._grace_ns

    @grace_ns.setter
    def grace_ns(self, value: int) -> None:
        self._grace_ns = value
        self._update_due()

    def _update_due(self) -> None:
        """When the open minute is due to close, in exchange ns."""
        minute = int(self.builder.clock[ck.CLOCK_MINUTE])
        self._due_ns = -1 if minute < 0 else (minute + 1) * MINUTE_NS + self._grace_ns

    def mark_dirty(self, from_ns: int, to_ns: int) -> None:
        """Prints between these exchange times may be missing: repair those minutes."""
        if not self._started:
            return  # everything before the start is fetched from REST anyway
        first_s, last_s = from_ns // MINUTE_NS * 60, to_ns // MINUTE_NS * 60
        active = self.builder.active.copy()
        for queued in self.queue:
            if first_s <= queued.minute_s <= last_s:
                queued.dirty |= active
        if self.last_emitted_s is not None and first_s <= self.last_emitted_s:
            self.counters["gaps_after_emission"] += 1
        open_from = max(first_s, self._open_minute_s())
        for minute_s in range(open_from, last_s + 60, 60):
            mask = self._pending_dirty.setdefault(minute_s, np.zeros_like(active))
            mask |= active
        self.counters["gaps"] += 1

    def is_history(self, bar_time_s: int, interval_s: int, stale_s: int) -> bool:
        """Whether a bar is history to trade on: it opened before live data began (warm-up
        from REST), or it closed more than `stale_s` before the open minute (a late repair)."""
        if self.live_from_s is None or bar_time_s < self.live_from_s:
            return True
        return self._open_minute_s() - (bar_time_s + interval_s) > stale_s

    def _open_minute_s(self) -> int:
        minute = int(self.builder.clock[ck.CLOCK_MINUTE])
        return minute * 60 if minute >= 0 else 0

    def _mark_open_minutes_dirty(self, mask: np.ndarray, count: int = 2) -> None:
        """The open minute, and the next one (trades of it fold during the grace), if asked."""
        open_s = self._open_minute_s()
        for minute_s in range(open_s, open_s + 60 * count, 60):
            self._pending_dirty.setdefault(minute_s, np.zeros_like(mask))[:] |= mask

    # ---- start: warm-up history and the partial first minute --------------------------------

    def _start(self, first_ns: int) -> None:
        """Queue warm-up minutes before the first one seen; all of them wait for REST."""
        self._started = True
        first_minute_s = first_ns // MINUTE_NS * 60
        self.live_from_s = first_minute_s
        align = max(self.intervals_s)
        start_s = (first_minute_s - self.warmup_bars * 60) // align * align
        active = self.builder.active.copy()
        for minute_s in range(start_s, first_minute_s, 60):
            rows = np.full_like(self._rows, np.nan)
            rows[:, ck.TIME] = minute_s
            self.queue.append(QueuedMinute(minute_s, rows, active.copy()))
        self.builder.clock[ck.CLOCK_MINUTE] = first_minute_s // 60
        self._update_due()
        self._mark_open_minutes_dirty(active, count=1)  # nothing of the next was folded yet

    # ---- closing and emitting ---------------------------------------------------------------

    def _close_minute(self) -> None:
        b = self.builder
        minute_s = ck.close_minute(b.clock, b.acc, b.last, self._rows)
        dirty = self._pending_dirty.pop(minute_s, np.zeros(len(self._rows), bool))
        self.queue.append(QueuedMinute(minute_s, self._rows.copy(), dirty & b.active))
        self.counters["minutes_closed"] += 1
        self._update_due()
        self._emit_ready()

    def _emit_ready(self) -> None:
        while self.queue and not self.queue[0].dirty.any():
            self._emit(self.queue.popleft())

    def _emit(self, queued: QueuedMinute) -> None:
        rows = queued.rows
        self._flatten_quiet(rows)
        window = self.windows[60]
        ring.push_all(window.buf, window.head, window.count, rows)
        self.last_emitted_s = queued.minute_s
        self.counters["minutes_emitted"] += 1
        self._announce(60, queued.minute_s)
        for interval_s, fold in self.folds.items():
            self._fold_interval(interval_s, fold, rows, queued.minute_s)

    def push_closed(self, minute_s: int, rows: np.ndarray) -> None:
        """A closed minute from stored candles (a backtest): emitted at once, as a repaired
        one would be; `rows` is float64[slots, FIELDS], zero volume for a quiet minute."""
        if self.queue:
            raise RuntimeError("stored minutes cannot overtake minutes waiting for repair")
        self._emit(QueuedMinute(minute_s, rows, np.zeros(len(rows), bool)))

    def _flatten_quiet(self, rows: np.ndarray) -> None:
        """Zero-volume rows become flat candles at the previous emitted close."""
        window = self.windows[60]
        previous = ring.last_n_all(window.buf, window.head, 1)[:, 0, ck.CLOSE]
        quiet = rows[:, ck.VOLUME] == 0.0
        inactive = ~self.builder.active
        for field in (ck.OPEN, ck.HIGH, ck.LOW, ck.CLOSE):
            rows[quiet, field] = previous[quiet]
            rows[inactive, field] = np.nan

    def _fold_interval(self, interval_s: int, fold: ck.Interval, rows: np.ndarray,
                       minute_s: int) -> None:
        code = ck.fold_interval(fold.agg, fold.meta, rows, minute_s, interval_s, self._rows)
        if code == ck.REJECTED:
            raise AssertionError(f"minute {minute_s} emitted out of order for {interval_s} s")
        if code == ck.EMITTED_PARTIAL:
            self.counters[f"partial_{interval_s}s_bars_dropped"] += 1
        elif code == ck.EMITTED:
            window = self.windows[interval_s]
            ring.push_all(window.buf, window.head, window.count, self._rows)
            self._announce(interval_s, int(self._rows[0, ck.TIME]))

    # ---- repair -----------------------------------------------------------------------------

    def repairs_needed(self) -> list[RepairSpan]:
        """Spans of queued minutes that wait for the exchange's candles, per product."""
        spans = []
        for product_id, slot in self.slots.items():
            start = None
            for queued in self.queue:
                if queued.dirty[slot] and start is None:
                    start = queued.minute_s
                elif not queued.dirty[slot] and start is not None:
                    spans.append(RepairSpan(product_id, start, queued.minute_s))
                    start = None
            if start is not None:
                spans.append(RepairSpan(product_id, start, self.queue[-1].minute_s + 60))
        return spans

    def apply_repair(self, span: RepairSpan, candles: CandleArrays | None) -> None:
        """Replace the span's dirty rows by the exchange's candles (None: keep what was built).

        A minute the exchange has no candle for had no trades: it becomes a quiet row.
        """
        slot = self.slots.get(span.product_id)
        if slot is None:
            return
        by_minute = {} if candles is None else {int(t): i for i, t in enumerate(candles.time_s)}
        for queued in self.queue:
            if not (span.start_s <= queued.minute_s < span.end_s and queued.dirty[slot]):
                continue
            if candles is not None:
                i = by_minute.get(queued.minute_s)
                row = queued.rows[slot]
                if i is None:
                    row[ck.OPEN:ck.VOLUME] = np.nan
                    row[ck.VOLUME] = 0.0
                else:
                    row[ck.OPEN:] = [c[i] for c in candles.columns()[1:]]
                self.counters["minutes_repaired"] += 1
            else:
                self.counters["minutes_unrepaired"] += 1
            queued.dirty[slot] = False
        self._emit_ready()

    # ---- status -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        self.flush()  # so the trade counters are current
        window = self.windows[60]
        latest = ring.last_n_all(window.buf, window.head, 1)[:, 0]
        products = {}
        for product_id, slot in self.slots.items():
            products[product_id] = {
                "close": _finite(latest[slot, ck.CLOSE]),
                "volume_1m": _finite(latest[slot, ck.VOLUME]),
                "bars": int(window.count[slot]),
            }
        return {
            "last_bar": _utc_minute(self.last_emitted_s),
            "counters": {**dict(self.counters), "minutes_held": len(self.queue)},
            "products": products,
        }


def _padded(values: np.ndarray, length: int, fill: Any) -> np.ndarray:
    """`values` extended along its first axis to `length` with `fill`."""
    shape = (length - len(values), *values.shape[1:])
    return np.concatenate([values, np.full(shape, fill, dtype=values.dtype)])


def _utc_minute(time_s: int | None) -> str | None:
    if time_s is None:
        return None
    return time.strftime("%m-%d %H:%MZ", time.gmtime(time_s))


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
