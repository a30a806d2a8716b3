"""The compiled fast path of a backtest: the engine path's trades at compiled speed.

`run_compiled` takes what `driver.run_engine` takes and returns the same BacktestResult. The
bar loop is trader.kernels.backtest (the engine's bar-close sequence over float64 state, with
the same indicator step kernels and the strategies' own compiled `decide`); this module only
lays the run out as arrays and reads the result back. tests/research/test_compiled.py holds
both paths to the same trades on real data.

Unlike the engine path, it also runs base bars coarser than 1 minute (stops and targets are
then evaluated at those bars' closes).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np
from numba import typed, types
from numba.core.errors import NumbaExperimentalFeatureWarning

from trader import config as cfg
from trader.kernels import backtest as kb
from trader.kernels import backtest_orders as bo
from trader.research.data import CLOSE, BarData
from trader.research.options import BacktestOptions, unlimited_risk
from trader.research.result import (
    Ambiguity,
    BacktestResult,
    OpenTradeRecord,
    SignalRecord,
    TradeRecord,
)
from trader.signals.indicators import Indicator
from trader.signals.loader import LoadedStrategy

Progress = Callable[[int], None]  # bars done so far
METRICS = {"quote_volume": kb.QUOTE_VOLUME, "volatility": kb.VOLATILITY,
           "abs_return": kb.ABS_RETURN}
EXIT_REASONS = {bo.R_STRATEGY: "strategy exit", bo.R_STOP: "stop-loss",
                bo.R_TRAIL: "trailing stop", bo.R_TARGET: "take-profit",
                bo.R_MAX_HOLD: "max hold time"}
ACTIONS = {1: "enter_long", 2: "exit"}


def run_compiled(data: BarData, strategies: Sequence[LoadedStrategy], config: cfg.Config,
                 options: BacktestOptions, on_progress: Progress | None = None
                 ) -> BacktestResult:
    """One backtest in the compiled loop, trade for trade the engine path's."""
    active = [s for s in strategies if s.config.enabled]
    if not active:
        raise ValueError("no enabled strategy to backtest")
    started = time.perf_counter()
    args = _guessing(_layout(data, active, config, options), _guess_of(data))
    with warnings.catch_warnings():  # numba calls a tuple of compiled functions experimental
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        _run(_two_bars(args))  # compiles the loop, or loads it from numba's cache
        compile_s = time.perf_counter() - started
        trades, (equity, exposure, signals, pos, _, acct) = _run(args)
        ambiguity = Ambiguity()
        if acct[bo.A_AMBIGUOUS]:  # the run again, each guess the other way
            optimistic = _run(_guessing(args, bo.OPTIMISTIC))[1][0]
            ambiguity = Ambiguity(int(acct[bo.A_AMBIGUOUS]), _return_pct(optimistic, options))
    run_s = time.perf_counter() - started - compile_s
    if on_progress is not None:
        on_progress(len(data))
    result = _result(data, active, options, equity, exposure, signals, pos, acct, trades,
                     {"compile_s": compile_s, "run_s": run_s})
    return dataclasses.replace(result, ambiguity=ambiguity)


def _guessing(args: tuple, guess: int) -> tuple:
    """The kernel's arguments with `guess` for ambiguous bars (fresh indicator states)."""
    *rest, cfg_array, rules = args
    rest[-3] = rest[-3].copy()  # the states (then fresh, n_cols)
    cfg_array = cfg_array.copy()
    cfg_array[bo.C_GUESS] = guess
    return (*rest, cfg_array, rules)


def _return_pct(equity: np.ndarray, options: BacktestOptions) -> float | None:
    return float((equity[-1] / options.cash_usd - 1.0) * 100.0) if len(equity) else None


def _run(args: tuple) -> tuple[typed.List, tuple]:
    trades = typed.List.empty_list(types.float64[::1])
    return trades, kb.run(*args, trades)  # type: ignore[call-arg]


