"""Mirrored ring-buffer windows of OHLCV bars: one window per interval, all product slots at once.

Layout and conventions, shared by every kernel here (state is passed in explicitly):

- `buf`   float64[products, 2 * capacity, FIELDS], FIELDS = TIME, OPEN, HIGH, LOW, CLOSE, VOLUME.
  TIME is the bar open in unix seconds (a float64 holds every second exactly; ns would not).
  Each row is written twice, at i and i + capacity, so the last n rows of a slot are
  `buf[slot, head + capacity - n : head + capacity]`: one contiguous view, never a copy.
- `head`  int64[1], the next write index in [0, capacity), shared by all slots. Every slot gets
  a row on every push (all products close a bar together), so the slots stay aligned and
  `last_n_all` is a single [products, n, FIELDS] view that one kernel call can step.
- `count` int64[products], how many of a slot's most recent rows are bars, at most capacity.
  A row whose CLOSE is NaN is a gap (a free slot, a product that never traded): it is stored as
  is and sets count to 0, so `last_n(..., n)` with n <= count never contains a gap.
- A free slot is all NaN with count 0. `reset_slot` frees a slot and readies it for reuse, so a
  reused slot never shows its previous product's bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

TIME, OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4, 5
FIELDS = 6


@dataclass(frozen=True, slots=True)
class Window:
    """The state arrays of one interval's window (passed to the kernels one by one)."""

    buf: np.ndarray
    head: np.ndarray
    count: np.ndarray

    @property
    def capacity(self) -> int:
        """Bars kept per slot."""
        return self.buf.shape[1] // 2


def new_window(products: int, capacity: int) -> Window:
    """An empty window: every slot free (NaN rows, count 0), head at 0."""
    if products < 1 or capacity < 1:
        raise ValueError(f"products and capacity must be >= 1, got {products}, {capacity}")
    buf = np.full((products, 2 * capacity, FIELDS), np.nan)
    return Window(buf, np.zeros(1, np.int64), np.zeros(products, np.int64))


@njit(cache=True)
def _write(buf, count, cap, h, slot, row):
    for f in range(FIELDS):
        buf[slot, h, f] = row[f]
        buf[slot, h + cap, f] = row[f]
    if np.isnan(row[CLOSE]):
        count[slot] = 0
    elif count[slot] < cap:
        count[slot] += 1


@njit(cache=True)
def _advance(head, cap):
    h = head[0] + 1
    head[0] = 0 if h == cap else h


@njit(cache=True)
def push_all(buf: np.ndarray, head: np.ndarray, count: np.ndarray, rows: np.ndarray) -> None:
    """Append rows[slot] (float64[products, FIELDS]) as the newest bar of every slot."""
    if rows.shape[0] != buf.shape[0] or rows.shape[1] != FIELDS:
        raise ValueError("rows must be float64[products, FIELDS]")
    cap = buf.shape[1] // 2
    h = head[0]
    for s in range(buf.shape[0]):
        _write(buf, count, cap, h, s, rows[s])
    _advance(head, cap)


@njit(cache=True)
def push_rows(
    buf: np.ndarray, head: np.ndarray, count: np.ndarray, slots: np.ndarray, rows: np.ndarray
) -> None:
    """Append rows[i] to slots[i]; every slot not listed gets a gap row (all NaN)."""
    if rows.shape[0] != slots.shape[0] or rows.shape[1] != FIELDS:
        raise ValueError("rows must be float64[len(slots), FIELDS]")
    products = buf.shape[0]
    cap = buf.shape[1] // 2
    h = head[0]
    listed = np.zeros(products, np.bool_)
    for i in range(slots.shape[0]):
        s = slots[i]
        if s < 0 or s >= products:
            raise IndexError("slot out of range")
        listed[s] = True
        _write(buf, count, cap, h, s, rows[i])
    gap = np.full(FIELDS, np.nan)
    for s in range(products):
        if not listed[s]:
            _write(buf, count, cap, h, s, gap)
    _advance(head, cap)


@njit(cache=True)
def reset_slot(buf: np.ndarray, count: np.ndarray, slot: int) -> None:
    """Free a slot (or ready it for a new product): all rows NaN, count 0."""
    buf[slot, :, :] = np.nan
    count[slot] = 0


@njit(cache=True)
def load_slot(
    buf: np.ndarray, head: np.ndarray, count: np.ndarray, slot: int, rows: np.ndarray
) -> None:
    """Replace a slot's history by rows (oldest first), the last row being the newest bar.

    For backfilling a slot added mid-run: rows must be aligned with the other slots' bars
    (rows[-1] has the TIME of the last pushed bar). Only the last `capacity` rows are kept.
    """
    reset_slot(buf, count, slot)
    cap = buf.shape[1] // 2
    n = min(rows.shape[0], cap)
    first = rows.shape[0] - n
    for k in range(n):
        h = (head[0] - n + k) % cap
        _write(buf, count, cap, h, slot, rows[first + k])


@njit(cache=True)
def last_n(buf: np.ndarray, head: np.ndarray, slot: int, n: int) -> np.ndarray:
    """The slot's last n rows, oldest first: a view float64[n, FIELDS] into buf."""
    cap = buf.shape[1] // 2
    if n < 0 or n > cap:
        raise ValueError("n must be in [0, capacity]")
    end = head[0] + cap
    return buf[slot, end - n : end]


@njit(cache=True)
def last_n_all(buf: np.ndarray, head: np.ndarray, n: int) -> np.ndarray:
    """Every slot's last n rows, oldest first: a view float64[products, n, FIELDS] into buf."""
    cap = buf.shape[1] // 2
    if n < 0 or n > cap:
        raise ValueError("n must be in [0, capacity]")
    end = head[0] + cap
    return buf[:, end - n : end]


def warmup() -> None:
    """Compile every kernel of this module on tiny arrays."""
    w = new_window(2, 3)
    rows = np.ones((2, FIELDS))
    push_all(w.buf, w.head, w.count, rows)
    push_rows(w.buf, w.head, w.count, np.zeros(1, np.int64), rows[:1])
    load_slot(w.buf, w.head, w.count, 1, rows)
    last_n(w.buf, w.head, 0, 2)
    last_n_all(w.buf, w.head, 2)
    reset_slot(w.buf, w.count, 0)
