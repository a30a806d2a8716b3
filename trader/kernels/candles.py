"""1-minute candles built from trades by exchange time, and higher intervals folded from them.

Layout and conventions, shared by every kernel here (state is passed in explicitly):

- Times in: trade times are int64 unix ns. Minute m is [m * MINUTE_NS, (m + 1) * MINUTE_NS).
- `clock`  int64[2]: [CLOCK_MINUTE] the oldest open minute m (-1 until the first trade or
  `note_time`), [CLOCK_LATEST] the latest exchange time seen, ns. The minute is shared by all
  slots: every product closes a minute together.
- `acc`    float64[2, products, ACC_FIELDS]: the two open minutes m and m + 1, at index minute & 1.
  Trades of m + 1 are folded while m waits for its close grace (DESIGN: a minute closes when
  exchange time passes its end plus close_grace_ms), so nothing has to be held back in Python.
  A trade of m + 2 or later returns its index (`fold_trades`); the caller closes first.
  Fields TRADES, OPEN, HIGH, LOW, CLOSE, VOLUME (the row indices), T_OPEN, T_CLOSE (ns into
  the minute: exact in a float64).
  Open is the trade with the smallest time, close the one with the largest; equal times resolve
  by call order (first folded opens, last folded closes): feed each frame in exchange order.
- `last`   float64[products]: close of the slot's last closed candle, NaN if it has none.
- `active` bool[products]: trades for an inactive slot are rejected as bad input.
- Rows out (the windows' layout, see ring.py): float64[products, 6] TIME (bar open, unix s),
  OPEN, HIGH, LOW, CLOSE, VOLUME. A slot with no trade in the minute gets a flat zero-volume
  candle at `last`; with no previous close at all (or a free slot) its prices are NaN, volume 0.
- Higher intervals (any multiple of 60 s up to 1 day, aligned to the unix epoch): `agg`
  float64[products, 6] in the row layout, `meta` int64[3] = [start s or -1, minutes folded,
  next expected minute s]. NaN rows are skipped, so a fold equals resampling the 1-minute rows.

Calling pattern (Python makes one kernel call per batch of frames and a few per bar close):
    _, _, i = fold_trades(clock, acc, active, slots, times_ns, prices, sizes)  # per batch
    while i >= 0: close `closes_needed(clock, times_ns[i])` minutes, fold from i on again
    after a frame or heartbeat: close `minutes_due(clock, grace_ns)` minutes, each one:
        minute_s = close_minute(clock, acc, last, rows); push rows to the 1m window;
        fold_interval(agg, meta, rows, minute_s, interval_s, out) per interval, push if emitted
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

MINUTE_NS = 60_000_000_000
TIME, OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4, 5
FIELDS = 6
TRADES, T_OPEN, T_CLOSE = 0, 6, 7  # acc: TRADES where rows have TIME, then OPEN..VOLUME
ACC_FIELDS = 8
CLOCK_MINUTE, CLOCK_LATEST = 0, 1
META_START, META_MINUTES, META_NEXT = 0, 1, 2
MAX_INTERVAL_S = 86_400

# fold_interval return codes
FOLDED = 0  # folded; the interval is not over
EMITTED = 1  # the interval's last minute: `out` holds the complete bars
EMITTED_PARTIAL = 2  # as EMITTED, but the fold began after the interval's first minute
REJECTED = -1  # not the minute after the previous one: nothing changed; reset, then refold


class Builder(NamedTuple):
    """The state arrays of the 1-minute candle builder."""

    clock: np.ndarray
    acc: np.ndarray
    last: np.ndarray
    active: np.ndarray


class Interval(NamedTuple):
    """The state arrays of one higher interval's fold."""

    agg: np.ndarray
    meta: np.ndarray
    interval_s: int


def new_builder(products: int) -> Builder:
    """A builder with every slot free and no minute open."""
    acc = np.zeros((2, products, ACC_FIELDS))
    last = np.full(products, np.nan)
    return Builder(np.array([-1, -1], np.int64), acc, last, np.zeros(products, np.bool_))


def new_interval(products: int, interval_s: int) -> Interval:
    """An empty fold for bars of interval_s seconds."""
    if interval_s <= 0 or interval_s % 60 != 0 or interval_s > MAX_INTERVAL_S:
        raise ValueError(f"interval_s must be a multiple of 60 in [60, 86400], got {interval_s}")
    meta = np.array([-1, 0, -1], np.int64)
    return Interval(np.full((products, FIELDS), np.nan), meta, interval_s)


@njit(cache=True)
def open_slot(acc: np.ndarray, last: np.ndarray, active: np.ndarray, slot: int) -> None:
    """Ready a slot for a new product: no trades, no previous close, active."""
    free_slot(acc, last, active, slot)
    active[slot] = True