def _two_bars(args: tuple) -> tuple:
    """The kernel's arguments for the first two bars only (same types: the same compiled
    loop), with their own indicator states (the loop steps them in place)."""
    time_s, bars, _, *rest = args
    rest[-5] = rest[-5].copy()  # the states (then fresh, n_cols, cfg, rules)
    return (time_s[:2].copy(), np.ascontiguousarray(bars[:, :2]), 0, *rest)


def intervals_of(data: BarData, strategies: Sequence[LoadedStrategy],
                 config: cfg.Config) -> list[int]:
    """The intervals the run keeps windows of, the base bars' first (as driver._market)."""
    selector_s = cfg.interval_seconds(config.selector.interval)
    wanted = sorted({selector_s, *(s.interval_s for s in strategies)} - {data.base_s})
    for interval_s in wanted:
        if interval_s < data.base_s or interval_s % data.base_s:
            whose = "selector.interval" if interval_s == selector_s else "a strategy's interval"
            raise ValueError(f"{whose} of {interval_s} s cannot be folded from the data's "
                             f"{data.base_s} s bars (use a multiple of {data.base_s} s)")
    return [data.base_s, *wanted]


def capacity_of(strategies: Sequence[LoadedStrategy], config: cfg.Config) -> int:
    """Bars each window keeps (as driver._market)."""
    return max([config.market.window_bars, config.selector.window_bars,
                *(max(s.warmup_bars, s.bars) + 2 for s in strategies)])


def _layout(data: BarData, strategies: Sequence[LoadedStrategy], config: cfg.Config,
            options: BacktestOptions) -> tuple:
    """The kernel's arguments (kernels.backtest.run), trades excepted."""
    ivs = intervals_of(data, strategies, config)
    cap = capacity_of(strategies, config)
    selector_k = ivs.index(cfg.interval_seconds(config.selector.interval))
    used = np.zeros(len(ivs), np.bool_)
    used[selector_k] = True
    for s in strategies:
        used[ivs.index(s.interval_s)] = True
    banks = _banks(strategies, ivs)
    return (data.time_s.astype(np.int64), np.ascontiguousarray(data.bars, np.float64),
            data.first_decided, data.base_s, np.array(ivs, np.int64), used, cap,
            selector_k, min(config.selector.window_bars, cap), config.selector.top_n,
            METRICS[config.selector.metric], *_strategy_arrays(data, strategies, ivs, banks),
            *_indicator_arrays(data, banks, len(ivs)), _config_array(config, options),
            _rules_array(data, options))


def _banks(strategies: Sequence[LoadedStrategy], ivs: list[int]) -> list[list[Indicator]]:
    """Per interval, its distinct indicators in the order the runner's bank requires them."""
    return [list(dict.fromkeys(i for s in strategies if s.interval_s == interval_s
                               for i in s.indicators)) for interval_s in ivs]


def _strategy_arrays(data: BarData, strategies: Sequence[LoadedStrategy], ivs: list[int],
                     banks: list[list[Indicator]]) -> tuple:
    n = len(strategies)
    n_params = np.array([s.param_array.size for s in strategies], np.int64)
    params = np.zeros((n, max(1, n_params.max())))
    col_lists = [_columns(banks[ivs.index(s.interval_s)], s.indicators) for s in strategies]
    n_cols = np.array([len(c) for c in col_lists], np.int64)
    cols = np.zeros((n, max(1, n_cols.max())), np.int64)
    pinned = np.zeros((n, len(data.products)), np.bool_)
    for i, s in enumerate(strategies):
        params[i, : n_params[i]] = s.param_array
        cols[i, : n_cols[i]] = col_lists[i]
        for product_id in s.config.products:
            if product_id in data.products:
                pinned[i, data.products.index(product_id)] = True
    return (np.array([ivs.index(s.interval_s) for s in strategies], np.int64),
            tuple(s.decide for s in strategies), params, n_params,
            np.array([s.bars for s in strategies], np.int64),
            np.array([s.warmup_bars for s in strategies], np.int64), cols, n_cols, pinned,
            np.array([bool(s.config.products) for s in strategies], np.bool_))


