"""Metrics against hand computations on small constructed results."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from tests.research.handmade import DAY, T0, make_result, trade
from trader.config import ResearchConfig
from trader.research import metrics as m
from trader.research.gates import Gate, failing, gates
from trader.research.result import Ambiguity, OpenTradeRecord


def three_day_result():
    """Daily bars: 100 cash, then day closes 110, 99, 108.9 (returns +10 %, -10 %, +10 %)."""
    return make_result([110.0, 99.0, 108.9], bar_s=DAY, interval="1d",
                       closes={"BTC-USD": [10.0, 12.0, 15.0]})


def test_three_day_curve_returns_sharpe_sortino_by_hand():
    result = three_day_result()
    assert m.daily_returns(result) == pytest.approx([0.1, -0.1, 0.1])
    mean = (0.1 - 0.1 + 0.1) / 3
    sample_sd = math.sqrt(((0.1 - mean) ** 2 * 2 + (-0.1 - mean) ** 2) / (3 - 1))
    downside_dev = math.sqrt((0.0 + 0.1 ** 2 + 0.0) / 3)
    got = m.compute(result)
    assert got["sharpe"] == pytest.approx(mean / sample_sd * math.sqrt(365))
    assert got["sharpe"] == pytest.approx(5.5151, abs=1e-4)
    assert got["sortino"] == pytest.approx(mean / downside_dev * math.sqrt(365))
    assert got["total_return_pct"] == pytest.approx(8.9)
    assert got["days"] == 3


def test_three_day_curve_cagr_drawdown_calmar_by_hand():
    got = m.compute(three_day_result())
    cagr = (1.089 ** (365 / 3) - 1) * 100  # span: 3 days, open of day 1 to close of day 3
    assert got["cagr_pct"] == pytest.approx(cagr)
    assert got["max_drawdown_pct"] == pytest.approx(10.0)  # 110 -> 99
    # the peak is day 1's close (T0 + 1 day); never recovered: to day 3's close (T0 + 3 days)
    assert got["max_drawdown_duration_s"] == 2 * DAY
    assert got["calmar"] == pytest.approx(cagr / 10.0)
    assert got["final_equity_usd"] == 108.9


def test_drawdown_duration_runs_from_the_last_close_at_the_peak_to_recovery():
    recovered = make_result([105.0, 94.5, 100.0, 106.0, 103.0])  # 1m bars from T0
    assert m.max_drawdown(recovered) == (pytest.approx(10.0), 180)  # T0+60 .. T0+240
    flat_top = make_result([105.0, 105.0, 94.5, 105.0])
    assert m.max_drawdown(flat_top) == (pytest.approx(10.0), 120)  # T0+120 .. T0+240
    below_cash = make_result([80.0, 90.0, 100.0])  # the starting cash is the first peak
    assert m.max_drawdown(below_cash) == (pytest.approx(20.0), 180)  # T0 .. T0+180


def test_flat_curve_has_no_ratio_and_no_drawdown():
    got = m.compute(make_result([100.0] * 5, bar_s=DAY, interval="1d"))
    assert got["sharpe"] is None and got["sortino"] is None and got["calmar"] is None
    assert got["max_drawdown_pct"] == 0.0 and got["max_drawdown_duration_s"] == 0
    assert got["total_return_pct"] == 0.0 and got["cagr_pct"] == 0.0


def test_no_losing_day_has_no_sortino():
    assert m.sortino(m.daily_returns(make_result([101.0, 102.0], bar_s=DAY))) is None


def test_daily_closes_take_each_days_last_close_and_carry_empty_days():
    hour = 3600
    # bars open 22:00 and 23:00 on Jan 1 (the 23:00 bar closes at midnight: still Jan 1),
    # 00:00 on Jan 2, then nothing until 05:00 on Jan 4
    times = [T0 + 22 * hour, T0 + 23 * hour, T0 + DAY, T0 + 3 * DAY + 5 * hour]
    result = make_result([101.0, 102.0, 99.0, 110.0], times=times, bar_s=hour, interval="1h")
    days, closes = m.daily_closes(result)
    assert list(days) == [T0 // DAY, T0 // DAY + 1, T0 // DAY + 2, T0 // DAY + 3]
    assert list(closes) == [102.0, 99.0, 99.0, 110.0]
    assert m.daily_returns(result) == pytest.approx([0.02, 99 / 102 - 1, 0.0, 110 / 99 - 1])


def test_monthly_returns_chain_month_closes_from_the_cash():
    jan30 = T0 + 29 * DAY
    result = make_result([105.0, 110.0, 99.0, 121.0], start=jan30, bar_s=DAY, interval="1d")
    assert m.monthly_returns(result) == [
        (2024, 1, pytest.approx(10.0)),  # Jan 31 close 110 vs cash 100
        (2024, 2, pytest.approx(10.0)),  # Feb 2 close 121 vs 110
    ]


def test_trade_metrics_by_hand():
    pnls = [10.0, -5.0, 20.0, -2.5, 0.0]
    got = m.trade_metrics([trade(p, fees=0.25) for p in pnls])
    assert got == {
        "trades": 5,
        "win_rate_pct": 40.0,  # 2 of 5: a zero pnl is not a win
        "profit_factor": 4.0,  # 30 / 7.5
        "expectancy_usd": 4.5,  # 22.5 / 5
        "avg_win_usd": 15.0,
        "avg_loss_usd": -3.75,
        "pnl_usd": 22.5,
        "fees_usd": 1.25,
    }


def test_no_loss_and_no_trade_give_null_not_infinity():
    only_wins = m.trade_metrics([trade(3.0), trade(0.0)])
    assert only_wins["profit_factor"] is None and only_wins["avg_loss_usd"] is None
    assert only_wins["win_rate_pct"] == 50.0
    none = m.trade_metrics([])
    assert none["trades"] == 0
    assert none["win_rate_pct"] is None and none["expectancy_usd"] is None


def test_exposure_and_buy_and_hold_total_and_per_product():
    closes = {"BTC-USD": [10.0, 12.0, 15.0, 15.0], "ETH-USD": [20.0, 18.0, 10.0, 10.0]}
    trades = [trade(4.0, product="BTC-USD", entry_time=T0 + 60, exit_time=T0 + 180, fees=0.5)]
    holding = [OpenTradeRecord("ETH-USD", T0 + 120, 18.0, 1.0)]
    result = make_result([100.0, 101.0, 102.0, 99.0], exposure=[0.0, 12.0, 30.0, 10.0],
                         closes=closes, trades=trades, open_trades=holding, fees_usd=0.8)
    got = m.compute(result)
    assert got["exposure_pct"] == 75.0
    assert got["buy_and_hold_pct"] == pytest.approx(0.0)  # (+50 % + -50 %) / 2
    assert got["fees_usd"] == 0.8  # the run's fees, the open trade's entry included
    btc, eth = got["per_product"]["BTC-USD"], got["per_product"]["ETH-USD"]
    assert btc["exposure_pct"] == 50.0  # held at the closes of bars 1 and 2, sold within bar 3
    assert btc["buy_and_hold_pct"] == pytest.approx(50.0)
    assert (btc["trades"], btc["pnl_usd"], btc["fees_usd"]) == (1, 4.0, 0.5)
    assert eth["exposure_pct"] == 50.0  # bars 2 and 3, still held at the end
    assert eth["buy_and_hold_pct"] == pytest.approx(-50.0)
    assert eth["trades"] == 0 and eth["win_rate_pct"] is None


def test_ambiguity_is_reported_and_defaults_to_the_result():
    plain = m.compute(make_result([100.0, 104.0]))
    assert plain["ambiguous_bars"] == 0
    assert plain["optimistic_return_pct"] == pytest.approx(4.0)
    guessed = m.compute(make_result([100.0, 104.0], ambiguity=Ambiguity(3, 6.5)))
    assert (guessed["ambiguous_bars"], guessed["optimistic_return_pct"]) == (3, 6.5)


def test_contract_keys_and_strict_json():
    got = m.compute(make_result([50.0, 1e300], bar_s=60))  # CAGR overflows a float
    assert got["cagr_pct"] is None
    for key in ("total_return_pct", "cagr_pct", "sharpe", "sortino", "calmar",
                "max_drawdown_pct", "max_drawdown_duration_s", "win_rate_pct", "profit_factor",
                "expectancy_usd", "trades", "exposure_pct", "fees_usd", "avg_win_usd",
                "avg_loss_usd", "buy_and_hold_pct", "per_product", "ambiguous_bars",
                "optimistic_return_pct"):
        assert key in got
    json.dumps(got, allow_nan=False)  # raises on NaN or infinity
    assert orjson.loads(orjson.dumps(got)) == got


def test_empty_result_is_all_null():
    got = m.compute(make_result([], closes={"BTC-USD": []}))
    assert got["total_return_pct"] is None and got["max_drawdown_pct"] is None
    assert got["sharpe"] is None and got["exposure_pct"] is None and got["days"] == 0
    json.dumps(got, allow_nan=False)


def test_gates_against_the_research_defaults():
    metrics = {"sharpe": 1.2, "win_rate_pct": 44.9, "profit_factor": 1.5,
               "max_drawdown_pct": 15.01, "avg_win_usd": 2.0, "avg_loss_usd": -1.0}
    found = gates(metrics, ResearchConfig())
    assert found == [Gate("sharpe", 1.2, 1.2, True, ">="),
                     Gate("win_rate_pct", 44.9, 45.0, False, ">="),
                     Gate("profit_factor", 1.5, 1.5, True, ">="),
                     Gate("max_drawdown_pct", 15.01, 15.0, False, "<=")]
    assert failing(found) == ["win_rate_pct", "max_drawdown_pct"]


def test_gates_on_undefined_metrics():
    no_loss = gates(m.compute(make_result([100.0, 103.0], trades=[trade(3.0)])),
                    ResearchConfig(min_sharpe=0.0))
    assert [(g.name, g.value, g.passed) for g in no_loss] == [
        ("sharpe", None, False),  # one day: no Sharpe
        ("win_rate_pct", 100.0, True),
        ("profit_factor", math.inf, True),  # wins and no loss: unbounded
        ("max_drawdown_pct", 0.0, True),
    ]
    no_trades = gates(m.compute(make_result([100.0])), ResearchConfig())
    assert failing(no_trades) == ["sharpe", "win_rate_pct", "profit_factor"]
