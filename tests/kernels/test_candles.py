"""Candle kernels against a plain-Python reference, on generated streams and real candles."""

from __future__ import annotations

import gzip
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.kernels import candles as ck
from trader.kernels import ring
from trader.kernels.candles import CLOSE, FIELDS, MINUTE_NS, OPEN, TIME, VOLUME

DATA = Path(__file__).resolve().parents[1] / "data"
NAN = float("nan")

Trade = tuple[int, int, float, float]  # slot, time_ns, price, size


class RefBuilder:
    """The 1-minute candle rules written plainly: one trade at a time, lists of trades."""

    def __init__(self, products: int) -> None:
        self.products = products
        self.minute: int | None = None
        self.trades: dict[tuple[int, int], list[tuple[int, int, float, float]]] = defaultdict(list)
        self.last = [NAN] * products
        self.active = [False] * products
        self.seq = 0
        self.late = self.bad = 0
        self.rows: list[list[list[float]]] = []

    def fold(self, slot: int, t: int, price: float, size: float) -> None:
        valid = 0 <= slot < self.products and self.active[slot] and t >= 0
        if not (valid and 0 < price < math.inf and 0 < size < math.inf):
            self.bad += 1
            return
        m = t // MINUTE_NS
        if self.minute is None:
            self.minute = m
        if m < self.minute:
            self.late += 1
            return
        while m > self.minute + 1:
            self.close()
        self.seq += 1
        self.trades[(slot, m)].append((t, self.seq, price, size))

    def close(self) -> None:
        if self.minute is None:
            return
        rows = []
        for s in range(self.products):
            trades = sorted(self.trades.pop((s, self.minute), []))
            if trades:
                prices = [p for _, _, p, _ in trades]
                volume = sum(q for _, _, _, q in trades)
                rows.append([self.minute * 60, prices[0], max(prices), min(prices), prices[-1]])
                rows[-1].append(volume)
                self.last[s] = prices[-1]
            else:
                rows.append([self.minute * 60, *[self.last[s]] * 4, 0.0])
        self.rows.append(rows)
        self.minute += 1

    def set_slot(self, slot: int, active: bool) -> None:
        self.active[slot] = active
        self.last[slot] = NAN
        for key in [k for k in self.trades if k[0] == slot]:
            del self.trades[key]


class Driver:
    """The kernels driven as the market layer would: one fold_trades call per frame."""

    def __init__(self, products: int) -> None:
        self.b = ck.new_builder(products)
        self.late = self.bad = 0
        self.rows: list[np.ndarray] = []

    def frame(self, trades: list[Trade]) -> None:
        slots = np.array([t[0] for t in trades], np.int64)
        times = np.array([t[1] for t in trades], np.int64)
        prices = np.array([t[2] for t in trades], np.float64)
        sizes = np.array([t[3] for t in trades], np.float64)
        off = 0
        while True:
            b = self.b
            late, bad, i = ck.fold_trades(
                b.clock, b.acc, b.active, slots[off:], times[off:], prices[off:], sizes[off:]
            )
            self.late += late
            self.bad += bad
            if i < 0:
                return
            off += i
            for _ in range(ck.closes_needed(b.clock, times[off])):
                self.close()

    def close(self) -> int:
        out = np.full((len(self.b.last), FIELDS), -7.0)
        minute_s = ck.close_minute(self.b.clock, self.b.acc, self.b.last, out)
        if minute_s >= 0:
            self.rows.append(out)
        return minute_s

    def set_slot(self, slot: int, active: bool) -> None:
        (ck.open_slot if active else ck.free_slot)(self.b.acc, self.b.last, self.b.active, slot)


