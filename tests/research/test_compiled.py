"""The compiled path holds to the engine path: the same trades, signals and curves on real data.

Three products (BTC-USD, ETH-USD, LTC-USD: two days of real 1-minute candles after a day of
warm-up), the selector's top 2, every risk limit and exit rule on, short SMA periods for many
trades; then another built-in strategy, next-open fills, risk off, and slow reprices.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from tests.helpers import REPO
from trader import config as cfg
from trader.research.compiled import run_compiled
from trader.research.data import BarData, align, inferred_rules, read_file
from trader.research.driver import run_engine
from trader.research.options import BacktestOptions
from trader.research.result import BacktestResult
from trader.signals.loader import LoadedStrategy, load_strategy

DATA = REPO / "tests" / "data"
PRODUCTS = ("BTC-USD", "ETH-USD", "LTC-USD")
START_S = 1522800000  # 2018-04-04: all three products trade from here
REL = 1e-9
RISK = cfg.RiskConfig(
    max_position_usd=1000.0, max_open_positions=2, max_exposure_usd=1500.0,
    max_order_usd=1000.0, daily_loss_limit_usd=30.0, max_consecutive_losses=3,
    cooldown_s=1800.0, stop_loss_pct=0.5, take_profit_pct=0.8, trailing_stop_pct=0.4,
    max_hold_s=7200.0)
CONFIG = cfg.Config(
    selector=cfg.SelectorConfig(top_n=2, interval="5m", window_bars=12),
    execution=cfg.ExecutionConfig(limit_timeout_s=20.0, max_reprices=2), risk=RISK)
PARAMS = {"sma_cross": {"fast": 3, "slow": 8},
          "ema_rsi": {"fast": 4, "slow": 9, "rsi_period": 6}}


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    logging.disable(logging.WARNING)  # the engine logs every risk state change
    yield
    logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def data() -> BarData:
    series = {p: read_file(DATA / f"coinbase_{p}_1m.csv.gz").between(
        START_S - 86_400, START_S + 2 * 86_400) for p in PRODUCTS}
    return align(series, 60, START_S, None, 3600)


def strategy(name: str, interval: str = "5m") -> LoadedStrategy:
    section = cfg.StrategyConfig(interval=interval, params=MappingProxyType(PARAMS[name]))
    loaded = load_strategy(REPO / "strategies" / f"{name}.py", name, section)
    assert isinstance(loaded, LoadedStrategy), loaded
    return loaded


def both(data: BarData, strategies: list[LoadedStrategy], config: cfg.Config,
         options: BacktestOptions) -> tuple[BacktestResult, BacktestResult]:
    return (run_compiled(data, strategies, config, options),
            run_engine(data, strategies, config, options))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(1.0, abs(b))


def assert_same(compiled: BacktestResult, engine: BacktestResult) -> None:
    assert compiled.signals == engine.signals
    assert len(compiled.trades) == len(engine.trades)
    for ours, theirs in zip(compiled.trades, engine.trades, strict=True):
        assert (ours.product, ours.entry_time, ours.exit_time) == (
            theirs.product, theirs.entry_time, theirs.exit_time), (ours, theirs)
        assert theirs.exit_reason.split(":")[0] == ours.exit_reason, (ours, theirs)
        for name in ("entry_price", "exit_price", "size", "pnl", "fees"):
            assert close(getattr(ours, name), getattr(theirs, name)), (name, ours, theirs)
    assert [(t.product, t.entry_time) for t in compiled.open_trades] == [
        (t.product, t.entry_time) for t in engine.open_trades]
    for ours, theirs in zip(compiled.open_trades, engine.open_trades, strict=True):
        assert close(ours.entry_price, theirs.entry_price) and close(ours.size, theirs.size)
    np.testing.assert_array_equal(compiled.times, engine.times)
    np.testing.assert_allclose(compiled.equity, engine.equity, rtol=REL)
    np.testing.assert_allclose(compiled.exposure, engine.exposure, rtol=REL, atol=1e-9)
    assert close(compiled.fees_usd, engine.fees_usd)


def test_sma_cross_with_the_selector_and_every_risk_limit(data: BarData) -> None:
    compiled, engine = both(data, [strategy("sma_cross")], CONFIG, BacktestOptions())
    assert_same(compiled, engine)
    reasons = Counter(t.exit_reason for t in compiled.trades)
    assert len(compiled.trades) >= 5 and len(reasons) >= 2, reasons
    assert {t.product for t in compiled.trades} >= {"BTC-USD", "ETH-USD"}


def test_ema_rsi(data: BarData) -> None:
    assert_same(*both(data, [strategy("ema_rsi")], CONFIG, BacktestOptions()))


@pytest.mark.parametrize("fill", ["live", "next-open"])
def test_risk_off_spends_a_share_of_equity(data: BarData, fill: str) -> None:
    options = BacktestOptions(fill=fill, risk_on=False, position_pct=40.0)
    compiled, engine = both(data, [strategy("sma_cross")], CONFIG, options)
    assert_same(compiled, engine)
    assert len(compiled.trades) >= 30


def test_next_open_with_risk_limits(data: BarData) -> None:
    assert_same(*both(data, [strategy("sma_cross")], CONFIG, BacktestOptions(fill="next-open")))


@pytest.mark.parametrize("fallback", ["market", "cancel"])
def test_slow_reprices_and_their_fallback(data: BarData, fallback: str) -> None:
    config = dataclasses.replace(CONFIG, execution=cfg.ExecutionConfig(
        limit_timeout_s=130.0, max_reprices=1, fallback=fallback))
    assert_same(*both(data, [strategy("sma_cross")], config, BacktestOptions()))


def test_a_one_minute_strategy(data: BarData) -> None:
    short = dataclasses.replace(data, bars=data.bars[:, :2000], time_s=data.time_s[:2000])
    assert_same(*both(short, [strategy("sma_cross", "1m")], CONFIG, BacktestOptions()))


def test_two_strategies_on_two_intervals(data: BarData) -> None:
    strategies = [strategy("sma_cross"), strategy("ema_rsi", "15m")]
    compiled, engine = both(data, strategies, CONFIG, BacktestOptions(risk_on=False,
                                                                      position_pct=30))
    assert_same(compiled, engine)
    assert compiled.strategy == engine.strategy == "sma_cross, ema_rsi"


def test_many_products_step_their_indicators_in_one_call(data: BarData) -> None:
    """Past kernels.backtest.FEW_PRODUCTS the bank's step_rows steps every product at once."""
    copies = 4
    names = tuple(f"{p.split('-')[0]}{i}-USD" for i in range(copies) for p in PRODUCTS)
    many = dataclasses.replace(
        data, products=names, bars=np.concatenate([data.bars] * copies),
        rules={n: dataclasses.replace(data.rules[p], product_id=n, base_currency=n[:-4])
               for n, p in zip(names, PRODUCTS * copies, strict=True)})
    config = dataclasses.replace(CONFIG, selector=cfg.SelectorConfig(
        top_n=5, interval="5m", window_bars=12, metric="volatility"))
    assert_same(*both(many, [strategy("sma_cross")], config, BacktestOptions(risk_on=False,
                                                                             position_pct=20)))