@njit(cache=True)
def free_slot(acc: np.ndarray, last: np.ndarray, active: np.ndarray, slot: int) -> None:
    """Free a slot: its open minutes and previous close are forgotten, its trades rejected."""
    for k in range(2):
        acc[k, slot, :] = 0.0
    last[slot] = np.nan
    active[slot] = False


@njit(cache=True)
def _fold_one(a, s, t_off, price, size):
    if a[s, TRADES] == 0.0:
        a[s, OPEN] = a[s, HIGH] = a[s, LOW] = a[s, CLOSE] = price
        a[s, VOLUME] = size
        a[s, TRADES] = 1.0
        a[s, T_OPEN] = a[s, T_CLOSE] = t_off
        return
    if t_off < a[s, T_OPEN]:
        a[s, OPEN] = price
        a[s, T_OPEN] = t_off
    if t_off >= a[s, T_CLOSE]:
        a[s, CLOSE] = price
        a[s, T_CLOSE] = t_off
    a[s, HIGH] = max(a[s, HIGH], price)
    a[s, LOW] = min(a[s, LOW], price)
    a[s, VOLUME] += size
    a[s, TRADES] += 1.0


@njit(cache=True)
def fold_trades(
    clock: np.ndarray,
    acc: np.ndarray,
    active: np.ndarray,
    slots: np.ndarray,
    times_ns: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
) -> tuple[int, int, int]:
    """Fold trades (frames, in arrival order); returns (n_late, n_bad, i_pending).

    Late: its minute is closed; bad: inactive or unknown slot, time < 0, price or size not
    finite and > 0. Both are skipped and counted. i_pending is the index of the first trade
    of minute clock + 2 or later (nothing from it on is folded), -1 if all were handled:
    close minutes until `closes_needed(clock, times_ns[i_pending])` is 0, then fold the rest.
    """
    n_late = 0
    n_bad = 0
    for i in range(times_ns.shape[0]):
        s, t, p, q = slots[i], times_ns[i], prices[i], sizes[i]
        ok = 0 <= s < active.shape[0] and t >= 0 and 0.0 < p < np.inf and 0.0 < q < np.inf
        if not ok or not active[s]:
            n_bad += 1
            continue
        m = t // MINUTE_NS
        if clock[CLOCK_MINUTE] < 0:
            clock[CLOCK_MINUTE] = m
        cur = clock[CLOCK_MINUTE]
        if m < cur:
            n_late += 1
        elif m > cur + 1:
            return n_late, n_bad, i
        else:
            clock[CLOCK_LATEST] = max(clock[CLOCK_LATEST], t)
            _fold_one(acc[m & 1], s, float(t - m * MINUTE_NS), p, q)
    return n_late, n_bad, -1


@njit(cache=True)
def note_time(clock: np.ndarray, time_ns: int) -> None:
    """Record an exchange time seen without a trade (a heartbeat); starts the clock if unset."""
    if clock[CLOCK_MINUTE] < 0:
        clock[CLOCK_MINUTE] = time_ns // MINUTE_NS
    clock[CLOCK_LATEST] = max(clock[CLOCK_LATEST], time_ns)


