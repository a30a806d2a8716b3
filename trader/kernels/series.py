"""Candle series as columns of numpy arrays (the shape REST, files and the database give)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
