"""What a benchmark reports: figures with their target and a baseline measured in the same run.

Every `bench_*.py` module defines `run(quick: bool) -> list[Figure]`; `python -m benchmarks`
collects them into one table. A script run alone prints its own figures the same way.
Data comes from `DATA` (tests/data, real Coinbase candles), tiled by `minutes` where a
benchmark needs years of bars.
"""

from __future__ import annotations

import operator
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trader.kernels.series import CandleArrays

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # the real files the tests use too, inside the repository
FIVE_YEARS_1M = 5 * 365 * 1440  # 2,628,000 one-minute bars

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure; `target` like (">=", 100_000), None when the issue names none."""

    area: str                       # "market data", "indicators", "trading", ...
    name: str                       # what was measured, in words
    value: float
    unit: str                       # "trades/s", "µs", "MiB", ...
    target: tuple[str, float] | None = None
    baseline: str = ""              # what the baseline is, in words
    baseline_value: float | None = None
    higher_is_better: bool = True

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        compare, bound = self.target
        return _COMPARE[compare](self.value, bound)

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline (>1: better), by `higher_is_better`."""
        if not self.baseline_value or not self.value:
            return None
        if self.higher_is_better:
            return self.value / self.baseline_value
        return self.baseline_value / self.value


def number(value: float) -> str:
    """A figure for people: 3 significant digits (all digits up to 9,999), then k and M."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g} M"
    if size >= 1e4:
        return f"{value / 1e3:.3g} k"
    if size >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def minutes(product: str, bars: int | None = None) -> CandleArrays:
    """The real Coinbase 1-minute candles of `product` from DATA, tiled to `bars` (all of the
    file when None) on consecutive minutes from the file's first: the file's gaps (minutes
    with no trade) close up and each repeat follows the one before."""
    from trader.kernels.series import CandleArrays
    from trader.store.history import read_candle_file

    real = read_candle_file(DATA / f"coinbase_{product}_1m.csv.gz")
    bars = len(real) if bars is None else bars
    index = np.arange(bars) % len(real)
    return CandleArrays(int(real.time_s[0]) + 60 * np.arange(bars, dtype=np.int64),
                        *(np.ascontiguousarray(c[index]) for c in real.columns()[1:]))


def row(figure: Figure, area: bool = True) -> list[str]:
    """The table columns: area (if asked), figure, result, target, baseline, ratio, met."""
    target = "—"
    if figure.target is not None:
        target = f"{figure.target[0]} {number(figure.target[1])} {figure.unit}"
    baseline = figure.baseline or "—"
    if figure.baseline_value is not None:
        baseline += f": {number(figure.baseline_value)} {figure.unit}"
    ratio = "—" if figure.ratio is None else f"{number(figure.ratio)}x"
    met = {None: "—", True: "met", False: "NOT MET"}[figure.met]
    columns = [figure.name, f"{number(figure.value)} {figure.unit}", target, baseline, ratio,
               met]
    return [figure.area, *columns] if area else columns


HEADER = ["area", "figure", "result", "target", "baseline", "ratio", "met"]


def markdown(figures: list[Figure], area: bool = True) -> str:
    """The figures as one markdown table (without the area column if `area` is False)."""
    header = HEADER if area else HEADER[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(f, area)) + " |" for f in figures]
    return "\n".join(lines)


def by_area(figures: list[Figure]) -> str:
    """One markdown section and table per area, in the order the areas first appear."""
    areas = list(dict.fromkeys(f.area for f in figures))
    return "\n\n".join(f"## {a}\n\n" + markdown([f for f in figures if f.area == a], False)
                        for a in areas)


def machine() -> str:
    """The machine the figures ran on, in one line."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu} ({platform.machine()}), {os.cpu_count()} cores, CPython "
            f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")


def heading() -> str:
    """The line above a table: the machine, the date and the load average at the start."""
    return (f"{machine()}; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
            f"load average {os.getloadavg()[0]:.2f}")


def report(figures: list[Figure]) -> None:
    """Print figures as a table (what a script run alone shows)."""
    print(heading())
    print(markdown(figures))
