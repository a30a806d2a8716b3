"""What a backtest produces, in plain values: the input of metrics, reports and the JSON.

Times are unix seconds UTC, a bar named by its open time (DESIGN.md section 3). Prices, sizes
and money are floats here: the exact Decimal values stay inside the run; a result is for
reading and measuring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed round trip: entry and exit times are the open times of the filling bars."""

    product: str
    entry_time: int
    exit_time: int
    entry_price: float  # average entry price
    exit_price: float  # average exit price
    size: float  # base units
    pnl: float  # USD, net of both sides' fees
    fees: float  # USD, both sides
    exit_reason: str


@dataclass(frozen=True, slots=True)
class OpenTradeRecord:
    """A position still held at the end of the run (marked at the last close for equity)."""

    product: str
    entry_time: int
    entry_price: float
    size: float


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A non-HOLD decision; `time` is the open time of the decided bar."""

    time: int
    product: str
    action: str  # "enter_long" | "exit"
    score: float


@dataclass(frozen=True, slots=True)
class Ambiguity:
    """Bars whose range held two events whose order within the bar decides the result.

    `bars` were resolved the pessimistic way; `optimistic_return_pct` is the run's total
    return had each been resolved the other way (equal to the result when `bars` is 0).
    """

    bars: int = 0
    optimistic_return_pct: float | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One backtest: its inputs, what it did, and its curves over the decided bars."""

    strategy: str
    params: Mapping[str, float | int | bool]
    interval: str  # the strategy's interval, e.g. "5m"
    products: tuple[str, ...]
    fill: str  # "live" | "next-open"
    cash: float  # starting cash, USD
    trades: tuple[TradeRecord, ...]  # closed, in exit order
    open_trades: tuple[OpenTradeRecord, ...]
    signals: tuple[SignalRecord, ...]
    # one entry per base bar from the first decided bar to the last (open times, ascending)
    times: np.ndarray  # int64 unix s
    equity: np.ndarray  # float64 USD at each bar's close (positions marked at the close)
    exposure: np.ndarray  # float64 USD: notional held at each bar's close
    closes: Mapping[str, np.ndarray]  # product -> float64 close of each bar (the same times)
    fees_usd: float = 0.0
    ambiguity: Ambiguity = field(default_factory=Ambiguity)
    timings: Mapping[str, float] = field(default_factory=dict)  # load_s, compile_s, run_s

    @property
    def bars(self) -> int:
        return len(self.times)

    @property
    def start(self) -> int:
        return int(self.times[0]) if len(self.times) else 0

    @property
    def end(self) -> int:
        return int(self.times[-1]) if len(self.times) else 0