def assert_rows_equal(got: np.ndarray, want: np.ndarray) -> None:
    """OHLC and time exactly (NaN equals NaN), volume within 1e-9 relative."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[..., :VOLUME], want[..., :VOLUME])
    np.testing.assert_allclose(got[..., VOLUME], want[..., VOLUME], rtol=1e-9, atol=0)


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, list[tuple]]:
    products = draw(st.integers(1, 4))
    t = draw(st.integers(0, 30_000_000)) * MINUTE_NS + draw(st.integers(0, MINUTE_NS - 1))
    prices = st.one_of(
        st.sampled_from([100.0, 100.5, 101.0, 99.25]), st.floats(0.01, 1e6), st.just(NAN)
    )
    step = st.one_of(
        st.just(0),  # equal timestamps
        st.integers(1, 20_000_000_000),
        st.integers(-100_000_000_000, -1),  # behind: late, or an early trade of an open minute
        st.integers(60_000_000_000, 400_000_000_000),  # quiet minutes
    )
    events: list[tuple] = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["frame"] * 8 + ["close", "open", "free"]))
        if kind == "frame":
            trades = []
            for _ in range(draw(st.integers(1, 12))):
                dt = draw(step)
                t = max(0, t + dt) if dt >= 0 else t
                when = max(0, t + dt) if dt < 0 else t
                size = draw(st.one_of(st.floats(1e-8, 50.0), st.just(0.0)))
                trades.append((draw(st.integers(-1, products)), when, draw(prices), size))
            events.append(("frame", trades))
        elif kind == "close":
            events.append(("close",))
        else:
            events.append((kind, draw(st.integers(0, products - 1))))
    return products, events


@settings(max_examples=200, deadline=None)
@given(streams())
def test_candles_equal_reference(stream: tuple[int, list[tuple]]) -> None:
    products, events = stream
    ref, kern = RefBuilder(products), Driver(products)
    for s in range(products):
        ref.set_slot(s, True)
        kern.set_slot(s, True)
    for ev in events:
        if ev[0] == "frame":
            for trade in ev[1]:
                ref.fold(*trade)
            kern.frame(ev[1])
        elif ev[0] == "close":
            ref.close()
            kern.close()
        else:
            ref.set_slot(ev[1], ev[0] == "open")
            kern.set_slot(ev[1], ev[0] == "open")
    ref.close()
    kern.close()
    assert (kern.late, kern.bad) == (ref.late, ref.bad)
    assert len(kern.rows) == len(ref.rows)
    for got, want in zip(kern.rows, ref.rows, strict=True):
        assert_rows_equal(got, want)


def ref_resample(rows: np.ndarray, minutes: np.ndarray, interval_s: int) -> dict[int, list]:
    """Group 1-minute rows [n, products, 6] by interval start, skipping NaN rows, all emitted."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(minutes):
        groups[int(m) - int(m) % interval_s].append(i)
    out = {}
    for start, idx in groups.items():
        bars = []
        for s in range(rows.shape[1]):
            r = [rows[i, s] for i in idx if not math.isnan(rows[i, s, CLOSE])]
            if not r:
                bars.append([start, NAN, NAN, NAN, NAN, 0.0])
                continue
            hi, lo = max(x[2] for x in r), min(x[3] for x in r)
            bars.append([start, r[0][1], hi, lo, r[-1][4], sum(x[5] for x in r)])
        out[start] = bars
    return out


def fold_all(rows: np.ndarray, minutes: np.ndarray, interval_s: int) -> dict[int, np.ndarray]:
    """Fold minute after minute through fold_interval, as the market layer does."""
    iv = ck.new_interval(rows.shape[1], interval_s)
    emitted = {}
    for i, m in enumerate(minutes):
        out = np.empty((rows.shape[1], FIELDS))
        code = ck.fold_interval(iv.agg, iv.meta, rows[i], int(m), interval_s, out)
        assert code != ck.REJECTED
        if code != ck.FOLDED:
            first = minutes[0] - minutes[0] % interval_s
            partial = out[0, TIME] == first and minutes[0] != first
            assert code == (ck.EMITTED_PARTIAL if partial else ck.EMITTED)
            emitted[int(out[0, TIME])] = out
    return emitted


def random_minutes(seed: int, n: int, products: int) -> np.ndarray:
    """Random OHLCV rows [n, products, 6] with some NaN (no price) rows."""
    rng = np.random.default_rng(seed)
    o, c = rng.uniform(1, 100, (n, products)), rng.uniform(1, 100, (n, products))
    h = np.maximum(o, c) + rng.uniform(0, 5, (n, products))
    lo = np.minimum(o, c) - rng.uniform(0, 0.5, (n, products))
    rows = np.stack([np.zeros_like(o), o, h, lo, c, rng.uniform(0, 9, (n, products))], axis=-1)
    rows[rng.random((n, products)) < 0.2, OPEN : CLOSE + 1] = NAN
    rows[np.isnan(rows[..., CLOSE]), VOLUME] = 0.0
    return rows


