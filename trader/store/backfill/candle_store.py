"""What backfill asks of a candle store (`Store`), the ranges it speaks in and its error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from trader.errors import TraderError
from trader.kernels.series import CandleArrays

Range = tuple[int, int]  # [start_s, end_s), unix seconds, aligned to the interval


class BackfillError(TraderError):
    """A backfill cannot go on (a file of another interval, a bad server time, …)."""


class Store(Protocol):
    async def held(self, product_id: str, interval_s: int, span: Range) -> list[Range]: ...
    async def store(self, product_id: str, interval_s: int, batch: Range,
                    candles: CandleArrays) -> None: ...
    async def finish(self, product_id: str, interval_s: int) -> None: ...
    async def close(self) -> None: ...


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-empty, overlapping or touching ranges joined."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def runs_of(time_s: np.ndarray, interval_s: int) -> list[Range]:
    """Runs of consecutive bars, each as [first open, last open + interval)."""
    if len(time_s) == 0:
        return []
    breaks = np.flatnonzero(np.diff(time_s) != interval_s) + 1
    starts = time_s[np.concatenate([[0], breaks])]
    ends = time_s[np.concatenate([breaks - 1, [len(time_s) - 1]])] + interval_s
    return list(zip(starts.tolist(), ends.tolist(), strict=True))