@njit(cache=True)
def minutes_due(clock: np.ndarray, grace_ns: int) -> int:
    """How many open minutes ended at least grace_ns before the latest exchange time seen."""
    if clock[CLOCK_MINUTE] < 0:
        return 0
    return max(0, (clock[CLOCK_LATEST] - grace_ns) // MINUTE_NS - clock[CLOCK_MINUTE])


@njit(cache=True)
def closes_needed(clock: np.ndarray, time_ns: int) -> int:
    """How many minutes must close before a trade at time_ns can be folded."""
    if clock[CLOCK_MINUTE] < 0:
        return 0
    return max(0, time_ns // MINUTE_NS - clock[CLOCK_MINUTE] - 1)


@njit(cache=True)
def close_minute(clock: np.ndarray, acc: np.ndarray, last: np.ndarray, out: np.ndarray) -> int:
    """Close the oldest open minute for every slot into out[products, 6]; returns its start, s.

    Returns -1 (out untouched) if no minute is open yet.
    """
    m = clock[CLOCK_MINUTE]
    if m < 0:
        return -1
    a = acc[m & 1]
    t_s = float(m * 60)
    for s in range(a.shape[0]):
        out[s, TIME] = t_s
        if a[s, TRADES] > 0.0:
            for f in range(OPEN, VOLUME + 1):
                out[s, f] = a[s, f]
            last[s] = a[s, CLOSE]
        else:
            p = last[s]
            out[s, OPEN] = out[s, HIGH] = out[s, LOW] = out[s, CLOSE] = p
            out[s, VOLUME] = 0.0
        a[s, TRADES] = 0.0
    clock[CLOCK_MINUTE] = m + 1
    return m * 60


@njit(cache=True)
def fold_interval(
    agg: np.ndarray,
    meta: np.ndarray,
    rows: np.ndarray,
    minute_s: int,
    interval_s: int,
    out: np.ndarray,
) -> int:
    """Fold the closed 1-minute rows of minute_s (unix s) for every slot; returns a code.

    EMITTED or EMITTED_PARTIAL: minute_s was the interval's last minute and out[products, 6]
    holds its bars (TIME = interval start). Minutes must come consecutively, else REJECTED.
    """
    if interval_s <= 0 or interval_s % 60 != 0 or interval_s > MAX_INTERVAL_S:
        raise ValueError("interval_s must be a multiple of 60 in [60, 86400]")
    if minute_s % 60 != 0:
        raise ValueError("minute_s must be a whole minute")
    if meta[META_START] < 0:
        _begin_interval(agg, meta, minute_s - minute_s % interval_s)
    elif minute_s != meta[META_NEXT]:
        return REJECTED
    for s in range(agg.shape[0]):
        _fold_row(agg, s, rows[s])
    meta[META_MINUTES] += 1
    meta[META_NEXT] = minute_s + 60
    if (minute_s + 60) % interval_s != 0:
        return FOLDED
    out[:, :] = agg
    meta[META_START] = -1
    return EMITTED if meta[META_MINUTES] == interval_s // 60 else EMITTED_PARTIAL


@njit(cache=True)
def _begin_interval(agg, meta, start_s):
    meta[META_START] = start_s
    meta[META_MINUTES] = 0
    agg[:, :] = np.nan
    agg[:, TIME] = float(start_s)
    agg[:, VOLUME] = 0.0


@njit(cache=True)
def _fold_row(agg, s, row):
    if np.isnan(row[CLOSE]):
        return
    if np.isnan(agg[s, CLOSE]):
        agg[s, OPEN] = row[OPEN]
        agg[s, HIGH] = row[HIGH]
        agg[s, LOW] = row[LOW]
    else:
        agg[s, HIGH] = max(agg[s, HIGH], row[HIGH])
        agg[s, LOW] = min(agg[s, LOW], row[LOW])
    agg[s, CLOSE] = row[CLOSE]
    agg[s, VOLUME] += row[VOLUME]


@njit(cache=True)
def reset_interval(agg: np.ndarray, meta: np.ndarray) -> None:
    """Drop the unfinished interval of every slot; the next fold starts a new one."""
    meta[META_START] = -1
    meta[META_MINUTES] = 0
    meta[META_NEXT] = -1
    agg[:, :] = np.nan


@njit(cache=True)
def free_interval_slot(agg: np.ndarray, slot: int) -> None:
    """Forget a slot's unfinished interval, so a reused slot does not inherit its bars."""
    agg[slot, OPEN : CLOSE + 1] = np.nan
    agg[slot, VOLUME] = 0.0


@njit(cache=True)
def resample(rows: np.ndarray, interval_s: int) -> np.ndarray:
    """One product's consecutive 1-minute rows [n, 6] folded to interval_s bars [k, 6].

    The series twin of fold_interval: a first partial interval is emitted, an unfinished last
    one is not (as live). Raises ValueError if the minutes are not consecutive.
    """
    agg = np.full((1, FIELDS), np.nan)
    meta = np.array([-1, 0, -1], np.int64)
    res = np.empty((rows.shape[0] * 60 // interval_s + 1, FIELDS))
    k = 0
    for i in range(rows.shape[0]):
        t_s = int(rows[i, TIME])
        code = fold_interval(agg, meta, rows[i : i + 1], t_s, interval_s, res[k : k + 1])
        if code == REJECTED:
            raise ValueError("1-minute rows are not consecutive")
        if code != FOLDED:
            k += 1
    return res[:k].copy()


def warmup() -> None:
    """Compile every kernel of this module on tiny arrays."""
    b = new_builder(2)
    open_slot(b.acc, b.last, b.active, 0)
    t = np.array([0, 1, 2 * MINUTE_NS], np.int64)
    ones = np.ones(3)
    fold_trades(b.clock, b.acc, b.active, np.zeros(3, np.int64), t, ones, ones)
    note_time(b.clock, MINUTE_NS)
    minutes_due(b.clock, 0)
    closes_needed(b.clock, 2 * MINUTE_NS)
    out = np.empty((2, FIELDS))
    minute_s = close_minute(b.clock, b.acc, b.last, out)
    iv = new_interval(2, 120)
    fold_interval(iv.agg, iv.meta, out, minute_s, iv.interval_s, out)
    free_interval_slot(iv.agg, 1)
    reset_interval(iv.agg, iv.meta)
    resample(out[:1], 60)
    free_slot(b.acc, b.last, b.active, 0)
