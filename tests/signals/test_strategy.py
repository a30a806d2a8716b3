"""The strategy loader (errors with file:line or key paths, reload) and StrategyRunner."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from trader.config import StrategyConfig
from trader.kernels import indicators as k
from trader.kernels import ring
from trader.signals.loader import (
    LoadedStrategy,
    load_strategies,
    load_strategy,
    reload_strategies,
)
from trader.signals.runner import StrategyRunner
from trader.strategy import ENTER_LONG, EXIT, HOLD, NAN, pipeline
from trader.types import Action, Signal

DATA = Path(__file__).resolve().parents[1] / "data" / "coinbase_ETH-USD_1m.csv.gz"

# A minimal strategy: enter when the close is above its SMA, exit when below (every bar).
MINIMAL = '''\
from trader.strategy import CLOSE, ENTER_LONG, EXIT, HOLD, NAN, Param, columns, njit, sma
from trader.strategy import param_index

INTERVAL = "1m"
PARAMS = {"period": Param(20, low=2, high=500), "margin": Param(0.0, low=0.0, high=1.0),
          "long_only": Param(True)}
P = param_index(PARAMS)


def indicators(p):
    return {"sma": sma(p[P.period])}


C = columns(indicators, PARAMS)


@njit(cache=True)
def decide(now, prev, bars, p):
    bar = bars[-1]
    x = bar[CLOSE] - now[C.sma]
    if x > p[P.margin]:
        return 0.5, ENTER_LONG, bar[CLOSE] * 0.9, NAN
    if x < -p[P.margin]:
        return -0.5, EXIT, NAN, NAN
    return 0.0, HOLD, NAN, NAN
'''


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(text)
    return path


def errors_of(result: object) -> list[tuple[str, str]]:
    assert isinstance(result, list), result
    return result


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_syntax_error_is_reported_with_file_and_line(tmp_path):
    text = MINIMAL.replace("    if x < -p[P.margin]:", "    if x < -p[P.margin]")
    path = write(tmp_path, "broken", text)
    [(where, reason)] = errors_of(load_strategies(tmp_path, {"broken": StrategyConfig()}))
    assert where == f"{path}:{line_of(text, 'if x < -p[P.margin]')}"
    assert reason.startswith("SyntaxError")


def test_a_numba_typing_error_is_reported_with_file_and_line(tmp_path):
    text = MINIMAL.replace("    x = bar[CLOSE] - now[C.sma]", '    x = bar[CLOSE] - "sma"')
    path = write(tmp_path, "untyped", text)
    [(where, reason)] = errors_of(load_strategies(tmp_path, {"untyped": StrategyConfig()}))
    assert where == f"{path}:{line_of(text, 'bar[CLOSE] - ')}"
    assert reason.startswith("TypingError:") and "sub" in reason


def test_an_import_error_and_a_runtime_error_at_load_are_located(tmp_path):
    path = write(tmp_path, "imports", "import math\n\nimport not_a_module\n")
    [(where, reason)] = errors_of(load_strategy(path, "imports"))
    assert (where, reason) == (f"{path}:3", "ModuleNotFoundError: No module named 'not_a_module'")
    raising = "    if bar[CLOSE] > 0.0:\n        raise ValueError('no')\n    if x > p[P.margin]:"
    text = MINIMAL.replace("    if x > p[P.margin]:", raising)
    path = write(tmp_path, "raises", text)
    [(where, reason)] = errors_of(load_strategy(path, "raises"))
    assert (where, reason) == (f"{path}:{line_of(text, 'raise')}", "ValueError: no")


def test_a_wrong_return_shape_or_missing_parts_are_errors(tmp_path):
    text = MINIMAL.replace("    return 0.0, HOLD, NAN, NAN", "    return 0.0, HOLD, NAN")
    [(_, reason)] = errors_of(load_strategy(write(tmp_path, "shape", text), "shape"))
    assert "TypingError" in reason and "Tuple(float64, int64, float64, float64)" in reason
    path = write(tmp_path, "empty", "X = 1\n")
    assert errors_of(load_strategy(path, "empty")) == [
        (f"{path}:1", "a strategy must define PARAMS, indicators, decide")]
    assert errors_of(load_strategies(tmp_path, {"nowhere": StrategyConfig()})) == [
        ("strategies.nowhere", f"no strategy file {tmp_path / 'nowhere.py'}")]


def test_params_are_checked_against_bounds_and_types_with_key_paths(tmp_path):
    write(tmp_path, "minimal", MINIMAL)
    config = StrategyConfig(params={"period": 1, "margn": 0.1, "long_only": 1, "margin": "x"})
    assert sorted(errors_of(load_strategies(tmp_path, {"minimal": config}))) == [
        ("strategies.minimal.params.long_only", "expected true or false, got 1"),
        ("strategies.minimal.params.margin", "expected a number, got 'x'"),
        ("strategies.minimal.params.margn",
         "unknown parameter (did you mean 'margin'?); known: period, margin, long_only"),
        ("strategies.minimal.params.period", "must be in [2, 500], got 1"),
    ]
    config = StrategyConfig(params={"period": 20.5})
    assert errors_of(load_strategies(tmp_path, {"minimal": config})) == [
        ("strategies.minimal.params.period", "expected a whole number, got 20.5")]


def test_a_bad_indicator_period_or_default_is_reported(tmp_path):
    text = MINIMAL.replace("Param(20, low=2, high=500)", "Param(20, low=0, high=500)")
    path = write(tmp_path, "periods", text)
    [(where, reason)] = errors_of(
        load_strategies(tmp_path, {"periods": StrategyConfig(params={"period": 0})}))
    assert where == f"{path}:{line_of(text, 'return {')}"
    assert reason == "ValueError: sma(0): periods must be whole numbers >= 1"
    text = MINIMAL.replace("Param(0.0, low=0.0, high=1.0)", "Param(2.0, low=0.0, high=1.0)")
    assert errors_of(load_strategy(write(tmp_path, "default", text), "default")) == [
        ("strategies.default.params.margin", "default: must be in [0, 1], got 2")]


def test_a_strategys_own_validate_reports_with_key_paths():
    repo_strategies = Path(__file__).resolve().parents[2] / "strategies"
    config = StrategyConfig(params={"fast": 40, "slow": 30})
    assert errors_of(load_strategies(repo_strategies, {"sma_cross": config})) == [
        ("strategies.sma_cross.params.fast", "must be < slow (30)")]


def test_a_loaded_strategy_has_resolved_params_in_order_and_its_interval(tmp_path):
    write(tmp_path, "minimal", MINIMAL)
    config = StrategyConfig(interval="5m", params={"margin": 0.25})
    loaded = load_strategies(tmp_path, {"minimal": config})
    assert isinstance(loaded, dict)
    strategy = loaded["minimal"]
    assert dict(strategy.params) == {"period": 20, "margin": 0.25, "long_only": True}
    assert strategy.param_array.tolist() == [20.0, 0.25, 1.0]
    assert (strategy.interval_s, strategy.warmup_bars) == (300, 21)
    standalone = load_strategy(tmp_path / "minimal.py", "minimal")  # no config: its INTERVAL
    assert isinstance(standalone, LoadedStrategy) and standalone.interval_s == 60


def test_reload_keeps_the_previous_version_when_the_new_file_fails(tmp_path):
    path = write(tmp_path, "minimal", MINIMAL)
    configs = {"minimal": StrategyConfig()}
    first, errors = reload_strategies(tmp_path, configs, {})
    assert errors == []
    same, errors = reload_strategies(tmp_path, configs, first)
    assert errors == [] and same["minimal"] is first["minimal"]  # unchanged: not reloaded
    path.write_text(MINIMAL.replace("return 0.5, ENTER_LONG", "return 0.5 +, ENTER_LONG"))
    os.utime(path, ns=(1, 1))
    kept, errors = reload_strategies(tmp_path, configs, first)
    assert kept["minimal"] is first["minimal"]
    assert [where for where, _ in errors] == [f"{path}:{line_of(MINIMAL, 'return 0.5')}"]
    path.write_text(MINIMAL.replace("return 0.5, ENTER_LONG", "return 0.75, ENTER_LONG"))
    os.utime(path, ns=(2, 2))
    new, errors = reload_strategies(tmp_path, configs, first)
    assert errors == [] and new["minimal"] is not first["minimal"]
    ones = np.ones(1)
    assert new["minimal"].module.decide(ones, ones, np.full((1, 6), 2.0), ones)[0] == 0.75
    changed, errors = reload_strategies(
        tmp_path, {"minimal": StrategyConfig(params={"period": 30})}, new)
    assert errors == [] and changed["minimal"].params["period"] == 30
    dropped, errors = reload_strategies(tmp_path, {}, changed)
    assert dropped == {} and errors == []


@njit(cache=True)
def _combine(a, b, c, exit_ok):
    return pipeline(((a, 0.5), (b, -0.25), (c, 1)), (exit_ok, 0.8), 9.0, 11.0)


def test_pipeline_vetoes_averages_and_never_vetoes_an_exit():
    assert _combine(True, True, True, False) == (1.25 / 3, ENTER_LONG, 9.0, 11.0)
    score, action, stop, take_profit = _combine(True, False, True, False)
    assert (score, action) == (1.25 / 3, HOLD) and math.isnan(stop) and math.isnan(take_profit)
    score, action, stop, _ = _combine(True, True, True, True)
    assert (score, action) == (-0.8, EXIT) and math.isnan(stop)


def _candles(n: int) -> np.ndarray:
    if not DATA.exists():
        pytest.fail(f"missing real candle data {DATA}", pytrace=False)
    with gzip.open(DATA, "rt") as f:
        return np.loadtxt(f, delimiter=",", skiprows=1, max_rows=n, ndmin=2)


def _run(runner: StrategyRunner, window: ring.Window, rows: np.ndarray, slots: dict[str, int],
         allowed: np.ndarray | None = None) -> list[Signal]:
    ring.push_all(window.buf, window.head, window.count, rows)
    return runner.on_bar_close(60, int(rows[0, 0]), window, slots, allowed)


def test_runner_products_allowed_mask_warmup_and_holds(tmp_path):
    write(tmp_path, "minimal", MINIMAL)
    configs = {"minimal": StrategyConfig(interval="1m"),
               "pinned": StrategyConfig(interval="1m", products=("B", "gone"))}
    write(tmp_path, "pinned", MINIMAL)
    loaded = load_strategies(tmp_path, configs)
    assert isinstance(loaded, dict)
    runner = StrategyRunner(loaded)
    candles = _candles(60)
    window = ring.new_window(3, 100)
    slots = {"A": 0, "B": 1, "C": 2}
    allowed = np.array([True, False, True])
    signals = []
    for t in range(60):
        rows = np.stack([candles[t], candles[t] * 1.0001, candles[t] * 0.9999])
        signals += _run(runner, window, rows, slots, allowed)
        if t < 20:  # 21 bars of warm-up: nothing before
            assert signals == []
    assert {(s.strategy, s.product_id) for s in signals} == {
        ("minimal", "A"), ("minimal", "C"), ("pinned", "B")}
    assert {s.action for s in signals} == {Action.ENTER_LONG, Action.EXIT}  # holds left out
    enter = next(s for s in signals if s.action == Action.ENTER_LONG)
    assert enter.stop is not None and enter.take_profit is None and enter.score == 0.5
    assert runner.warmup_bars(60) == 21 and runner.warmup_bars(300) == 0
    runner.emit_holds = True
    signals = _run(runner, window, np.stack([candles[59]] * 3), slots, allowed)
    assert len(signals) == 3


def test_runner_rewarms_indicators_when_a_reload_changes_a_parameter(tmp_path):
    write(tmp_path, "minimal", MINIMAL)
    configs = {"minimal": StrategyConfig(interval="1m")}
    loaded, _ = reload_strategies(tmp_path, configs, {})
    runner = StrategyRunner(loaded, emit_holds=True)
    candles = _candles(400)
    window = ring.new_window(1, 150)
    for t in range(300):
        _run(runner, window, candles[t : t + 1], {"ETH-USD": 0})
    configs = {"minimal": StrategyConfig(interval="1m", params={"period": 50})}
    reloaded, errors = reload_strategies(tmp_path, configs, loaded)
    assert errors == []
    runner.set_strategies(reloaded)
    _run(runner, window, candles[300:301], {"ETH-USD": 0})
    bank = runner.banks[60]
    fresh = k.sma_series(np.ascontiguousarray(candles[151:301, 4]), 50)
    assert bank.now[0, 0] == fresh[-1] and bank.prev[0, 0] == fresh[-2]
    assert bank.now.shape == (1, 1)  # sma(20) is gone with the old version


def test_a_disabled_strategy_is_not_run(tmp_path):
    write(tmp_path, "minimal", MINIMAL)
    loaded = load_strategies(tmp_path, {"minimal": StrategyConfig(enabled=False, interval="1m")})
    assert isinstance(loaded, dict)
    runner = StrategyRunner(loaded, emit_holds=True)
    window = ring.new_window(1, 10)
    assert _run(runner, window, _candles(1), {"A": 0}) == []
    assert NAN != NAN and EXIT == 2  # the constants strategies use
