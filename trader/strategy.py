"""The strategy API: what a file in strategies/ imports. The guide, with a worked example, is
strategies/README.md; strategies/sma_cross.py is the file to copy.

A strategy file `strategies/<name>.py` defines:

* ``PARAMS = {"fast": Param(10, low=2, high=200), ...}``, ``P = param_index(PARAMS)``. Every
  function of the file gets the params as one float64 array ``p`` (PARAMS order, bools 0.0/1.0)
  and reads them one way: ``p[P.fast]``.
* ``indicators(p) -> {key: Indicator}``; ``C = columns(indicators, PARAMS)`` names the columns
  of ``now``/``prev``: ``now[C.fast]`` (``C.macd_signal`` for a multi-output indicator).
* ``@njit def decide(now, prev, bars, p) -> (score, action, stop, take_profit)``: ``bars`` the
  last BARS bars (default 1), oldest first: ``bars[-1, CLOSE]`` is the close of the bar just
  closed.
* optional: ``INTERVAL = "5m"``, ``BARS = 1``, ``REASONS = {ENTER_LONG: "..."}``,
  ``validate(p) -> [(param, reason)]``, ``warmup(p) -> bars``.

Comparisons with a tie rule, so that a decision does not depend on the bar the data started
at: ``crossed_above(was_a, was_b, a, b, scale)``, ``crossed_below(...)``, ``above(a, b,
scale)``, ``below(a, b, scale)`` (`@njit`, callable from ``decide``) treat values within
``TIE_REL * |scale|`` of each other (TIE_REL = 1e-10) as equal, neither side: pass the close
for prices and averages of prices, 100.0 for an RSI, 1.0 for a score. A running-sum SMA
differs in its last bits with its starting bar, so two SMAs of a flat market, equal in truth,
compare ``fast > slow`` one way in one run and the other way in another. Why 1e-10:
`trader.kernels.compare`.

`trader.signals.loader` imports, checks and compiles it; a mistake is reported as
``(file:line, reason)`` when it loads, an out-of-range index included (a trial run of `decide`).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from trader.kernels.compare import TIE_REL, above, below, crossed_above, crossed_below
from trader.kernels.decide import ENTER_LONG, EXIT, HOLD, NAN, pipeline
from trader.kernels.ring import CLOSE, HIGH, LOW, OPEN, TIME, VOLUME
from trader.signals.indicators import (
    Indicator,
    adx,
    atr,
    bbands,
    column_names,
    ema,
    macd,
    obv,
    rsi,
    sma,
    stoch,
    volatility,
    vwap,
)
from trader.signals.loader import LoadedStrategy as LoadedStrategy  # the loader's entry points,
from trader.signals.loader import load_strategies as load_strategies  # re-exported for the
from trader.signals.loader import load_strategy as load_strategy  # daemon and tools
from trader.signals.loader import reload_strategies as reload_strategies

__all__ = [
    "CLOSE", "ENTER_LONG", "EXIT", "HIGH", "HOLD", "LOW", "NAN", "OPEN", "TIE_REL", "TIME",
    "VOLUME", "Indicator", "Param", "above", "adx", "atr", "bbands", "below", "columns",
    "crossed_above", "crossed_below", "ema", "macd", "njit", "obv", "param_index", "pipeline",
    "rsi", "sma", "stoch", "volatility", "vwap",
]


def njit(*args: Any, **options: Any) -> Any:
    """`numba.njit` defaulting to cache=True and error_model="numpy".

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

    default: float | int | bool
    low: float | None = None
    high: float | None = None


def param_index(params: Mapping[str, Param]) -> Any:
    """A namedtuple of each parameter's position in `p`, a constant inside compiled code."""
    return namedtuple("ParamIndex", list(params))(*range(len(params)))


def columns(indicators: Callable[[np.ndarray], Mapping[str, Indicator]],
            params: Mapping[str, Param]) -> Any:
    """A namedtuple of each indicator column's position in `now`/`prev` (at default params)."""
    names = column_names(indicators(np.array([float(s.default) for s in params.values()])))
    return namedtuple("Columns", names)(*range(len(names)))
