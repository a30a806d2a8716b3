"""What a benchmark reports: figures with their target and a baseline measured in the same run.

Every `bench_*.py` module defines `run(quick: bool) -> list[Figure]`; `python -m benchmarks`
collects them into one table. A script run alone prints its own figures the same way.
"""

from __future__ import annotations

import operator
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # the real files the tests use too; no ../shared

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
    """A figure for people: 3 significant digits, thousands as k/M."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g} M"
    if size >= 1e4:
        return f"{value / 1e3:.3g} k"
    return f"{value:.3g}"


def row(figure: Figure) -> list[str]:
    """The table columns: area, figure, result, target, baseline, ratio, met."""
    target = "—" if figure.target is None else f"{figure.target[0]} {number(figure.target[1])}"
    baseline = figure.baseline or "—"
    if figure.baseline_value is not None:
        baseline += f": {number(figure.baseline_value)} {figure.unit}"
    ratio = "—" if figure.ratio is None else f"{figure.ratio:.2f}x"
    met = {None: "—", True: "met", False: "NOT MET"}[figure.met]
    return [figure.area, figure.name, f"{number(figure.value)} {figure.unit}", target,
            baseline, ratio, met]


HEADER = ["area", "figure", "result", "target", "baseline", "ratio", "met"]


def markdown(figures: list[Figure]) -> str:
    """The figures as one markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(f)) + " |" for f in figures]
    return "\n".join(lines)


def machine() -> str:
    """The machine the figures ran on, in one line."""
    import os

    import numba
    import numpy

    return (f"{platform.machine()}, {os.cpu_count()} cores, CPython "
            f"{platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}")


def report(figures: list[Figure]) -> None:
    """Print figures as a table (what a script run alone shows)."""
    print(markdown(figures))
