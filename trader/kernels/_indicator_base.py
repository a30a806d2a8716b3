"""Helpers shared by the indicator kernels (conventions: `trader.kernels.indicators`)."""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

EPS = 1e-14  # TA-Lib's TA_IS_ZERO / TA_IS_ZERO_OR_NEG band
NAN = np.nan

# `kernel` compiles the public kernels; `arith` the `_<name>_next` functions that hold the
# arithmetic and their helpers, inlined by numba into the step and the series loop so the tuples
# of carried values live in registers (LLVM does not inline across numba functions; measured).
# An array passed to an inlined function is reference counted (two atomic operations per call)
# unless numba's pruning pass can pair them: keep such functions to one array argument and no
# nested inlined calls that take it, or check the series' assembly for NRT_incref (see STOCH).
kernel = njit(cache=True, error_model="numpy")
arith = njit(cache=True, error_model="numpy", inline="always")


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma): explicit and deterministic, unlike fastmath."""
    f64 = types.float64

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return f64(f64, f64, f64), codegen


# Linux madvise(2) MADV_HUGEPAGE; 0 elsewhere (no advice).
_MADV_HUGEPAGE = 14 if sys.platform.startswith("linux") else 0
_HUGE_MIN_BYTES = 1 << 22  # numpy advises its own arrays from 4 MiB on


@intrinsic
def _madvise(typingctx, addr, nbytes, advice):
    """libc madvise(addr, nbytes, advice), by symbol name so the numba cache can hold it."""

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [i8p, ir.IntType(64), ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "madvise")
        advice32 = builder.trunc(args[2], ir.IntType(32))
        builder.call(fn, [builder.inttoptr(args[0], i8p), args[1], advice32])
        return context.get_dummy_value()

    return types.void(types.intp, types.intp, types.intp), codegen


@kernel
def new_output(size: int) -> np.ndarray:
    """np.empty(size) for a series' output, backed by transparent huge pages where it is large.

    numpy advises its own large arrays so; numba's allocator does not, and first-touch 4 KiB
    page faults of fresh outputs otherwise cost as much as the indicator arithmetic.
    """
    out = np.empty(size)
    nbytes = size * 8
    if _MADV_HUGEPAGE and nbytes >= _HUGE_MIN_BYTES:
        addr = out.ctypes.data
        start = (addr + 4095) & ~4095  # madvise wants a page-aligned start
        _madvise(start, addr + nbytes - start, _MADV_HUGEPAGE)
    return out


@arith
def next_slot(slot: int, size: int) -> int:
    """The ring slot after `slot`."""
    return slot + 1 if slot + 1 < size else 0


@kernel
def new_state(length: int, period: int, minimum: int) -> np.ndarray:
    """A zeroed state with `period` at [1]; raises if the period is below `minimum`."""
    if period < minimum:
        raise ValueError("period below the indicator's minimum")
    state = np.zeros(length)
    state[1] = period
    return state


@arith
def true_range(high: float, low: float, prev_close: float) -> float:
    """max(high - low, |high - prev_close|, |low - prev_close|)."""
    out = high - low
    up = abs(high - prev_close)
    if up > out:
        out = up
    down = abs(low - prev_close)
    if down > out:
        out = down
    return out
