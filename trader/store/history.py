"""Candle history into numpy arrays: from candle files (gzip CSV, DESIGN.md section 3)."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CANDLE_HEADER = "time,open,high,low,close,volume"


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """Candles of one product and interval, oldest first; `time_s` is the bar open (UTC)."""

    time_s: np.ndarray  # int64
    open: np.ndarray  # float64, and so on
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.time_s)

    def between(self, start_s: int, end_s: int) -> CandleArrays:
        """The candles with start_s <= time_s < end_s."""
        lo, hi = np.searchsorted(self.time_s, [start_s, end_s])
        return CandleArrays(*(column[lo:hi] for column in self.columns()))

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.time_s, self.open, self.high, self.low, self.close, self.volume)


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
