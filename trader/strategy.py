"""The strategy plugin API and the loader of strategies/*.py (the runner is strategy_runner).

A strategy is one file `strategies/<name>.py`, run by a `[strategies.<name>]` config section:

* ``PARAMS: dict[str, Param]`` parameters with defaults and bounds; their order is the order of
  the float64 array ``p`` the compiled code gets (bools as 0.0/1.0); ``P = param_index(PARAMS)``
  names the positions: ``p[P.fast]``. ``INTERVAL = "5m"``: the config's ``interval`` wins.
* ``indicators(p: dict) -> dict[str, Indicator]`` what it needs, from its params. The outputs are
  the columns of ``now``/``prev``, named by key (``<key>_<output>`` for MACD, BBANDS, STOCH:
  ``macd_signal``); ``C = columns(indicators, PARAMS)`` names their positions: ``now[C.fast]``.
* ``decide(now, prev, bar, p) -> (score, action, stop, take_profit)``, an ``@njit`` function,
  the calling convention shared by the daemon and a backtester: ``now``/``prev`` the indicator
  columns at the bar just closed and the one before, ``bar`` that bar (index it with TIME, OPEN,
  HIGH, LOW, CLOSE, VOLUME), ``p`` the params, all float64[::1]. It returns a score in [-1, 1]
  (> 0 bullish), an action (HOLD, ENTER_LONG, EXIT), stop and take-profit prices (NAN: none).
  It is stateless (positions are the registry's) and must not raise: an exception cannot pass
  through the compiled pointer call that runs it (it is printed and the decision is garbage).
* optional: ``warmup(p) -> int`` bars before deciding (default: the longest indicator lookback
  + 2, so ``prev`` is warm too); ``validate(p) -> [(param, reason)]`` for rules across params;
  ``REASONS: dict[int, str]`` a signal's text per action.

Multi-step strategies write steps ``step(now, prev, bar, p) -> (ok, strength)`` and return
``pipeline((trend, momentum, gate, trigger), exit_step, stop, take_profit)`` from ``decide``.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
import sys
import traceback
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np
from numba import literal_unroll, types
from numba.core.types import WrapperAddressProtocol
from numba.experimental.function_type import _get_wrapper_address
from numba.extending import typeof_impl

from trader.config import StrategyConfig, interval_seconds
from trader.kernels.ring import CLOSE, HIGH, LOW, OPEN, TIME, VOLUME
from trader.signals.indicators import (
    Indicator,
    adx,
    atr,
    bbands,
    ema,
    macd,
    obv,
    rsi,
    sma,
    stoch,
    volatility,
    vwap,
)
from trader.types import Action

__all__ = [  # what strategies use
    "CLOSE", "ENTER_LONG", "EXIT", "HIGH", "HOLD", "LOW", "NAN", "OPEN", "TIME", "VOLUME",
    "Indicator", "Param", "adx", "atr", "bbands", "columns", "ema", "macd", "njit", "obv",
    "param_index", "pipeline", "rsi", "sma", "stoch", "volatility", "vwap",
]

HOLD, ENTER_LONG, EXIT = 0, 1, 2
NAN = math.nan
_ACTION_OF = (Action.HOLD, Action.ENTER_LONG, Action.EXIT)  # by action code
Errors = list[tuple[str, str]]  # (file:line or key path, reason), as config.parse returns
ParamValue = float | int | bool

_ARRAY = types.float64[::1]
DECIDE_SIG = types.Tuple((types.float64, types.int64, types.float64, types.float64))(
    _ARRAY, _ARRAY, _ARRAY, _ARRAY)
_DECIDE_TYPE = types.FunctionType(DECIDE_SIG)


def njit(*args: Any, **options: Any) -> Any:
    """`numba.njit` defaulting to cache=True and error_model="numpy" (for strategies too).

    Under the numpy error model x / 0.0 is inf or NaN instead of a ZeroDivisionError, which
    could not reach the caller through the compiled pointer call anyway; the checks of the
    default "python" model made a decision up to 15x slower once inlined.
    """
    options.setdefault("cache", True)
    options.setdefault("error_model", "numpy")
    return numba.njit(*args, **options)


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter: its default (whose type, bool/int/float, is the parameter's) and bounds."""

    default: ParamValue
    low: float | None = None
    high: float | None = None


def param_index(params: Mapping[str, Param]) -> Any:
    """A namedtuple of each parameter's position in `p`, a constant inside compiled code."""
    return namedtuple("ParamIndex", list(params))(*range(len(params)))


def column_names(indicators: Mapping[str, Indicator]) -> list[str]:
    """The names of the `now`/`prev` columns of these indicators, in order."""
    return [f"{key}_{out}" if out else key for key, i in indicators.items() for out in i.outputs]


def columns(indicators: Callable[[dict], Mapping[str, Indicator]],
            params: Mapping[str, Param]) -> Any:
    """A namedtuple of each indicator column's position in `now`/`prev` (at default params)."""
    names = column_names(indicators(defaults(params)))
    return namedtuple("Columns", names)(*range(len(names)))


