"""Batch stepping of indicator states (trader/indicators.py) against each product's *_series."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from trader.kernels import indicators as k
from trader.kernels import ring
from trader.signals import indicators as ti

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
FILES = ("coinbase_BTC-USD_1m.csv.gz", "coinbase_ETH-USD_1m.csv.gz", "coinbase_LTC-USD_1m.csv.gz",
         "coinbase_BTC-EUR_1m.csv.gz")
BARS = 1200
CAPACITY = 400  # smaller than BARS: continuous stepping must not depend on the window


@cache
def candles(name: str) -> np.ndarray:
    """The first BARS rows (time, open, high, low, close, volume) of a real candle file."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.fail(f"missing real candle data {path}", pytrace=False)
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", skiprows=1, max_rows=BARS)


def series(spec: ti.Indicator, rows: np.ndarray) -> np.ndarray:
    """[bars, outputs]: the indicator computed from scratch with its *_series function."""
    h, lo, c, v = (np.ascontiguousarray(rows[:, f]) for f in (2, 3, 4, 5))
    p = [int(x) for x in spec.params]
    out = {
        ti.SMA: lambda: k.sma_series(c, p[0]), ti.EMA: lambda: k.ema_series(c, p[0]),
        ti.RSI: lambda: k.rsi_series(c, p[0]), ti.MACD: lambda: k.macd_series(c, *p),
        ti.BBANDS: lambda: k.bbands_series(c, p[0], spec.params[1]),
        ti.ATR: lambda: k.atr_series(h, lo, c, p[0]),
        ti.STOCH: lambda: k.stoch_series(h, lo, c, *p),
        ti.ADX: lambda: k.adx_series(h, lo, c, p[0]), ti.OBV: lambda: k.obv_series(c, v),
        ti.VWAP: lambda: k.vwap_series(h, lo, c, v, p[0]),
        ti.VOLATILITY: lambda: k.volatility_series(c, p[0]),
    }[spec.kind]()
    return np.column_stack(out if isinstance(out, tuple) else (out,))


SPECS = [ti.sma(7), ti.ema(21), ti.rsi(9), ti.macd(8, 21, 5), ti.bbands(15, 2.5), ti.atr(10),
         ti.stoch(7, 3, 4), ti.adx(12), ti.obv(), ti.vwap(30), ti.volatility(20)]


def push(window: ring.Window, rows_by_slot: dict[int, np.ndarray]) -> None:
    """One bar close: every listed slot gets its row, the others a gap."""
    slots = np.array(sorted(rows_by_slot), np.int64)
    ring.push_rows(window.buf, window.head, window.count, slots,
                   np.array([rows_by_slot[s] for s in slots]).reshape(-1, ring.FIELDS))


def test_batch_stepping_of_several_products_equals_each_products_series():
    data = {slot: candles(name) for slot, name in zip((0, 2, 3, 5), FILES, strict=True)}
    n = min(len(d) for d in data.values())
    owners = {name: slot for slot, name in zip(data, FILES, strict=True)}
    window = ring.new_window(6, CAPACITY)  # slots 1 and 4 stay free (gap rows)
    bank = ti.IndicatorBank(6)
    bank.require(SPECS)
    for t in range(n):
        push(window, {slot: rows[t] for slot, rows in data.items()})
        bank.on_bar_close(window, owners)
    for spec in SPECS:
        cols = bank.columns([spec])
        for slot, rows in data.items():
            expected = series(spec, rows[:n])
            np.testing.assert_array_equal(bank.now[slot, cols], expected[-1], err_msg=str(spec))
            np.testing.assert_array_equal(bank.prev[slot, cols], expected[-2], err_msg=str(spec))
        assert np.isnan(bank.now[[1, 4]][:, cols]).all()


def test_every_bar_of_the_batch_equals_the_series():
    rows = candles(FILES[1])
    window = ring.new_window(2, CAPACITY)
    bank = ti.IndicatorBank(2)
    bank.require(SPECS)
    expected = [series(spec, rows) for spec in SPECS]
    cols = [bank.columns([spec]) for spec in SPECS]
    for t in range(len(rows)):
        push(window, {1: rows[t]})
        bank.on_bar_close(window, {"ETH-USD": 1})
        for c, e in zip(cols, expected, strict=True):
            np.testing.assert_array_equal(bank.now[1, c], e[t])