@settings(max_examples=60, deadline=None)
@given(
    interval_s=st.sampled_from([60, 120, 300, 900, 3600, 14_400, 86_400]),
    start=st.integers(20_000_000, 30_000_000),
    n=st.integers(1, 3000),
    products=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_fold_interval_equals_resampling(
    interval_s: int, start: int, n: int, products: int, seed: int
) -> None:
    rows = random_minutes(seed, n, products)
    minutes = (start + np.arange(n)) * 60
    rows[..., TIME] = minutes[:, None]
    got = fold_all(rows, minutes, interval_s)
    want = ref_resample(rows, minutes, interval_s)
    if (minutes[-1] + 60) % interval_s:
        del want[int(minutes[-1] - minutes[-1] % interval_s)]  # unfinished: not emitted
    assert sorted(got) == sorted(want)
    for start_s, bars in want.items():
        assert_rows_equal(got[start_s], bars)
    for s in range(products):
        series = ck.resample(np.ascontiguousarray(rows[:, s]), interval_s)
        assert_rows_equal(series, np.reshape([got[k][s] for k in sorted(got)], (-1, FIELDS)))


def one_frame(b: ck.Builder, trades: list[Trade]) -> tuple[int, int, int]:
    cols = list(zip(*trades, strict=True))
    return ck.fold_trades(
        b.clock,
        b.acc,
        b.active,
        np.array(cols[0], np.int64),
        np.array(cols[1], np.int64),
        np.array(cols[2], np.float64),
        np.array(cols[3], np.float64),
    )


def close(b: ck.Builder) -> tuple[int, np.ndarray]:
    out = np.empty((len(b.last), FIELDS))
    return ck.close_minute(b.clock, b.acc, b.last, out), out


def test_late_pending_and_ties() -> None:
    b = ck.new_builder(2)
    ck.open_slot(b.acc, b.last, b.active, 0)
    m = 28_000_000 * MINUTE_NS
    # next minute folds at once; equal times: the first folded opens, the last folded closes
    trades = [(0, m + 5, 10.0, 1.0), (0, m + 5, 11.0, 1.0), (0, m + MINUTE_NS, 50.0, 1.0)]
    trades += [(0, m + 2, 9.0, 1.0), (0, m + 5, 12.0, 1.0), (0, m + 2 * MINUTE_NS, 1.0, 1.0)]
    assert one_frame(b, [*trades, (0, m, 2.0, 1.0)]) == (0, 0, 5)
    assert list(b.clock) == [m // MINUTE_NS, m + MINUTE_NS]
    minute_s, out = close(b)
    assert minute_s == m // 10**9
    assert_rows_equal(out[0], [minute_s, 9.0, 12.0, 9.0, 12.0, 4.0])
    assert np.isnan(out[1, OPEN:VOLUME]).all() and out[1, VOLUME] == 0.0  # free slot: no price
    assert one_frame(b, [(0, m + 59 * 10**9, 3.0, 1.0), (1, m + MINUTE_NS, 3.0, 1.0)]) == (1, 1, -1)
    minute_s, out = close(b)
    assert_rows_equal(out[0], [minute_s, 50.0, 50.0, 50.0, 50.0, 1.0])


def test_quiet_minute_is_flat_and_slot_reuse_forgets() -> None:
    b = ck.new_builder(2)
    for s in range(2):
        ck.open_slot(b.acc, b.last, b.active, s)
    m = 28_000_000 * MINUTE_NS
    one_frame(b, [(0, m + 1, 10.0, 2.0), (1, m + 2, 20.0, 1.0), (1, m + MINUTE_NS, 21.0, 1.0)])
    close(b)
    ck.free_slot(b.acc, b.last, b.active, 1)
    ck.open_slot(b.acc, b.last, b.active, 1)
    minute_s, out = close(b)
    assert_rows_equal(out, [[minute_s, 10, 10, 10, 10, 0], [minute_s, NAN, NAN, NAN, NAN, 0]])


def test_minutes_due_with_grace() -> None:
    b = ck.new_builder(1)
    assert ck.minutes_due(b.clock, 0) == 0 and ck.closes_needed(b.clock, 10**18) == 0
    m = 28_000_000 * MINUTE_NS
    ck.note_time(b.clock, m + 3)
    assert ck.minutes_due(b.clock, 200_000_000) == 0
    ck.note_time(b.clock, m + MINUTE_NS + 100_000_000)
    assert ck.minutes_due(b.clock, 200_000_000) == 0
    assert ck.minutes_due(b.clock, 100_000_000) == 1
    ck.note_time(b.clock, m + 5 * MINUTE_NS)
    assert ck.minutes_due(b.clock, 0) == 5
    assert ck.closes_needed(b.clock, m + 5 * MINUTE_NS) == 4


def test_fold_interval_rejects_a_skipped_minute_and_forgets_a_freed_slot() -> None:
    iv = ck.new_interval(2, 300)
    rows = np.array([[0, 5, 6, 4, 5, 1.0], [0, 7, 8, 6, 7, 1.0]])
    out = np.empty_like(rows)
    assert ck.fold_interval(iv.agg, iv.meta, rows, 600, 300, out) == ck.FOLDED
    assert ck.fold_interval(iv.agg, iv.meta, rows, 720, 300, out) == ck.REJECTED
    ck.free_interval_slot(iv.agg, 1)
    for minute_s in (660, 720, 780):
        assert ck.fold_interval(iv.agg, iv.meta, rows, minute_s, 300, out) == ck.FOLDED
    assert ck.fold_interval(iv.agg, iv.meta, rows, 840, 300, out) == ck.EMITTED
    assert_rows_equal(out, [[600, 5, 6, 4, 5, 5.0], [600, 7, 8, 6, 7, 4.0]])
    with pytest.raises(ValueError):
        ck.new_interval(2, 90)
    with pytest.raises(ValueError):
        ck.fold_interval(iv.agg, iv.meta, rows, 601, 300, out)


def test_shared_layout_and_warmup() -> None:
    names = ["TIME", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME", "FIELDS"]
    assert [getattr(ck, n) for n in names] == [getattr(ring, n) for n in names]
    ck.warmup()


def load_candles(name: str) -> np.ndarray:
    with gzip.open(DATA / name, "rt") as f:
        assert f.readline().strip() == "time,open,high,low,close,volume"
        return np.loadtxt(f, delimiter=",", ndmin=2)


def segments(rows: np.ndarray) -> list[np.ndarray]:
    """Split at gaps longer than a day: those are separate recordings, not quiet minutes."""
    cuts = np.flatnonzero(np.diff(rows[:, TIME]) > 86_400) + 1
    return np.split(rows, cuts)


def synth_trades(rows: np.ndarray) -> list[Trade]:
    """Four trades per candle, in exchange order: open, high and low inside, close last."""
    trades = []
    for i, (t, o, h, lo, c, v) in enumerate(rows):
        t_ns = int(t) * 10**9
        mid = [h, lo] if i % 2 else [lo, h]
        for k, (dt_s, p) in enumerate(zip([1, 20, 20, 59], [o, *mid, c], strict=True)):
            trades.append((0, t_ns + dt_s * 10**9 + k % 2, p, v / 4))
    return trades


def fill_gaps(rows: np.ndarray) -> np.ndarray:
    """The file's candles with each missing minute as a flat zero-volume candle."""
    out = []
    for row in rows:
        while out and out[-1][TIME] + 60 < row[TIME]:
            prev = out[-1]
            out.append([prev[TIME] + 60, *[prev[CLOSE]] * 4, 0.0])
        out.append(list(row))
    return np.array(out)


def test_real_candles_rebuilt_from_trades() -> None:
    data = load_candles("coinbase_BTC-USD_1m.csv.gz")
    assert len(data) > 50_000
    for seg in segments(data):
        kern = Driver(2)
        kern.set_slot(0, True)
        kern.set_slot(1, True)  # never trades: NaN prices, zero volume
        trades = synth_trades(seg)
        for k in range(0, len(trades), 37):
            kern.frame(trades[k : k + 37])
            for _ in range(ck.minutes_due(kern.b.clock, 250_000_000)):
                kern.close()
        ck.note_time(kern.b.clock, int(seg[-1, TIME] + 61) * 10**9)
        for _ in range(ck.minutes_due(kern.b.clock, 250_000_000)):
            kern.close()
        assert (kern.late, kern.bad) == (0, 0)
        got = np.array(kern.rows)
        want = fill_gaps(seg)
        assert_rows_equal(got[:, 0], want)
        assert np.isnan(got[:, 1, OPEN:VOLUME]).all() and (got[:, 1, VOLUME] == 0).all()
        minutes = want[:, TIME].astype(np.int64)
        for interval_s in (300, 3600, 86_400):
            folded = fold_all(got, minutes, interval_s)
            expect = ref_resample(want[:, None], minutes, interval_s)
            assert len(folded) >= len(expect) - 1
            for start_s, bars in folded.items():
                assert_rows_equal(bars[0], expect[start_s][0])
