"""The compiled side of strategies: the signature of `decide`, its pointer wrapper, the loop
that runs one strategy over every product slot, `pipeline` for multi-step strategies, and the
bounds-checked copies of `decide` the loader's trial run uses.

Conventions (the strategy API itself is `trader.strategy`, documented in strategies/README.md):

* ``decide(now, prev, bars, p) -> (score, action, stop, take_profit)`` has one compiled
  signature, DECIDE_SIG: ``now``/``prev`` float64[::1] indicator columns at the bar just closed
  and the bar before, ``bars`` float64[:, ::1] the strategy's last BARS rows of the window
  (oldest first, ``bars[-1]`` the bar just closed), ``p`` float64[::1] its params.
* Action codes: HOLD, ENTER_LONG, EXIT (0, 1, 2); NaN stop or take-profit: none.
* `decide_all` calls `decide` through a function pointer (CompiledDecide), so one compiled loop
  serves every strategy. An exception cannot pass through that call: the loader runs `decide`
  on trial inputs before it is ever called here.
"""

from __future__ import annotations

import math
import types as pytypes
from collections.abc import Callable, Mapping
from typing import Any, cast

import numba
import numpy as np
from numba import literal_unroll, njit, types
from numba.core.dispatcher import Dispatcher
from numba.core.types import WrapperAddressProtocol
from numba.experimental.function_type import _get_wrapper_address  # private: numba is pinned
from numba.extending import typeof_impl

from trader.kernels.ring import FIELDS

HOLD, ENTER_LONG, EXIT = 0, 1, 2
NAN = math.nan

ROW = types.float64[::1]
BARS = types.float64[:, ::1]
DECIDE_SIG = types.Tuple((types.float64, types.int64, types.float64, types.float64))(
    ROW, ROW, BARS, ROW)
_DECIDE_TYPE = types.FunctionType(DECIDE_SIG)


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


@njit(cache=True, error_model="numpy")
def decide_all(decide: Any, now_all: np.ndarray, prev_all: np.ndarray, cols: np.ndarray,
               buf: np.ndarray, head: np.ndarray, n_bars: int, mask: np.ndarray,
               params: np.ndarray, out: np.ndarray) -> None:
    """out[slot] = (score clipped to [-1, 1], action, stop, take_profit) for slots in mask.

    `buf`/`head` are a ring window's (trader.kernels.ring); each slot's decide gets a copy of
    its last `n_bars` rows, so the caller masks out slots with fewer bars than that (all of
    them when the window keeps fewer).
    """
    cap = buf.shape[1] // 2
    start = head[0] + cap - n_bars
    now, prev, bars = np.empty(cols.size), np.empty(cols.size), np.empty((n_bars, FIELDS))
    for i in range(buf.shape[0]):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = 0.0, HOLD, NAN, NAN
        if not mask[i]:
            continue
        if n_bars > cap or buf.shape[2] != FIELDS:
            raise ValueError("decide_all: a slot in mask needs n_bars <= the capacity")
        for j in range(cols.size):
            now[j], prev[j] = now_all[i, cols[j]], prev_all[i, cols[j]]
        for r in range(n_bars):  # a copy: decide cannot write into the window
            for f in range(FIELDS):
                bars[r, f] = buf[i, start + r, f]
        score, action, stop, take_profit = decide(now, prev, bars, params)
        out[i, 0] = 0.0 if math.isnan(score) else min(1.0, max(-1.0, score))
        out[i, 1] = action if action == ENTER_LONG or action == EXIT else HOLD
        out[i, 2], out[i, 3] = stop, take_profit


@njit(cache=True, error_model="numpy")
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


# ---- the loader's trial run ---------------------------------------------------------------

def is_compiled(function: Any) -> bool:
    """Whether `function` is a numba-jitted function (a dispatcher)."""
    return isinstance(function, Dispatcher)


def is_decision(found: Any) -> bool:
    """Whether a numba return type is (number, integer, number, number) as `decide` returns."""
    number = types.Float | types.Integer
    if not isinstance(found, types.BaseTuple) or len(found) != 4:
        return False
    score, action, stop, take_profit = tuple(cast(Any, found))  # numba types are untyped
    return isinstance(action, types.Integer) and all(
        isinstance(t, number) for t in (score, stop, take_profit))


def checked_copy(decide: Any) -> tuple[Any, Any]:
    """(copy, its return type): a copy of a jitted `decide`, and of the jitted functions it
    calls by global name, compiled with bounds checks for DECIDE_SIG's argument types (the
    return type as numba infers it, not cast). The originals are untouched."""
    checked = _copy(decide, _boundschecked, {})
    checked.compile(DECIDE_SIG.args)
    return checked, checked.overloads[DECIDE_SIG.args].signature.return_type


def plain_copy(decide: Any) -> Callable[..., Any]:
    """The same copy as plain Python: its traceback names the line of an IndexError, which
    numba's bounds check does not."""
    return _copy(decide, None, {})


def _boundschecked(function: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    kept = {key: value for key, value in options.items() if key != "nopython"}  # njit's own
    kept["boundscheck"] = True
    # numba's cache keys an entry by the function's file, qualified name and argument types,
    # not by its options: a name of its own keeps this copy apart from the unchecked original
    function.__qualname__ += ".boundscheck"
    return numba.njit(cache=True, **kept)(function)


def _copy(dispatcher: Any, jit: Callable[..., Any] | None, memo: dict[Any, Any]) -> Any:
    """`dispatcher`'s function, and the jitted functions it calls by global name, copied into
    a globals dict of their own, each compiled by `jit(function, options)` (None: plain)."""
    original = dispatcher.py_func
    if original in memo:
        return memo[original]
    scope = dict(original.__globals__)
    copy = pytypes.FunctionType(original.__code__, scope, original.__name__,
                                original.__defaults__, original.__closure__)
    copy.__qualname__ = original.__qualname__
    memo[original] = made = copy if jit is None else jit(copy, dispatcher.targetoptions)
    for name in _global_names(original.__code__):
        if isinstance(scope.get(name), Dispatcher):
            scope[name] = _copy(scope[name], jit, memo)
    return made


def _global_names(code: pytypes.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, pytypes.CodeType):
            names |= _global_names(const)
    return names
