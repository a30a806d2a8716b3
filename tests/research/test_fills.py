"""The bar fill model on hand-made bars, worked out by hand: where an entry rests, when it
fills, reprices and falls back, where a stop exits, next-open fills, history bars and one
shared cash balance. Each case runs on the engine path and the compiled path alike."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from trader import config as cfg
from trader.kernels.series import CandleArrays
from trader.research.compiled import run_compiled
from trader.research.data import align
from trader.research.driver import run_engine
from trader.research.options import BacktestOptions
from trader.research.result import BacktestResult
from trader.signals.loader import LoadedStrategy, load_strategy

T0 = 1_700_000_040 // 300 * 300  # a 5-minute boundary
# Enters when a bar closes up by at least 1 %, exits when one closes down by at least 1 %.
JUMP = '''
from trader.strategy import CLOSE, ENTER_LONG, EXIT, HOLD, NAN, OPEN, Param, columns, njit, sma
from trader.strategy import param_index

INTERVAL = "1m"
PARAMS = {"n": Param(1, low=1, high=10)}
P = param_index(PARAMS)


def indicators(p):
    return {"avg": sma(p[P.n])}


C = columns(indicators, PARAMS)


@njit(cache=True)
def decide(now, prev, bars, p):
    bar = bars[-1]
    if bar[CLOSE] >= 1.01 * bar[OPEN]:
        return 1.0, ENTER_LONG, NAN, NAN
    if bar[CLOSE] <= 0.99 * bar[OPEN]:
        return -1.0, EXIT, NAN, NAN
    return 0.0, HOLD, NAN, NAN
'''
FLAT = (100.0, 100.01, 99.99, 100.0)  # prices in cents: a 0.01 increment
UP = (100.0, 101.5, 100.0, 101.0)  # closes 1 % up: an entry at the bid, 100.99
DOWN = (101.0, 101.0, 99.5, 99.9)  # closes 1 % down: an exit at the ask


@pytest.fixture(scope="module")
def jump(tmp_path_factory: pytest.TempPathFactory) -> LoadedStrategy:
    path = tmp_path_factory.mktemp("strategies") / "jump.py"
    path.write_text(JUMP)
    loaded = load_strategy(path, "jump", cfg.StrategyConfig(interval="1m"))
    assert isinstance(loaded, LoadedStrategy), loaded
    return loaded


def config(**risk: float) -> cfg.Config:
    risk_section = replace(cfg.RiskConfig(), max_position_usd=1000.0, max_order_usd=1000.0,
                           max_exposure_usd=5000.0, max_open_positions=2,
                           daily_loss_limit_usd=1e6, **risk)
    return replace(cfg.Config(), risk=risk_section,
                   selector=replace(cfg.SelectorConfig(), window_bars=2, top_n=3),
                   execution=replace(cfg.ExecutionConfig(), limit_timeout_s=60.0,
                                     max_reprices=1, fallback="market"))


def candles(rows: list[tuple[float, float, float, float]]) -> CandleArrays:
    table = np.array([(T0 + 60 * i, *row, 10.0) for i, row in enumerate(rows)])
    return CandleArrays(table[:, 0].astype(np.int64),
                        *(np.ascontiguousarray(table[:, i]) for i in range(1, 6)))


def backtest(strategy: LoadedStrategy, bars: dict[str, list], options: BacktestOptions,
             settings: cfg.Config, decided_from: int = 2) -> BacktestResult:
    data = align({p: candles(rows) for p, rows in bars.items()}, 60, T0 + 60 * decided_from,
                 None, 60)
    engine = run_engine(data, [strategy], settings, options)
    compiled = run_compiled(data, [strategy], settings, options)
    assert compiled.trades == engine.trades or _close(compiled, engine)
    assert compiled.signals == engine.signals
    np.testing.assert_allclose(compiled.equity, engine.equity, rtol=1e-9)
    return engine


def _close(a: BacktestResult, b: BacktestResult) -> bool:
    assert len(a.trades) == len(b.trades)
    for x, y in zip(a.trades, b.trades, strict=True):
        assert (x.product, x.entry_time, x.exit_time, x.exit_reason) == (
            y.product, y.entry_time, y.exit_time, y.exit_reason)
        np.testing.assert_allclose([x.entry_price, x.exit_price, x.size, x.pnl, x.fees],
                                   [y.entry_price, y.exit_price, y.size, y.pnl, y.fees],
                                   rtol=1e-9)
    return True


FREE = BacktestOptions(maker_fee_bps=0.0, taker_fee_bps=0.0, slippage_bps=0.0)


def test_an_entry_rests_at_the_bid_reprices_at_a_close_and_fills_when_a_bar_trades_through(
        jump):
    # bar 2 closes up: buy at the bid 100.99 rests; bar 3's low 101.0 does not reach it, and
    # at its close (60 s on) it is repriced at the new bid 101.09, which bar 4's low 100.98
    # goes through; bar 5 closes down: sell at the ask 99.91, through in bar 6 (high 100.0)
    bars = [FLAT, FLAT, UP, (101.0, 101.2, 101.0, 101.1), (101.1, 101.1, 100.98, 101.0),
            DOWN, (99.9, 100.0, 99.8, 99.9), FLAT]
    result = backtest(jump, {"AAA-USD": bars}, FREE, config(), decided_from=2)
    (trade,) = result.trades
    assert (trade.entry_time, trade.entry_price) == (T0 + 4 * 60, 101.09)
    assert (trade.exit_time, trade.exit_price) == (T0 + 6 * 60, 99.91)
    assert trade.size == 9.90197049  # sized at the first bid: 1,000 USD / 100.99, down to 1e-8
    assert trade.exit_reason == "strategy exit"


def test_a_limit_at_the_low_does_not_fill_reprices_then_falls_back_to_the_next_open(jump):
    # the bid 100.99 rests through bar 3 (low 100.99: not through); at its close it is
    # repriced at 101.19 (max_reprices 1); bar 4's low 101.2 misses it; the fallback is a
    # market order filled at bar 5's open, 101.3, plus 10 bps of slippage, as a taker
    bars = [FLAT, FLAT, UP, (101.0, 101.3, 100.99, 101.2), (101.2, 101.3, 101.2, 101.3),
            (101.3, 101.3, 101.3, 101.3), FLAT]
    options = replace(FREE, slippage_bps=10.0, taker_fee_bps=60.0)
    result = backtest(jump, {"AAA-USD": bars}, options, config(), decided_from=2)
    (held,) = result.open_trades
    assert held.entry_time == T0 + 5 * 60
    assert held.entry_price == pytest.approx(101.3 * 1.001, rel=1e-12)
    assert result.fees_usd == pytest.approx(held.size * held.entry_price * 0.006, rel=1e-9)


def test_a_stop_at_a_close_exits_at_the_next_open_less_slippage(jump):
    # filled at 100.99 in bar 3; bar 3 closes at 100.4 <= the 0.5 % stop (100.485): market
    # sell at bar 4's open, 100.2, less 10 bps
    bars = [FLAT, FLAT, UP, (101.0, 101.0, 100.3, 100.4), (100.2, 100.5, 100.1, 100.3), FLAT]
    result = backtest(jump, {"AAA-USD": bars}, replace(FREE, slippage_bps=10.0),
                      config(stop_loss_pct=0.5), decided_from=2)
    (trade,) = result.trades
    assert (trade.entry_time, trade.exit_time) == (T0 + 3 * 60, T0 + 4 * 60)
    assert trade.exit_price == pytest.approx(100.2 * 0.999, rel=1e-12)
    assert trade.exit_reason.startswith("stop-loss")


def test_next_open_fills_every_order_at_the_next_bars_open(jump):
    bars = [FLAT, FLAT, UP, (101.4, 101.9, 101.2, 101.5), DOWN, (99.7, 99.8, 99.6, 99.7), FLAT]
    result = backtest(jump, {"AAA-USD": bars}, replace(FREE, fill="next-open"), config(),
                      decided_from=2)
    (trade,) = result.trades
    assert (trade.entry_time, trade.entry_price) == (T0 + 3 * 60, 101.4)
    assert (trade.exit_time, trade.exit_price) == (T0 + 5 * 60, 99.7)


def test_history_bars_decide_nothing_that_is_traded_or_reported(jump):
    bars = [FLAT, UP, (101.0, 101.0, 100.0, 100.5), FLAT, FLAT]
    result = backtest(jump, {"AAA-USD": bars}, FREE, config(), decided_from=3)
    assert result.trades == () and result.open_trades == () and result.signals == ()
    assert result.start == T0 + 3 * 60 and result.bars == 2


def test_products_share_one_cash_balance(jump):
    # 1,500 USD of cash, 1,000 USD a position: the first entry fills, the second is refused
    # for want of funds (the paper execution's hold rule)
    bars = [FLAT, FLAT, UP, (100.9, 101.0, 100.9, 101.0), FLAT]
    options = replace(FREE, cash_usd=1500.0)
    result = backtest(jump, {"AAA-USD": bars, "BBB-USD": bars}, options, config(),
                      decided_from=2)
    assert [t.product for t in result.open_trades] == ["AAA-USD"]
    assert {s.product for s in result.signals} == {"AAA-USD", "BBB-USD"}


