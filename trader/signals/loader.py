"""The strategy loader: import strategies/<name>.py, resolve its params, check and compile it.

Every mistake is returned as ``(file:line, reason)`` (or a config key path for a parameter),
never raised and never left for the first bar close. `decide` is also run once, compiled with
numba's bounds checks, on a few synthetic inputs of the strategy's real shapes: an index past
its columns, params or BARS, or a return type other than (float, int, float, float), is a load
error. The API itself is `trader.strategy` (guide: strategies/README.md).
"""

from __future__ import annotations

import difflib
import importlib.util
import linecache
import math
import re
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from trader.config import StrategyConfig, interval_seconds
from trader.kernels.decide import (
    CompiledDecide,
    checked_copy,
    decide_all,
    is_compiled,
    is_decision,
    plain_copy,
)
from trader.kernels.ring import CLOSE, FIELDS, HIGH, LOW, OPEN, TIME, VOLUME
from trader.signals.indicators import Indicator, column_names
from trader.types import Action

if TYPE_CHECKING:
    from trader.strategy import Param  # not at run time: trader.strategy re-exports this module

ACTIONS = (Action.HOLD, Action.ENTER_LONG, Action.EXIT)  # by action code
MAX_BARS = 10_000
Errors = list[tuple[str, str]]  # (file:line or key path, reason), as config.parse returns
ParamValue = float | int | bool


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
    bars: int  # BARS: rows of the window `decide` gets
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
        return [_located(path, exc, _first_line(module.decide))]


def _build(path: Path, name: str, stamp: tuple[int, int, int] | None, module: ModuleType,
           config: StrategyConfig, params: dict[str, ParamValue]) -> LoadedStrategy | Errors:
    if not is_compiled(module.decide):
        return [(f"{path}:{_first_line(module.decide)}",
                 "decide must be compiled: decorate it with @njit (from trader.strategy)")]
    p = _array(params)
    specs = dict(module.indicators(_frozen(p)))
    for key, spec in specs.items():
        try:
            spec.new_state()  # the kernels check their periods
        except ValueError as exc:
            line = module.indicators.__code__.co_firstlineno
            raise ValueError(f"indicator {key!r} = {spec}: {exc} (line {line})") from None
    names = column_names(specs)
    expected = column_names(module.indicators(_frozen(_array(defaults(module.PARAMS)))))
    if names != expected:
        raise ValueError(f"indicators() columns {names} differ from those at defaults {expected}")
    n_bars = getattr(module, "BARS", 1)
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or not 1 <= n_bars <= MAX_BARS:
        return [(f"{path}:{_line_of(path, 'BARS')}",
                 f"BARS must be a whole number in [1, {MAX_BARS}], got {n_bars!r}")]
    warmup = getattr(module, "warmup", None)
    warmup_bars = int(warmup(_frozen(p))) if warmup else max(
        (i.lookback for i in specs.values()), default=0) + 2  # + 2: `prev` is warm too
    decide = CompiledDecide(module.decide)
    problem = trial_run(path, module.decide, len(names), n_bars, p)
    if problem:
        return [problem]
    # once through decide_all, so the first bar close does not compile it
    decide_all(decide, np.ones((1, len(names))), np.ones((1, len(names))),
               np.arange(len(names)), np.ones((1, 2 * n_bars, FIELDS)), np.zeros(1, np.int64),
               n_bars, np.ones(1, np.bool_), p, np.empty((1, 4)))
    interval = config.interval or getattr(module, "INTERVAL", "5m")
    reasons = {code: f"{name}: {action}" for code, action in enumerate(ACTIONS)}
    reasons.update(getattr(module, "REASONS", {}))
    return LoadedStrategy(name, path, stamp, module, config, interval_seconds(interval), params,
                          p, tuple(specs.values()), n_bars, max(warmup_bars, n_bars), decide,
                          reasons)


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
        errors += [(prefix + key, reason) for key, reason in check(_frozen(_array(params)))]
    return params, errors


def defaults(params: Mapping[str, Param]) -> dict[str, ParamValue]:
    """The default value of every parameter."""
    return {name: spec.default for name, spec in params.items()}