def test_same_inputs_same_result(data: BarData) -> None:
    first = run_compiled(data, [strategy("sma_cross")], CONFIG, BacktestOptions())
    again = run_compiled(data, [strategy("sma_cross")], CONFIG, BacktestOptions())
    assert first.trades == again.trades and first.signals == again.signals
    np.testing.assert_array_equal(first.equity, again.equity)
    np.testing.assert_array_equal(first.exposure, again.exposure)


def _fields(result: BacktestResult) -> dict[str, Any]:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


def test_the_result_is_the_contracts(data: BarData) -> None:
    result = run_compiled(data, [strategy("sma_cross")], CONFIG, BacktestOptions())
    fields = _fields(result)
    assert fields["strategy"] == "sma_cross" and fields["interval"] == "5m"
    assert fields["products"] == PRODUCTS and result.bars == len(data) - data.first_decided
    assert result.start == START_S and result.timings["run_s"] > 0
    assert all(s.time >= START_S for s in result.signals)
    assert [t.exit_time for t in result.trades] == sorted(t.exit_time for t in result.trades)



def test_a_five_minute_bar_holding_stop_and_target_is_guessed_both_ways() -> None:
    """Coarser than a minute, a bar whose range holds the stop and the target of a position
    is resolved pessimistically (the stop: a market exit at the next open), counted, and the
    return had it gone the other way (the target: a limit sell at the ask) reported."""
    closes = [100.0] * 20 + [100.5, 100.55, 100.6, 100.6] + [100.6] * 10
    bars = np.array([[c, c, c, c, 1.0] for c in closes])
    bars[20] = [100.0, 100.6, 99.9, 100.5, 1.0]  # the fast SMA crosses: enter at the bid
    bars[21] = [100.5, 100.6, 100.4, 100.55, 1.0]  # through the bid: filled at 100.49
    bars[22] = [100.55, 103.0, 98.0, 100.6, 1.0]  # under the stop and over the target
    bars[23] = [100.6, 100.7, 100.5, 100.6, 1.0]
    time_s = 1_700_002_800 + 300 * np.arange(len(closes), dtype=np.int64)
    data = BarData(("X-USD",), 300, time_s, bars[None], 0,
                   {"X-USD": inferred_rules("X-USD", bars)})
    config = dataclasses.replace(CONFIG, selector=cfg.SelectorConfig(
        top_n=1, interval="5m", window_bars=2), risk=dataclasses.replace(
        RISK, stop_loss_pct=1.0, take_profit_pct=2.0, trailing_stop_pct=0.0, max_hold_s=0.0))
    section = cfg.StrategyConfig(interval="5m", params=MappingProxyType({"fast": 2, "slow": 3}))
    loaded = load_strategy(REPO / "strategies" / "sma_cross.py", "sma_cross", section)
    assert isinstance(loaded, LoadedStrategy)
    result = run_compiled(data, [loaded], config, BacktestOptions())
    (trade,) = result.trades
    assert (trade.entry_time, trade.entry_price) == (int(time_s[21]), 100.49)
    assert (trade.exit_time, trade.exit_reason) == (int(time_s[23]), "stop-loss")
    assert trade.exit_price == pytest.approx(100.6 * (1 - 5e-4))
    assert result.ambiguity.bars == 1
    pessimistic = (result.equity[-1] / result.cash - 1) * 100
    optimistic = result.ambiguity.optimistic_return_pct
    size, fees = trade.size, 100.49 * trade.size * 0.004  # maker in, then maker out at 100.61
    expected = (size * (100.61 - 100.49) - fees - 100.61 * size * 0.004) / result.cash * 100
    assert optimistic == pytest.approx(expected) and optimistic > pessimistic


def test_an_interval_finer_than_the_bars_is_refused(data: BarData) -> None:
    coarse = dataclasses.replace(data, base_s=300, time_s=data.time_s[::5],
                                 bars=np.ascontiguousarray(data.bars[:, ::5]))
    with pytest.raises(ValueError, match=r"selector.interval of 60 s cannot be folded"):
        run_compiled(coarse, [strategy("sma_cross")], cfg.Config(), BacktestOptions())
