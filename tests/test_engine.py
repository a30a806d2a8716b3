"""The bar close in order: selector, strategies, signal book, trading, then the bar sinks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import REPO
from trader.config import SelectorConfig, StrategyConfig
from trader.engine import Engine
from trader.kernels.series import CandleArrays
from trader.market.candles import Market, RepairSpan
from trader.market.selector import Selector
from trader.signals.book import SignalBook
from trader.signals.runner import StrategyRunner
from trader.strategy import LoadedStrategy, load_strategy
from trader.types import Signal

T0 = 1_700_000_000 // 3600 * 3600  # an hour boundary, unix s
NS = 1_000_000_000
PRODUCTS = ("AAA-USD", "BBB-USD", "CCC-USD")
MINUTES = 12


def sma_cross_every_minute() -> LoadedStrategy:
    loaded = load_strategy(REPO / "strategies" / "sma_cross.py", "sma_cross",
                           StrategyConfig(interval="1m", params={"fast": 2, "slow": 3}))
    assert isinstance(loaded, LoadedStrategy), loaded
    return loaded


def busiest(minute: int) -> str:
    """The product with the most traded value in a minute: it changes every minute."""
    return PRODUCTS[minute % len(PRODUCTS)]


def drive(market: Market) -> None:
    """Start at T0, release the partial first minute, then trade MINUTES full minutes."""
    market.advance((T0 + 1) * NS)
    market.advance((T0 + 61) * NS)
    no_candles = CandleArrays(np.array([], np.int64), *(np.array([]) for _ in range(5)))
    for product in PRODUCTS:
        market.apply_repair(RepairSpan(product, T0, T0 + 60), no_candles)
    for minute in range(1, MINUTES + 1):
        start_s = T0 + 60 * minute
        sizes = [10.0 if p == busiest(minute) else 1.0 for p in PRODUCTS]
        market.on_trade_columns(PRODUCTS, [(start_s + 5) * NS] * 3,
                                [100.0 + minute] * 3, sizes)
        market.advance((start_s + 61) * NS)


def test_a_bar_sink_sees_the_selectors_rank_and_the_signals_of_the_same_bar():
    events: list[tuple[str, int, str]] = []

    def on_signal(signal: Signal) -> None:
        events.append(("signal", signal.bar_time_ns // NS, signal.product_id))

    market = Market(PRODUCTS, [60], capacity=50, grace_ms=1000, warmup_bars=0)
    selector = Selector(SelectorConfig(interval="1m", top_n=1, metric="quote_volume",
                                       window_bars=1), market)

    def on_bar(interval_s: int, bar_time_s: int) -> None:
        assert selector.refreshed_s == bar_time_s  # ranked on this very bar already
        events.append(("bar", bar_time_s, next(iter(selector.top()), "")))

    runner = StrategyRunner({"sma_cross": sma_cross_every_minute()}, emit_holds=True)
    engine = Engine(market, runner=runner, book=SignalBook([on_signal]), selector=selector,
                    bar_sinks=[on_bar])
    drive(market)

    bars = [e for e in events if e[0] == "bar"]
    assert [b[1] for b in bars] == [T0 + 60 * m for m in range(MINUTES + 1)]
    for minute in range(1, MINUTES + 1):
        assert ("bar", T0 + 60 * minute, busiest(minute)) in bars
    decided = [e for e in events if e[0] == "signal"]
    assert decided, "the strategy decided after its warm-up"
    for kind, bar_time_s, product in decided:
        # the strategy ran on the selector's top product of the same bar, before the sinks
        minute = (bar_time_s - T0) // 60
        assert product == busiest(minute)
        assert events.index((kind, bar_time_s, product)) < events.index(
            ("bar", bar_time_s, busiest(minute)))
    assert engine.book.latest  # the signal book recorded them


def test_the_market_announces_its_bars_to_one_engine_only():
    market = Market(PRODUCTS, [60], capacity=10, grace_ms=0, warmup_bars=0)
    Engine(market)
    with pytest.raises(RuntimeError, match="one callback"):
        Engine(market)
