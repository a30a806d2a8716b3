"""The columnar trade path: frames parsed into columns, deduplicated by the feed, folded late
by the market; each equal to the per-trade path it replaces on the hot path."""

from __future__ import annotations

import json
import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.coinbase.test_messages import FUZZ, TRADES, trade_dicts
from tests.recordings import advanced_trade_frames
from trader.coinbase import messages
from trader.coinbase.feed import MarketFeed
from trader.coinbase.messages import TradeColumns, parse_frame
from trader.errors import FrameError
from trader.market.candles import Market
from trader.types import Heartbeat, Quote, Side

NS = 1_000_000_000
T0 = 1_700_000_000 // 3600 * 3600


def columns_of(trades) -> TradeColumns:
    """The per-trade values (wire order) as the columns the hot path yields (oldest first)."""
    rows = list(reversed(trades))
    return TradeColumns(*([getattr(t, name) for t in rows] for name in
                          ("product_id", "trade_id", "price", "size", "side", "time_ns")))


def outcome(raw: bytes, trade_columns: bool) -> object:
    try:
        return parse_frame(raw, trade_columns)
    except FrameError as exc:
        return exc.reason


def test_recorded_trade_frames_give_the_same_values_as_columns():
    seen = 0
    for record in advanced_trade_frames():
        frame = parse_frame(record.data)
        if frame.channel != "market_trades":
            continue
        columnar = parse_frame(record.data, trade_columns=True)
        assert columnar._replace(values=()) == frame._replace(values=())
        assert columnar.values == (columns_of(frame.values),)
        seen += len(frame.values)
    assert seen > 200  # two 100-trade snapshots and the updates


@FUZZ
@given(st.lists(st.lists(trade_dicts(), max_size=3), min_size=1, max_size=2))
def test_columns_accept_and_reject_exactly_what_trade_values_do(events):
    body = {"channel": "market_trades", "timestamp": "2026-08-09T21:05:54.379555714Z",
            "sequence_num": 7, "events": [{"type": "update", "trades": t} for t in events]}
    raw = json.dumps(body).encode()
    values, columnar = outcome(raw, False), outcome(raw, True)
    if isinstance(values, str):
        assert columnar == values  # the same FrameError reason
    else:
        assert columnar.values == (columns_of(values.values),)
        assert all(type(v) is type(w) for v, w in zip(columnar.values[0].prices,
                                                      columns_of(values.values).prices,
                                                      strict=True))


def test_columns_of_an_empty_trade_list():
    frame = parse_frame((TRADES % "").encode(), trade_columns=True)
    assert frame.values == (TradeColumns([], [], [], [], [], []),)


# ---- the feed: sequence and trade-id checks on columns ---------------------------------------


class Sink:
    def __init__(self) -> None:
        self.trades: list[tuple[str, int, float, float]] = []
        self.gaps: list[tuple[int, int]] = []

    def on_trade_columns(self, product_ids, times_ns, prices, sizes) -> None:
        self.trades += zip(product_ids, times_ns, prices, sizes, strict=True)

    def on_heartbeat(self, heartbeat: Heartbeat) -> None:
        pass

    def on_quote(self, quote: Quote) -> None:
        pass

    def on_gap(self, from_ns: int, to_ns: int) -> None:
        self.gaps.append((from_ns, to_ns))


def trades_frame(seq: int, *trades: tuple[str, int, int]) -> bytes:
    """A market_trades frame of (product, trade id, second) prints, given oldest first."""
    prints = [{"product_id": p, "trade_id": str(i), "price": "10.5", "size": "2",
               "time": f"2026-08-09T21:05:{s:02d}.25Z", "side": "BUY"}
              for p, i, s in reversed(trades)]
    return json.dumps({"channel": "market_trades", "timestamp": "2026-08-09T21:05:59.5Z",
                       "sequence_num": seq, "events": [{"type": "update",
                                                        "trades": prints}]}).encode()


