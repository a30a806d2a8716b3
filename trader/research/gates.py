"""The approval gates of `[research]`: which of a backtest's metrics pass, by their JSON names."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trader.config import ResearchConfig

# (metric's JSON name, ResearchConfig field, comparison): the order the gates are shown in
RULES = (
    ("sharpe", "min_sharpe", ">="),
    ("win_rate_pct", "min_win_rate_pct", ">="),
    ("profit_factor", "min_profit_factor", ">="),
    ("max_drawdown_pct", "max_drawdown_pct", "<="),
)


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate: `value` (None: undefined) compared with `threshold` by `op`."""

    name: str  # the metric's JSON name, e.g. "sharpe"
    value: float | None
    threshold: float
    passed: bool
    op: str = ">="  # ">=" | "<="


def gate_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """The metric a gate compares; a profit factor with wins and no loss is infinite."""
    value = metrics.get(name)
    unbounded = metrics.get("avg_win_usd") is not None and metrics.get("avg_loss_usd") is None
    if name == "profit_factor" and value is None and unbounded:
        return math.inf
    return None if value is None else float(value)


def gates(metrics: Mapping[str, Any], research: ResearchConfig) -> list[Gate]:
    """Every gate of `research` applied to `metrics` (compute's output).

    An undefined metric (None: no trades, a flat curve) fails its gate: nothing shows it passes.
    """
    found = []
    for name, field_name, op in RULES:
        value = gate_value(metrics, name)
        threshold = float(getattr(research, field_name))
        passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        found.append(Gate(name, value, threshold, passed, op))
    return found


def failing(found: list[Gate]) -> list[str]:
    """The JSON names of the metrics whose gate failed, in gate order."""
    return [gate.name for gate in found if not gate.passed]
