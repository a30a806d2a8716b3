"""The compiled backtest's pieces against their Python originals and hand-worked bars."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from numba import typed, types

from trader import money
from trader.kernels import backtest as kb
from trader.kernels import backtest_fills as bf
from trader.kernels import backtest_orders as bo
from trader.kernels import candles as ck
from trader.market.selector import scores
from trader.research.data import inferred_rules
from trader.research.driver import touch
from trader.types import Side

RNG = np.random.default_rng(7)


def test_quantized_prices_are_moneys_reading_of_the_float() -> None:
    product = inferred_rules("X-USD", np.array([[1.01, 1.02, 1.0, 1.01, 1.0]]))
    assert product.price_increment == Decimal("0.01")
    closes = np.round(RNG.uniform(1, 90_000, 3000), 2)
    values = np.concatenate([closes, closes - 0.01, closes + 0.01, closes * 1.0000001])
    for x in values.tolist():
        assert bo.floor_to(x, 100.0) == float(money.quantize_price(product, x, Side.BUY)), x
        assert bo.ceil_to(x, 100.0) == float(money.quantize_price(product, x, Side.SELL)), x


def test_the_touch_is_the_drivers() -> None:
    closes = np.round(RNG.uniform(1, 90_000, 2000), 2)
    rules = np.zeros((len(closes), bo.NRULE))
    rules[:, bo.U_TICK], rules[:, bo.U_DECIMALS] = 0.01, 2
    bids, asks = touch(closes, np.full(len(closes), 0.01), np.full(len(closes), 2))
    for p in range(len(closes)):
        assert bo.bid(rules, closes, p) == bids[p] and bo.ask(rules, closes, p) == asks[p]


def test_entry_sizes_are_moneys_whole_increments() -> None:
    product = inferred_rules("X-USD", np.array([[1.01, 1.02, 1.0, 1.01, 1.0]]))
    for _ in range(2000):
        price = round(float(RNG.uniform(0.5, 70_000)), 2)
        notional = float(RNG.choice([100.0, 250.0, round(float(RNG.uniform(5, 5e4)), 6)]))
        prepared = money.prepare_limit(product, Side.BUY, price, notional=notional)
        assert not isinstance(prepared, str)
        size = bo.steps_down(notional, price / 1e8) / 1e8
        assert size == float(prepared.size), (price, notional)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 60, 128, 129, 300, 1000, 4099])
def test_pairwise_sum_is_numpys(n: int) -> None:
    values = RNG.uniform(0, 1e6, n) * RNG.uniform(0, 1e3, n)
    assert kb.pairwise_sum(values, 0, n) == values.sum()


@pytest.mark.parametrize("metric", ["quote_volume", "abs_return", "volatility"])
def test_selector_scores_are_the_selectors(metric: str) -> None:
    n, cap = 60, 80
    window = np.full((1, 3, 2 * cap, 6), np.nan)
    closes = np.exp(np.cumsum(RNG.normal(0, 0.01, (3, cap)), axis=1)) * 100
    window[0, :, :cap, 4], window[0, :, :cap, 5] = closes, RNG.uniform(0, 5, (3, cap))
    window[0, :, cap:] = window[0, :, :cap]
    start = cap - n  # head 0: the last n rows end at the capacity
    expected = scores(window[0, :, start : start + n], metric)
    work = np.empty(n)
    code = {"quote_volume": kb.QUOTE_VOLUME, "abs_return": kb.ABS_RETURN,
            "volatility": kb.VOLATILITY}[metric]
    got = [kb.selector_score(window, 0, p, start, n, code, work) for p in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-14)  # log: libm vs numpy, an ulp


def test_fold_is_the_markets_fold() -> None:
    minutes = 300
    time_s = 1_700_000_040 - 1_700_000_040 % 3600 + 60 * np.arange(minutes, dtype=np.int64)
    bars = np.empty((2, minutes, 5))
    bars[:, :, 3] = 100 + np.cumsum(RNG.normal(0, 0.1, (2, minutes)), axis=1)
    bars[:, :, 0] = bars[:, :, 3] + RNG.normal(0, 0.05, (2, minutes))
    bars[:, :, 1] = np.maximum(bars[:, :, 0], bars[:, :, 3]) + 0.1
    bars[:, :, 2] = np.minimum(bars[:, :, 0], bars[:, :, 3]) - 0.1
    bars[:, :, 4] = RNG.uniform(0, 3, (2, minutes))
    bars[1, :37] = np.nan  # a product that starts mid-interval
    for interval_s in (300, 900, 3600):
        agg = np.full((2, 2, 6), np.nan)
        meta = np.full((2, 2), -1, np.int64)
        got = []
        for t in range(minutes):
            if kb.fold(agg, meta, 1, bars, t, time_s, 60, interval_s) == 1:
                got.append(agg[1].copy())
        for p in range(2):
            rows = np.column_stack([time_s, bars[p]])
            live = ~np.isnan(rows[:, 4])
            expected = ck.resample(rows[live], interval_s)
            ours = np.array([g[p] for g in got if not np.isnan(g[p, 4])])
            np.testing.assert_array_equal(ours, expected)


def _cfg(**values: float) -> np.ndarray:
    cfg = np.zeros(bo.NCFG)
    cfg[bo.C_MAKER], cfg[bo.C_TAKER], cfg[bo.C_SLIP] = 0.004, 0.006, 0.0005
    cfg[bo.C_RISK_ON], cfg[bo.C_CASH0] = 1, 10_000.0
    cfg[bo.C_MAX_POS] = cfg[bo.C_MAX_ORDER] = 1000.0
    cfg[bo.C_MAX_OPEN], cfg[bo.C_MAX_EXPO], cfg[bo.C_DAILY] = 3, 3000.0, 500.0
    cfg[bo.C_MAX_LOSSES], cfg[bo.C_COOLDOWN] = 2, 600.0
    cfg[bo.C_BRK_ERRS], cfg[bo.C_BRK_WIN], cfg[bo.C_BRK_HALT] = 2, 60.0, 300.0
    cfg[bo.C_TIMEOUT], cfg[bo.C_MAX_REPRICES], cfg[bo.C_FALLBACK_MARKET] = 20.0, 1, 1
    for name, value in values.items():
        cfg[getattr(bo, name)] = value
    return cfg


def _rules(n: int = 1) -> np.ndarray:
    rules = np.zeros((n, bo.NRULE))
    rules[:, bo.U_PRICE_SCALE], rules[:, bo.U_BASE_SCALE] = 100.0, 1e8
    rules[:, bo.U_BASE_MIN], rules[:, bo.U_BASE_MAX], rules[:, bo.U_QUOTE_MIN] = 1e-8, 1e7, 1.0
    rules[:, bo.U_TICK], rules[:, bo.U_DECIMALS] = 0.01, 2
    return rules


def _entered(cfg: np.ndarray, close: float = 100.0) -> tuple[np.ndarray, ...]:
    pos, ordr, acct, errs, evq = bo.new_state(1, cfg)
    closes = np.array([close])
    assert bo.enter(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 0, 0.0, np.nan, np.nan,
                    60.0)
    bf.drain(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 60.0)
    return pos, ordr, acct, errs, evq


def _fill(pos, ordr, acct, cfg, evq, bar, t_s=60.0):
    bars = np.array([[bar]], dtype=np.float64)
    fill_p, fill_x = np.empty(1, np.int64), np.empty((1, 2))
    n = bf.bar_fills(pos, ordr, acct, cfg, bars, 0, fill_p, fill_x, np.empty(1, np.int64))
    trades = typed.List.empty_list(types.float64[::1])
    for i in range(n):
        bf.apply_fill(pos, ordr, acct, cfg, evq, trades, fill_p[i], fill_x[i, 0],
                      fill_x[i, 1], t_s, t_s)
    return n, trades


def test_a_maker_entry_rests_at_the_bid_and_fills_only_through_it() -> None:
    cfg = _cfg()
    pos, ordr, acct, _, evq = _entered(cfg)
    assert ordr[0, bo.O_STATE] == bo.OPEN and ordr[0, bo.O_PRICE] == 99.99
    size = ordr[0, bo.O_SIZE]
    assert size == 10.0010001  # whole 1e-8 units of 1000 USD at 99.99
    assert acct[bo.A_HOLDS] == pytest.approx(size * 99.99 * 1.006)
    assert _fill(pos, ordr, acct, cfg, evq, [100.5, 101.0, 99.99, 100.2])[0] == 0  # touched
    assert _fill(pos, ordr, acct, cfg, evq, [100.5, 101.0, 99.98, 100.2])[0] == 1  # through
    assert pos[0, bo.P_HELD] and pos[0, bo.P_ENTRY_PRICE] == 99.99
    assert acct[bo.A_CASH] == pytest.approx(10_000 - size * 99.99 * 1.004)
    assert acct[bo.A_HOLDS] == 0.0


def test_a_stop_exits_at_market_at_the_next_open_with_slippage() -> None:
    cfg = _cfg(C_STOP_PCT=1.0, C_TP_PCT=2.0)
    pos, ordr, acct, errs, evq = _entered(cfg)
    _fill(pos, ordr, acct, cfg, evq, [100.5, 101.0, 99.0, 100.2])
    closes = np.array([98.99])  # 1 % under 99.99 is 98.9901: the stop
    assert bo.exit_reason(pos, cfg, 0, 98.99, 120.0) == bo.R_STOP
    assert bo.exit_reason(pos, cfg, 0, 101.99, 120.0) == bo.R_TARGET
    assert bo.exit_reason(pos, cfg, 0, 100.0, 120.0) == -1
    bo.on_prices(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 120.0,
                 np.empty(1, np.int64))
    bf.drain(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 120.0)
    assert ordr[0, bo.O_KIND] == bo.EXIT and ordr[0, bo.O_MARKET] == 1
    n, trades = _fill(pos, ordr, acct, cfg, evq, [98.5, 99.0, 98.0, 98.2], 120.0)
    assert n == 1 and not pos[0, bo.P_HELD]
    (trade,) = trades
    assert trade[bo.T_EXIT_PRICE] == 98.5 * (1 - 0.0005) and trade[bo.T_REASON] == bo.R_STOP
    assert trade[bo.T_PNL] == pytest.approx(
        trade[bo.T_SIZE] * (trade[bo.T_EXIT_PRICE] * (1 - 0.006) - 99.99 * 1.004))


def test_an_unfilled_entry_is_repriced_then_falls_back_to_market() -> None:
    cfg = _cfg()
    pos, ordr, acct, errs, evq = _entered(cfg)
    closes = np.array([101.0])
    scratch = np.empty(1, np.int64)
    bo.on_tick(ordr, cfg, evq, 70.0, scratch)  # 10 s: not yet
    assert evq[0, 0] == 0
    bo.on_tick(ordr, cfg, evq, 120.0, scratch)
    bf.drain(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 120.0)
    assert ordr[0, bo.O_ATTEMPT] == 1 and ordr[0, bo.O_PRICE] == 100.99
    bo.on_tick(ordr, cfg, evq, 180.0, scratch)  # max_reprices 1: the fallback
    bf.drain(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 180.0)
    assert ordr[0, bo.O_ATTEMPT] == 2 and ordr[0, bo.O_MARKET] == 1
    assert _fill(pos, ordr, acct, cfg, evq, [101.2, 101.5, 101.0, 101.3], 180.0)[0] == 1
    assert pos[0, bo.P_ENTRY_PRICE] == 101.2 * 1.0005


def test_losses_in_a_row_cool_down_and_rejects_trip_the_breaker() -> None:
    cfg = _cfg()
    pos, _, acct, errs, _ = bo.new_state(1, cfg)
    bo.record_trade(pos, acct, cfg, -1.0, 100.0)
    assert bo.risk_update(pos, acct, cfg, 100.0) == bo.ACTIVE
    bo.record_trade(pos, acct, cfg, -1.0, 200.0)  # two in a row: 600 s of cooldown
    assert bo.risk_update(pos, acct, cfg, 799.0) == bo.REDUCING
    assert bo.risk_update(pos, acct, cfg, 800.0) == bo.ACTIVE
    bo.record_error(pos, acct, cfg, errs, 1000.0)
    bo.record_error(pos, acct, cfg, errs, 1070.0)  # the first left the 60 s window
    assert acct[bo.A_STATE] == bo.ACTIVE
    bo.record_error(pos, acct, cfg, errs, 1080.0)
    assert acct[bo.A_STATE] == bo.HALTED
    assert bo.risk_update(pos, acct, cfg, 1380.0) == bo.ACTIVE


def test_no_cash_no_entry_and_a_reject_counts() -> None:
    cfg = _cfg(C_CASH0=500.0)
    pos, ordr, acct, errs, evq = bo.new_state(1, cfg)
    closes = np.array([100.0])
    bo.enter(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 0, 0.0, np.nan, np.nan, 60.0)
    bf.drain(pos, ordr, acct, cfg, _rules(), errs, evq, closes, 60.0)
    assert ordr[0, bo.O_STATE] == bo.NONE and acct[bo.A_REJECTED] == 1 and errs[0] == 1


@pytest.mark.parametrize("kind", range(11))
def test_step_one_is_the_banks_step(kind: int) -> None:
    from trader.kernels import bank
    from trader.signals.indicators import Indicator

    params = {bank.MACD: (3.0, 6.0, 4.0), bank.BBANDS: (5.0, 2.0), bank.STOCH: (5.0, 3.0, 3.0),
              bank.OBV: ()}.get(kind, (5.0,))
    spec = Indicator(kind, params)
    fresh = spec.new_state()
    width = len(spec.outputs)
    rows = np.empty((200, 1, 6))
    rows[:, 0, 4] = 100 + np.cumsum(RNG.normal(0, 0.5, 200))
    rows[:, 0, 2] = rows[:, 0, 4] + RNG.uniform(0, 1, 200)
    rows[:, 0, 3] = rows[:, 0, 4] - RNG.uniform(0, 1, 200)
    rows[:, 0, 5] = RNG.uniform(0, 5, 200)
    ours, theirs = fresh.copy(), fresh[None, :].copy()
    now = np.full((1, width), np.nan)
    for t in range(200):
        bank.step_rows(kind, theirs, fresh, rows[t], np.ones(1, np.bool_), now, 0, width)
        out = kb.step_one(kind, ours, rows[t, 0, 2], rows[t, 0, 3], rows[t, 0, 4],
                          rows[t, 0, 5])
        np.testing.assert_array_equal(np.array(out[:width]), now[0])


@pytest.mark.parametrize("n", [2, 7, 8, 12, 60, 127, 128])
def test_quote_volume_block_is_numpys_sum(n: int) -> None:
    window = np.zeros((1, 1, 256, 6))
    window[0, 0, :, 4] = RNG.uniform(1, 1e5, 256)
    window[0, 0, :, 5] = RNG.uniform(0, 50, 256)
    expected = (window[0, 0, 100 : 100 + n, 4] * window[0, 0, 100 : 100 + n, 5]).sum()
    assert kb._quote_volume_block(window, 0, 0, 100, n) == expected


@pytest.mark.parametrize("metric", ["quote_volume", "abs_return"])
def test_the_top_n_are_the_selectors_ties_to_the_earlier(metric: str) -> None:
    products, cap, n = 40, 30, 12
    closes = np.round(RNG.uniform(1, 3, (products, cap)), 1)  # coarse: many equal scores
    closes[5:10] = closes[0]
    window = np.full((1, products, 2 * cap, 6), np.nan)
    window[0, :, :cap, 4], window[0, :, :cap, 5] = closes, np.round(closes, 0)
    window[0, :, cap:] = window[0, :, :cap]
    count = np.full((1, products), cap, np.int64)
    count[0, 3] = n - 1  # no full window: no rank
    values = np.where(count[0] >= n, scores(window[0, :, cap - n : cap], metric), np.nan)
    order = np.argsort(-np.where(np.isfinite(values), values, -np.inf), kind="stable")
    expected = order[np.isfinite(values)[order]][:7]
    top = np.zeros(products, np.bool_)
    code = kb.QUOTE_VOLUME if metric == "quote_volume" else kb.ABS_RETURN
    kb.refresh_top(window, np.zeros(1, np.int64), count, 0, n, 7, code, top,
                   np.empty(products), np.empty(n))
    assert sorted(np.flatnonzero(top)) == sorted(expected)
