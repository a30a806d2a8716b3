"""Candle history into numpy arrays: from candle files (gzip CSV, DESIGN.md section 3)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from trader.kernels.series import CandleArrays

CANDLE_HEADER = "time,open,high,low,close,volume"


def read_candle_file(path: Path) -> CandleArrays:
    """Read a gzip CSV candle file; ValueError on a wrong header, unsorted or repeated times."""
    with gzip.open(path, "rt") as handle:
        header = handle.readline().strip()
        if header != CANDLE_HEADER:
            raise ValueError(f"{path}: header {header!r}, expected {CANDLE_HEADER!r}")
        table = np.loadtxt(io.StringIO(handle.read()), delimiter=",", dtype=np.float64,
                           ndmin=2)
    if table.size == 0:
        table = np.empty((0, 6))
    times = table[:, 0].astype(np.int64)
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{path}: times are not strictly increasing")
    return CandleArrays(times, *(np.ascontiguousarray(table[:, i]) for i in range(1, 6)))