def defaults(params: Mapping[str, Param]) -> dict[str, ParamValue]:
    """The default value of every parameter."""
    return {name: spec.default for name, spec in params.items()}


@njit(cache=True)
def pipeline(steps: Any, exit_step: Any, stop: float,
             take_profit: float) -> tuple[float, int, float, float]:
    """Combine step results `(ok, strength)` into `decide`'s result.

    EXIT when `exit_step` is ok (exits are never vetoed by the entry steps; score -strength);
    else ENTER_LONG with `stop`/`take_profit` when every step is ok, HOLD when one vetoes.
    The score is the mean strength of the steps (each in [-1, 1]).
    """
    total, passed, n = 0.0, True, 0
    for step in literal_unroll(steps):
        passed = passed and bool(step[0])
        total += float(step[1])
        n += 1
    if exit_step[0]:
        return -abs(float(exit_step[1])), EXIT, NAN, NAN
    score = total / n
    if passed:
        return score, ENTER_LONG, float(stop), float(take_profit)
    return score, HOLD, NAN, NAN


class CompiledDecide(WrapperAddressProtocol):
    """A strategy's `decide` compiled for DECIDE_SIG, passed to compiled loops as a pointer."""

    def __init__(self, dispatcher: Any) -> None:
        dispatcher.compile(DECIDE_SIG)
        found = dispatcher.overloads[DECIDE_SIG.args].signature.return_type
        if found != DECIDE_SIG.return_type:
            raise TypeError(f"decide must return (float, int, float, float), returns {found}")
        self.dispatcher = dispatcher  # keeps the compiled code alive
        self._address = _get_wrapper_address(dispatcher, DECIDE_SIG)

    def __wrapper_address__(self) -> int:
        return self._address

    def signature(self) -> Any:
        return DECIDE_SIG


@typeof_impl.register(CompiledDecide)
def _typeof_decide(value: CompiledDecide, context: Any) -> Any:
    return _DECIDE_TYPE  # a constant: numba's generic typeof rebuilds the type on every call


@njit(cache=True)
def decide_all(decide: Any, now_all: np.ndarray, prev_all: np.ndarray, cols: np.ndarray,
               rows: np.ndarray, mask: np.ndarray, params: np.ndarray, out: np.ndarray) -> None:
    """out[slot] = (score clipped to [-1, 1], action, stop, take_profit) for slots in mask."""
    now, prev, bar = np.empty(cols.size), np.empty(cols.size), np.empty(rows.shape[1])
    for i in range(rows.shape[0]):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = 0.0, HOLD, NAN, NAN
        if not mask[i]:
            continue
        for j in range(cols.size):
            now[j], prev[j] = now_all[i, cols[j]], prev_all[i, cols[j]]
        for j in range(bar.size):  # element loops: a slice copy per product costs more here
            bar[j] = rows[i, j]
        score, action, stop, take_profit = decide(now, prev, bar, params)
        out[i, 0] = 0.0 if math.isnan(score) else min(1.0, max(-1.0, score))
        out[i, 1] = action if action == ENTER_LONG or action == EXIT else HOLD
        out[i, 2], out[i, 3] = stop, take_profit


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    """One strategy file, compiled, with its resolved parameters."""

    name: str
    path: Path
    stamp: tuple[int, int, int] | None  # (inode, size, mtime_ns): a changed file is reloaded
    module: ModuleType
    config: StrategyConfig
    interval_s: int
    params: Mapping[str, ParamValue]
    param_array: np.ndarray
    indicators: tuple[Indicator, ...]
    warmup_bars: int
    decide: CompiledDecide
    reasons: Mapping[int, str]


def load_strategies(directory: Path, configs: Mapping[str, StrategyConfig]
                    ) -> dict[str, LoadedStrategy] | Errors:
    """Load `directory/<name>.py` for every configured strategy, or return every error."""
    loaded, errors = reload_strategies(directory, configs, {})
    return errors or loaded


def reload_strategies(directory: Path, configs: Mapping[str, StrategyConfig],
                      previous: Mapping[str, LoadedStrategy]
                      ) -> tuple[dict[str, LoadedStrategy], Errors]:
    """Reload strategies whose file or config changed; a failing one keeps its previous version.

    Returns (strategies to run, errors). A strategy with no previous version is left out on error.
    """
    loaded: dict[str, LoadedStrategy] = {}
    errors: Errors = []
    for name, config in configs.items():
        path = Path(directory) / f"{name}.py"
        old = previous.get(name)
        if old is not None and old.config == config and old.stamp == _stamp(path):
            loaded[name] = old
            continue
        result = load_strategy(path, name, config)
        if isinstance(result, LoadedStrategy):
            loaded[name] = result
        else:
            errors += result
            if old is not None:
                loaded[name] = old
    return loaded, errors