def _columns(bank: list[Indicator], indicators: Sequence[Indicator]) -> list[int]:
    """IndicatorBank.columns: the bank's columns of these indicators' outputs, in order."""
    starts, col = {}, 0
    for spec in bank:
        starts[spec] = col
        col += len(spec.outputs)
    return [starts[i] + j for i in indicators for j in range(len(i.outputs))]


def _indicator_arrays(data: BarData, banks: list[list[Indicator]], n_intervals: int) -> tuple:
    specs = [(k, spec) for k, bank in enumerate(banks) for spec in bank]
    fresh_rows = [spec.new_state() for _, spec in specs]
    width = max([1, *(r.size for r in fresh_rows)])
    fresh = np.zeros((max(1, len(specs)), width))
    for i, row in enumerate(fresh_rows):
        fresh[i, : row.size] = row
    states = np.repeat(fresh[:, None, :], len(data.products), axis=1)
    ind_col, n_cols = [], np.zeros(n_intervals, np.int64)
    for k, spec in specs:
        ind_col.append(n_cols[k])
        n_cols[k] += len(spec.outputs)
    return (np.array([k for k, _ in specs], np.int64),
            np.array([spec.kind for _, spec in specs], np.int64),
            np.array(ind_col, np.int64),
            np.array([len(spec.outputs) for _, spec in specs], np.int64),
            np.ascontiguousarray(states), fresh, n_cols)


def _config_array(config: cfg.Config, options: BacktestOptions) -> np.ndarray:
    risk = config.risk if options.risk_on else unlimited_risk()
    execution = config.execution
    c = np.zeros(bo.NCFG)
    c[bo.C_MAKER] = options.maker_fee_bps / 10_000
    c[bo.C_TAKER] = options.taker_fee_bps / 10_000
    c[bo.C_SLIP] = options.slippage_bps / 10_000
    c[bo.C_NEXT_OPEN] = options.fill == "next-open"
    c[bo.C_RISK_ON] = options.risk_on
    c[bo.C_POS_PCT] = options.position_pct
    c[bo.C_CASH0] = options.cash_usd
    c[bo.C_KILL] = risk.kill_switch
    c[bo.C_MAX_POS], c[bo.C_MAX_OPEN] = risk.max_position_usd, risk.max_open_positions
    c[bo.C_MAX_EXPO], c[bo.C_MAX_ORDER] = risk.max_exposure_usd, risk.max_order_usd
    c[bo.C_DAILY], c[bo.C_MAX_LOSSES] = risk.daily_loss_limit_usd, risk.max_consecutive_losses
    c[bo.C_COOLDOWN], c[bo.C_RISK_FRAC] = risk.cooldown_s, risk.risk_fraction
    c[bo.C_STOP_PCT], c[bo.C_TP_PCT] = risk.stop_loss_pct, risk.take_profit_pct
    c[bo.C_TRAIL_PCT], c[bo.C_MAX_HOLD] = risk.trailing_stop_pct, risk.max_hold_s
    c[bo.C_BRK_ERRS], c[bo.C_BRK_WIN] = risk.breaker_max_errors, risk.breaker_window_s
    c[bo.C_BRK_HALT] = risk.breaker_halt_s
    c[bo.C_TIMEOUT], c[bo.C_MAX_REPRICES] = execution.limit_timeout_s, execution.max_reprices
    c[bo.C_FALLBACK_MARKET] = execution.fallback == "market"
    return c


def _guess_of(data: BarData) -> int:
    """1-minute bars are traded at their closes as live trades them: nothing is guessed.
    Coarser bars can hold a stop and a target at once: the pessimistic order is taken."""
    return bo.NO_GUESS if data.base_s <= 60 else bo.PESSIMISTIC