def test_repeated_trades_are_dropped_and_id_jumps_are_gaps():
    sink = Sink()
    feed = MarketFeed("ws://unused", ["A-USD", "B-USD"], sink, 10.0)
    feed.on_raw_frame(trades_frame(0, ("A-USD", 1, 1), ("B-USD", 7, 1), ("A-USD", 2, 2)))
    feed.on_raw_frame(trades_frame(1, ("A-USD", 2, 2), ("A-USD", 3, 3), ("B-USD", 9, 4),
                                   ("B-USD", 8, 4), ("A-USD", 3, 3)))
    feed.on_raw_frame(trades_frame(2, ("A-USD", 1, 1)))  # all repeated: nothing delivered
    assert [(p, t // NS % 60) for p, t, _, _ in sink.trades] == [
        ("A-USD", 1), ("B-USD", 1), ("A-USD", 2), ("A-USD", 3), ("B-USD", 4)]
    assert feed.counters["trades"] == 5 and feed.counters["repeated_trades"] == 4
    assert feed.counters["trade_id_gaps"] == 1 and len(sink.gaps) == 1
    assert sink.gaps[0][1] - sink.gaps[0][0] == 1 * NS


def test_a_bad_frame_is_counted_and_changes_no_state():
    sink = Sink()
    feed = MarketFeed("ws://unused", ["A-USD"], sink, 10.0)
    feed.on_raw_frame(trades_frame(0, ("A-USD", 1, 1)))
    bad = trades_frame(1, ("A-USD", 2, 2), ("A-USD", 3, 3)).replace(b'"10.5"', b'"nan"', 1)
    feed.on_raw_frame(bad)
    feed.on_raw_frame(trades_frame(1, ("A-USD", 2, 2)))
    assert feed.bad_frames == {"bad_number": 1}
    assert feed.counters["sequence_gaps"] == 0 and not sink.gaps
    assert len(sink.trades) == 2


# ---- the market: trades held until a minute closes equal trades folded at once ---------------


def random_frames(rng: random.Random, products: list[str]) -> list[list[tuple]]:
    """Frames of (product, time s, price, size) over ten minutes, some late, some unknown."""
    frames, now = [], T0 + 1.0
    for _ in range(600):
        now += rng.expovariate(1.5)
        frame = []
        for _ in range(rng.choice([1, 1, 1, 2, 3, 10])):
            late = rng.random() < 0.03
            at = now - rng.uniform(60, 120) if late else now - rng.uniform(0, 0.5)
            product = rng.choice([*products, "NOT-SUBSCRIBED"])
            frame.append((product, at, rng.uniform(90, 110), rng.choice([0.1, 1.0, 2.5])))
        frames.append(frame)
    return frames


def replay(frames: list[list[tuple]], products: list[str], flush_each: bool) -> Market:
    market = Market(products, [60, 300], capacity=20, grace_ms=1500, warmup_bars=0)
    market.advance(T0 * NS)
    for frame in frames:
        ids, times, prices, sizes = (list(c) for c in zip(*frame, strict=True))
        market.on_trade_columns(ids, [int(t * NS) for t in times], prices, sizes)
        if flush_each:
            market.flush()
        market.advance(int(frame[-1][1] * NS))
        for span in market.repairs_needed():
            market.apply_repair(span, None)
    market.flush()
    return market


def test_deferred_folding_equals_folding_every_frame_at_once():
    products = ["A-USD", "B-USD", "C-USD"]
    frames = random_frames(random.Random(4), products)
    deferred, immediate = replay(frames, products, False), replay(frames, products, True)
    assert deferred.counters == immediate.counters
    assert deferred.counters["late_trades"] > 0 and deferred.counters["minutes_emitted"] >= 5
    for interval_s in (60, 300):
        np.testing.assert_array_equal(deferred.windows[interval_s].buf,
                                      immediate.windows[interval_s].buf)


def test_a_removed_products_pending_trades_fold_before_its_slot_is_freed():
    market = Market(["A-USD", "B-USD"], [60], capacity=5, grace_ms=0, warmup_bars=0)
    market.advance(T0 * NS)
    market.on_trade_columns(["B-USD"], [(T0 + 5) * NS], [10.0], [1.0])
    market.set_products(["A-USD"])
    assert market.counters["trades"] == 1 and market.counters["bad_trades"] == 0


def test_side_columns_are_the_aggressors():
    frame = parse_frame(trades_frame(0, ("A-USD", 1, 1)), trade_columns=True)
    assert frame.values[0].sides == [Side.SELL]  # the wire's "BUY" is the maker's
    assert messages.TradeColumns._fields == ("product_ids", "trade_ids", "prices", "sizes",
                                             "sides", "times_ns")


def test_a_frame_without_trades_reaches_no_one():
    sink = Sink()
    feed = MarketFeed("ws://unused", ["A-USD"], sink, 10.0)
    feed.on_raw_frame(trades_frame(0))
    assert feed.counters["frames"] == 1 and not sink.trades and not feed.bad_frames
    market = Market(["A-USD"], [60], capacity=5, grace_ms=0, warmup_bars=0)
    market.advance(T0 * NS)
    market.on_trade_columns([], [], [], [])
    market.on_trades([])
    assert market.counters["trades"] == 0