def load_strategy(path: Path, name: str, config: StrategyConfig | None = None
                  ) -> LoadedStrategy | Errors:
    """Import, check and compile one strategy file (config None: its defaults, its INTERVAL)."""
    config = config or StrategyConfig(interval="")
    stamp = _stamp(path)
    if stamp is None:
        return [(f"strategies.{name}", f"no strategy file {path}")]
    try:
        module = _import(path, name)
    except SyntaxError as exc:
        return [(f"{path}:{exc.lineno}", f"SyntaxError: {exc.msg}")]
    except Exception as exc:
        return [_located(path, exc, 1)]
    missing = [a for a in ("PARAMS", "indicators", "decide") if not hasattr(module, a)]
    if missing:
        return [(f"{path}:1", f"a strategy must define {', '.join(missing)}")]
    try:
        params, errors = resolve_params(name, module, config.params)
        return errors or _build(path, name, stamp, module, config, params)
    except Exception as exc:  # numba typing errors, and anything the file's code raises
        return [_located(path, exc, getattr(module.decide, "py_func", module.decide)
                         .__code__.co_firstlineno)]


def _build(path: Path, name: str, stamp: tuple[int, int, int] | None, module: ModuleType,
           config: StrategyConfig, params: dict[str, ParamValue]) -> LoadedStrategy:
    specs = dict(module.indicators(dict(params)))
    for key, spec in specs.items():
        try:
            spec.new_state()  # the kernels check their periods
        except ValueError as exc:
            line = module.indicators.__code__.co_firstlineno
            raise ValueError(f"indicator {key!r} = {spec}: {exc} (line {line})") from None
    names = column_names(specs)
    expected = column_names(module.indicators(defaults(module.PARAMS)))
    if names != expected:
        raise ValueError(f"indicators() columns {names} differ from those at defaults {expected}")
    warmup = getattr(module, "warmup", None)
    bars = int(warmup(dict(params))) if warmup else max(
        (i.lookback for i in specs.values()), default=0) + 2
    decide = CompiledDecide(module.decide)
    param_array = np.array([float(v) for v in params.values()])
    # run once on a tiny input, directly: an exception cannot escape the compiled pointer call;
    # then through decide_all, so the first bar close does not compile it
    ones = np.ones((1, len(names)))
    module.decide(ones[0], ones[0], np.ones(6), param_array)
    decide_all(decide, ones, ones, np.arange(len(names)), np.ones((1, 6)), np.ones(1, np.bool_),
               param_array, np.empty((1, 4)))
    interval = config.interval or getattr(module, "INTERVAL", "5m")
    reasons = {code: f"{name}: {action}" for code, action in enumerate(_ACTION_OF)}
    reasons.update(getattr(module, "REASONS", {}))
    return LoadedStrategy(name, path, stamp, module, config, interval_seconds(interval), params,
                          param_array, tuple(specs.values()), bars, decide, reasons)


def resolve_params(name: str, module: ModuleType, given: Mapping[str, Any]
                   ) -> tuple[dict[str, ParamValue], Errors]:
    """Defaults overridden by the config's params, checked; errors keyed by their key path."""
    specs: Mapping[str, Param] = module.PARAMS
    prefix = f"strategies.{name}.params."
    errors: Errors = []
    for key in given:
        if key not in specs:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append((prefix + key, f"unknown parameter{hint}; known: {', '.join(specs)}"))
    params = defaults(specs)
    for key, spec in specs.items():
        reason = _check_param(spec, given.get(key, spec.default))
        if reason:
            errors.append((prefix + key, reason if key in given else f"default: {reason}"))
        elif key in given:
            params[key] = given[key]
    check = getattr(module, "validate", None)
    if not errors and check is not None:
        errors += [(prefix + key, reason) for key, reason in check(dict(params))]
    return params, errors


def _check_param(spec: Param, value: Any) -> str | None:
    kind = type(spec.default)
    if kind is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {value!r}"
    if kind is int and not isinstance(value, int):
        return f"expected a whole number, got {value!r}"
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        return f"must be in [{_show(spec.low)}, {_show(spec.high)}], got {value:g}"
    return None


def _show(bound: float | None) -> str:
    return "-inf" if bound is None else f"{bound:g}"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a file, None if there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _import(path: Path, name: str) -> ModuleType:
    """Execute the file as a fresh module `strategies.<name>` (a package is not needed)."""
    module_name = f"strategies.{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(module_name)
    sys.modules[module_name] = module  # numba's cache finds a function's globals through it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if before is None:
            del sys.modules[module_name]
        else:
            sys.modules[module_name] = before
        raise
    return module


_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def _located(path: Path, exc: BaseException, default_line: int) -> tuple[str, str]:
    """(file:line, message) of an exception, at its deepest line in `path`."""
    text = str(exc)
    lines = [int(line) for file, line in _FILE_LINE.findall(text) if _same(file, path)]
    lines += [f.lineno or 0 for f in traceback.extract_tb(exc.__traceback__)
              if _same(f.filename, path)]
    useful = [s.strip() for s in text.splitlines()
              if s.strip() and not s.startswith(("Failed in", "- Resolution"))]
    message = " ".join(useful[:2]) if useful and useful[0].endswith(":") else "".join(useful[:1])
    line = lines[-1] if lines else default_line
    return f"{path}:{line}", f"{type(exc).__name__}: {message}".rstrip(": ")


def _same(file: str, path: Path) -> bool:
    return Path(file).resolve() == Path(path).resolve()