def _rules_array(data: BarData, options: BacktestOptions) -> np.ndarray:
    """Increments, minimums, and the tick either side of a close the quotes have (none
    under next-open, as the driver quotes)."""
    rules = np.zeros((len(data.products), bo.NRULE))
    for i, product_id in enumerate(data.products):
        rule = data.rules[product_id]
        rules[i, bo.U_PRICE_SCALE] = _scale(rule.price_increment)
        rules[i, bo.U_BASE_SCALE] = _scale(rule.base_increment)
        rules[i, bo.U_BASE_MIN] = float(rule.base_min_size)
        rules[i, bo.U_BASE_MAX] = float(rule.base_max_size)
        rules[i, bo.U_QUOTE_MIN] = float(rule.quote_min_size)
        rules[i, bo.U_TICK] = 0.0 if options.fill == "next-open" else float(rule.price_increment)
        rules[i, bo.U_DECIMALS] = max(0, -int(rule.price_increment.as_tuple().exponent))
    return rules


def _scale(increment: Decimal) -> float:
    """1 / increment, which must be a power of ten (1, 0.01, 1e-8 ...)."""
    exponent = increment.normalize().as_tuple()
    if exponent.digits != (1,) or not isinstance(exponent.exponent, int):
        raise ValueError(f"increments must be powers of ten, got {increment}")
    return 10.0 ** -exponent.exponent


def _result(data: BarData, strategies: Sequence[LoadedStrategy], options: BacktestOptions,
            equity: np.ndarray, exposure: np.ndarray, signals: np.ndarray, pos: np.ndarray,
            acct: np.ndarray, trades: typed.List, timings: dict[str, float]) -> BacktestResult:
    first = data.first_decided
    products = data.products
    start = int(data.time_s[first])
    strategy = strategies[0]
    return BacktestResult(
        strategy=", ".join(s.name for s in strategies), params=dict(strategy.params),
        interval=cfg.interval_name(strategy.interval_s), products=products, fill=options.fill,
        cash=options.cash_usd,
        trades=tuple(_trade(products, row) for row in sorted(  # the driver's order
            trades, key=lambda row: (row[bo.T_EXIT_TIME], pos[int(row[bo.T_PRODUCT]), bo.P_BOOK]))),
        open_trades=tuple(
            OpenTradeRecord(products[p], int(pos[p, bo.P_ENTRY_TIME]),
                            float(pos[p, bo.P_ENTRY_PRICE]), float(pos[p, bo.P_SIZE]))
            for p in np.flatnonzero(pos[:, bo.P_HELD])[
                np.argsort(pos[pos[:, bo.P_HELD] != 0, bo.P_BOOK], kind="stable")]),
        signals=tuple(SignalRecord(int(row[kb.S_TIME]), products[int(row[kb.S_PRODUCT])],
                                   ACTIONS[int(row[kb.S_ACTION])], float(row[kb.S_SCORE]))
                      for row in signals if row[kb.S_TIME] >= start),
        times=data.time_s[first:].copy(), equity=equity, exposure=exposure,
        closes={p: data.bars[i, first:, CLOSE].copy() for i, p in enumerate(products)},
        fees_usd=float(acct[bo.A_FEES]), timings=timings)


def _trade(products: tuple[str, ...], row: np.ndarray) -> TradeRecord:
    return TradeRecord(products[int(row[bo.T_PRODUCT])], int(row[bo.T_ENTRY_TIME]),
                       int(row[bo.T_EXIT_TIME]), float(row[bo.T_ENTRY_PRICE]),
                       float(row[bo.T_EXIT_PRICE]), float(row[bo.T_SIZE]),
                       float(row[bo.T_PNL]), float(row[bo.T_FEES]),
                       EXIT_REASONS[int(row[bo.T_REASON])])