def _array(params: Mapping[str, ParamValue]) -> np.ndarray:
    """The float64 array `p` of these values, in order (bools as 0.0/1.0)."""
    return np.array([float(v) for v in params.values()])


def _frozen(p: np.ndarray) -> np.ndarray:
    """A read-only copy of `p`, for the file's Python functions."""
    p = p.copy()
    p.setflags(write=False)
    return p


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


# ---- the trial run --------------------------------------------------------------------------

def trial_run(path: Path, decide: Any, n_columns: int, n_bars: int, p: np.ndarray
              ) -> tuple[str, str] | None:
    """(file:line, reason) if `decide`, compiled with bounds checks (and so are the jitted
    functions it calls by name), indexes out of range or raises on a synthetic input, or
    returns anything but (float, int, float, float); None if it passes.

    Only the paths the inputs take are checked: flat, rising, falling, NaN (warm-up) columns
    and a few random ones.
    """
    checked, found = checked_copy(decide)
    if not is_decision(found):
        return (f"{path}:{_first_line(decide)}",
                f"decide must return (float score, int action, float stop, float take_profit), "
                f"returns {found}")
    for args in _trial_inputs(n_columns, n_bars, p):
        try:
            checked(*args)
        except Exception as exc:
            return _trial_error(path, decide, args, exc, n_columns, n_bars, p.size)
    return None


def _trial_inputs(n_columns: int, n_bars: int, p: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """(now, prev, bars, p) of the trial run, in the shapes of the live call."""
    rng = np.random.default_rng(0)
    cols, ones = np.ones(n_columns), np.ones(n_bars)
    cases = [(cols, cols, ones), (2.0 * cols, cols, np.linspace(1.0, 2.0, n_bars)),
             (cols, 2.0 * cols, np.linspace(2.0, 1.0, n_bars)),
             (cols * math.nan, cols * math.nan, ones)]  # warm-up: no indicator value yet
    cases += [(rng.uniform(0.5, 1.5, n_columns), rng.uniform(0.5, 1.5, n_columns),
               rng.uniform(0.5, 1.5, n_bars)) for _ in range(4)]
    inputs: list[tuple[np.ndarray, ...]] = []
    for now, prev, close in cases:
        bars = np.empty((n_bars, FIELDS))
        bars[:, TIME] = 60.0 * np.arange(n_bars)
        bars[:, OPEN], bars[:, HIGH], bars[:, LOW] = close, close * 1.01, close * 0.99
        bars[:, CLOSE], bars[:, VOLUME] = close, rng.uniform(0.0, 2.0, n_bars)
        inputs.append((now, prev, bars, p.copy()))
    return inputs


def _trial_error(path: Path, decide: Any, args: tuple[np.ndarray, ...], exc: Exception,
                 n_columns: int, n_bars: int, n_params: int) -> tuple[str, str]:
    """Where the trial run failed: numba's bounds check names no line, so the same input is
    run again as plain Python, whose traceback does."""
    try:
        plain_copy(decide)(*args)
    except Exception as plain:
        if type(plain) is type(exc):
            exc = plain
    where, reason = _located(path, exc, _first_line(decide))
    if isinstance(exc, IndexError):
        reason += (f" (trial run of decide: now/prev have {n_columns} columns, bars "
                   f"{n_bars} row{'s' * (n_bars > 1)} (BARS), p {n_params} params)")
    return where, reason


# ---- files and locations --------------------------------------------------------------------

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


def _first_line(function: Any) -> int:
    """The line of a function's `def` (its code starts at its decorators), 1 if none."""
    code = getattr(getattr(function, "py_func", function), "__code__", None)
    if code is None:
        return 1
    line = code.co_firstlineno
    while linecache.getline(code.co_filename, line).lstrip().startswith("@"):
        line += 1
    return line


def _line_of(path: Path, name: str) -> int:
    """The line assigning a module-level `name` (1 if none: it is a default)."""
    pattern = re.compile(rf"{name}\s*[:=]")
    lines = path.read_text().splitlines()
    return next((i for i, line in enumerate(lines, 1) if pattern.match(line)), 1)


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