def test_a_parameter_change_rewarms_from_the_window_and_equals_a_fresh_series():
    rows = candles(FILES[0])
    window = ring.new_window(1, CAPACITY)
    bank = ti.IndicatorBank(1)
    bank.require([ti.rsi(14), ti.ema(20)])
    for t in range(900):
        push(window, {0: rows[t]})
        bank.on_bar_close(window, {"BTC-USD": 0})
    bank.require([ti.rsi(21), ti.ema(20)])  # hot reload: rsi period 14 -> 21
    push(window, {0: rows[900]})
    bank.on_bar_close(window, {"BTC-USD": 0})
    fresh = series(ti.rsi(21), rows[901 - CAPACITY : 901])  # from scratch over the window
    assert bank.now[0, bank.columns([ti.rsi(21)])][0] == fresh[-1, 0]
    assert bank.prev[0, bank.columns([ti.rsi(21)])][0] == fresh[-2, 0]
    # the kept indicator was not rebuilt: it still equals the series over all 901 bars
    assert bank.now[0, bank.columns([ti.ema(20)])][0] == series(ti.ema(20), rows[:901])[-1, 0]
    push(window, {0: rows[901]})
    bank.on_bar_close(window, {"BTC-USD": 0})
    fresh = series(ti.rsi(21), rows[901 - CAPACITY : 902])
    assert bank.now[0, bank.columns([ti.rsi(21)])][0] == fresh[-1, 0]


def test_a_slot_taken_by_a_new_product_is_rebuilt_from_its_window():
    a, b = candles(FILES[0]), candles(FILES[1])
    window = ring.new_window(1, CAPACITY)
    bank = ti.IndicatorBank(1)
    bank.require([ti.macd(12, 26, 9)])
    for t in range(500):
        push(window, {0: a[t]})
        bank.on_bar_close(window, {"BTC-USD": 0})
    # the market frees the slot, gives it to ETH-USD and loads its history, then a bar closes
    ring.load_slot(window.buf, window.head, window.count, 0, b[:300])
    push(window, {0: b[300]})
    bank.on_bar_close(window, {"ETH-USD": 0})
    np.testing.assert_array_equal(bank.now[0], series(ti.macd(12, 26, 9), b[:301])[-1])


def test_history_loaded_into_a_slot_is_detected_and_rebuilt():
    a = candles(FILES[2])
    window = ring.new_window(1, CAPACITY)
    bank = ti.IndicatorBank(1)
    bank.require([ti.adx(14)])
    for t in range(20):  # the product had no history yet: 20 bars only
        push(window, {0: a[200 + t]})
        bank.on_bar_close(window, {"LTC-USD": 0})
    ring.load_slot(window.buf, window.head, window.count, 0, a[:220])  # backfill arrives
    push(window, {0: a[220]})
    bank.on_bar_close(window, {"LTC-USD": 0})
    assert bank.now[0, 0] == series(ti.adx(14), a[:221])[-1, 0]


def test_a_gap_row_resets_the_state_like_the_window_count():
    a = candles(FILES[3])
    window = ring.new_window(1, CAPACITY)
    bank = ti.IndicatorBank(1)
    bank.require([ti.sma(5)])
    for t in range(50):
        push(window, {0: a[t]})
        bank.on_bar_close(window, {"BTC-EUR": 0})
    push(window, {})  # a gap: no row for the product
    bank.on_bar_close(window, {"BTC-EUR": 0})
    assert np.isnan(bank.now[0, 0])
    for t in range(50, 56):
        push(window, {0: a[t]})
        bank.on_bar_close(window, {"BTC-EUR": 0})
    np.testing.assert_array_equal(bank.now[:, 0], series(ti.sma(5), a[50:56])[-1])


def test_an_invalidated_slot_is_rebuilt_and_free_slots_are_not_stepped():
    a = candles(FILES[0])
    window = ring.new_window(3, CAPACITY)
    bank = ti.IndicatorBank(3)
    bank.require([ti.ema(10)])
    for t in range(CAPACITY + 50):
        push(window, {0: a[t], 2: a[t]})
        bank.on_bar_close(window, {"X": 0})  # slot 2 has rows but no product
    bank.invalidate(0)
    push(window, {0: a[CAPACITY + 50], 2: a[CAPACITY + 50]})
    bank.on_bar_close(window, {"X": 0})
    window_rows = a[51 : CAPACITY + 51]
    assert bank.now[0, 0] == series(ti.ema(10), window_rows)[-1, 0]
    assert np.isnan(bank.now[2, 0])


def test_lookback_matches_the_first_value_of_each_series():
    rows = candles(FILES[0])
    for spec in SPECS:
        values = series(spec, rows[:200])[:, 0]
        assert int(np.argmax(~np.isnan(values))) == spec.lookback, str(spec)
