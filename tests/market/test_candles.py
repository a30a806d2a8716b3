"""The market's emission rules: dirty minutes wait for repair, quiet minutes carry the close."""

from __future__ import annotations

import numpy as np

from trader.kernels import ring
from trader.kernels.series import CandleArrays
from trader.market.candles import Market, RepairSpan
from trader.types import Side, Trade

T0 = 1_700_000_000 // 3600 * 3600  # an hour boundary, unix s
NS = 1_000_000_000


def trade(product: str, trade_id: int, at_s: float, price: float, size: float = 1.0) -> Trade:
    return Trade(product, trade_id, price, size, Side.BUY, int(at_s * NS))


def candles(*rows: tuple[int, float, float, float, float, float]) -> CandleArrays:
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return CandleArrays(np.array(columns[0], np.int64),
                        *(np.array(c, np.float64) for c in columns[1:]))


def started_market(products=("AAA-USD", "BBB-USD"), spare_slots: int = 8) -> Market:
    """A market started at T0 + 1 s with no warm-up, its first (partial) minute repaired."""
    market = Market(products, [60, 300], capacity=50, grace_ms=1000, warmup_bars=0,
                    spare_slots=spare_slots)
    market.advance((T0 + 1) * NS)
    market.advance((T0 + 61) * NS)
    for product in products:
        market.apply_repair(RepairSpan(product, T0, T0 + 60), candles())
    return market


def last_rows(market: Market, n: int) -> dict[str, np.ndarray]:
    window = market.windows[60]
    return {p: ring.last_n(window.buf, window.head, s, n).copy() for p, s in market.slots.items()}


def test_trades_before_the_first_heartbeat_are_left_to_rest():
    market = Market(["AAA-USD"], [60], capacity=10, grace_ms=0, warmup_bars=0)
    market.on_trades([trade("AAA-USD", 1, T0 + 5, 100.0)])
    assert market.counters["trades_before_start"] == 1 and not market.queue


def test_the_partial_first_minute_waits_for_its_repair():
    market = Market(["AAA-USD"], [60], capacity=10, grace_ms=0, warmup_bars=0)
    market.advance((T0 + 30) * NS)
    market.on_trades([trade("AAA-USD", 1, T0 + 40, 100.0)])
    market.advance((T0 + 61) * NS)
    assert market.last_emitted_s is None and len(market.queue) == 1
    [span] = market.repairs_needed()
    assert span == RepairSpan("AAA-USD", T0, T0 + 60)
    market.apply_repair(span, candles((T0, 99.0, 101.0, 98.0, 100.0, 7.0)))
    assert market.last_emitted_s == T0
    assert last_rows(market, 1)["AAA-USD"].tolist() == [[T0, 99.0, 101.0, 98.0, 100.0, 7.0]]


def test_a_gap_holds_every_later_minute_until_the_repair_then_quiet_minutes_follow_it():
    market = started_market()
    market.on_trades([trade("AAA-USD", 1, T0 + 70, 10.0), trade("BBB-USD", 1, T0 + 75, 20.0)])
    market.mark_dirty((T0 + 80) * NS, (T0 + 130) * NS)  # prints of minutes 1 and 2 may be lost
    market.advance((T0 + 4 * 60 + 2) * NS)  # minutes 1..3 close; minute 3 is quiet
    assert market.last_emitted_s == T0 and len(market.queue) == 3
    spans = market.repairs_needed()
    assert spans == [RepairSpan("AAA-USD", T0 + 60, T0 + 180),
                     RepairSpan("BBB-USD", T0 + 60, T0 + 180)]
    market.apply_repair(spans[0], candles((T0 + 60, 10.0, 12.0, 9.0, 11.0, 3.0),
                                          (T0 + 120, 11.0, 11.0, 10.5, 10.5, 1.0)))
    assert market.last_emitted_s == T0  # BBB-USD still waits
    market.apply_repair(spans[1], candles((T0 + 60, 20.0, 20.0, 20.0, 20.0, 1.0)))
    assert market.last_emitted_s == T0 + 180
    rows = last_rows(market, 3)
    assert rows["AAA-USD"][:, 1:].tolist() == [[10.0, 12.0, 9.0, 11.0, 3.0],
                                               [11.0, 11.0, 10.5, 10.5, 1.0],
                                               [10.5, 10.5, 10.5, 10.5, 0.0]]
    assert rows["BBB-USD"][:, 1:].tolist() == [[20.0] * 4 + [1.0], [20.0] * 4 + [0.0],
                                               [20.0] * 4 + [0.0]]
    assert market.counters["minutes_repaired"] == 2 + 4  # the first minute, then the gap


def test_growing_the_slots_keeps_history_and_alignment():
    market = started_market(("AAA-USD",), spare_slots=0)
    market.on_trades([trade("AAA-USD", 1, T0 + 61, 5.0)])
    market.advance((T0 + 122) * NS)
    before = last_rows(market, 2)["AAA-USD"]
    added, removed = market.set_products(["AAA-USD", "BBB-USD", "CCC-USD"])
    assert (added, removed) == (["BBB-USD", "CCC-USD"], [])
    assert market.counters["slot_growths"] == 2
    np.testing.assert_array_equal(last_rows(market, 2)["AAA-USD"], before)
    market.on_trades([trade("CCC-USD", 1, T0 + 125, 7.0)])
    market.advance((T0 + 182) * NS)
    assert market.last_emitted_s == T0 + 60  # the new products' first minute waits
    for span in market.repairs_needed():
        market.apply_repair(span, candles((T0 + 120, 7.0, 7.0, 7.0, 7.0, 1.0))
                            if span.product_id == "CCC-USD" else candles())
    rows = last_rows(market, 1)
    assert market.last_emitted_s == T0 + 120
    assert rows["CCC-USD"][0, 1:].tolist() == [7.0, 7.0, 7.0, 7.0, 1.0]
    assert rows["AAA-USD"][0, 1:].tolist() == [5.0, 5.0, 5.0, 5.0, 0.0]
    assert np.isnan(rows["BBB-USD"][0, 4])  # never traded: no price to carry


def test_a_removed_product_frees_its_slot_and_stops_holding_minutes():
    market = started_market()
    market.mark_dirty((T0 + 61) * NS, (T0 + 62) * NS)
    market.advance((T0 + 122) * NS)
    assert market.repairs_needed()
    market.set_products(["AAA-USD"])
    market.apply_repair(RepairSpan("AAA-USD", T0 + 60, T0 + 120), candles())
    assert market.last_emitted_s == T0 + 60 and list(market.slots) == ["AAA-USD"]


def test_five_minute_bars_fold_from_emitted_minutes():
    market = started_market(("AAA-USD",))
    for minute in range(1, 5):
        market.on_trades([trade("AAA-USD", minute, T0 + 60 * minute + 5, 100.0 + minute,
                                size=2.0)])
    market.advance((T0 + 302) * NS)
    window = market.windows[300]
    bars = ring.last_n(window.buf, window.head, market.slots["AAA-USD"], 1)
    assert bars.tolist() == [[T0, 101.0, 104.0, 101.0, 104.0, 8.0]]
