"""Clocks as plain callables returning int nanoseconds, so tests and backtests inject time."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]  # () -> unix time in ns

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S


def wall_ns() -> int:
    """Unix time now, in ns (the daemon's default clock)."""
    return time.time_ns()


def utc_day(time_ns: int) -> int:
    """Days since the epoch of a unix time in ns: the UTC date as one int."""
    return time_ns // NS_PER_DAY


class ManualClock:
    """A clock that moves only when told: tests, and backtests driven by bar times."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def set(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS_PER_S)
