"""Small BacktestResults built by hand, with values simple enough to check on paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from trader.research.result import (
    Ambiguity,
    BacktestResult,
    OpenTradeRecord,
    SignalRecord,
    TradeRecord,
)

T0 = 1_704_067_200  # 2024-01-01 00:00:00 UTC
DAY = 86_400


def make_result(equity: Sequence[float], *, cash: float = 100.0, start: int = T0,
                bar_s: int = 60, interval: str = "1m", exposure: Sequence[float] | None = None,
                closes: Mapping[str, Sequence[float]] | None = None,
                trades: Sequence[TradeRecord] = (), open_trades: Sequence[OpenTradeRecord] = (),
                signals: Sequence[SignalRecord] = (), fees_usd: float = 0.0,
                ambiguity: Ambiguity | None = None,
                times: Sequence[int] | None = None) -> BacktestResult:
    """A result over `len(equity)` bars of `bar_s` from `start` (or the given `times`)."""
    n = len(equity)
    bar_times = np.asarray(times if times is not None else [start + i * bar_s for i in range(n)],
                           dtype=np.int64)
    closes = closes if closes is not None else {"BTC-USD": [100.0] * n}
    return BacktestResult(
        strategy="sma_cross", params={"fast": 10, "slow": 30}, interval=interval,
        products=tuple(closes), fill="live", cash=cash, trades=tuple(trades),
        open_trades=tuple(open_trades), signals=tuple(signals), times=bar_times,
        equity=np.asarray(equity, dtype=np.float64),
        exposure=np.asarray(exposure if exposure is not None else [0.0] * n, dtype=np.float64),
        closes={p: np.asarray(c, dtype=np.float64) for p, c in closes.items()},
        fees_usd=fees_usd, ambiguity=ambiguity or Ambiguity(),
        timings={"load_s": 0.5, "compile_s": 1.25, "run_s": 0.125})


def trade(pnl: float, *, product: str = "BTC-USD", entry_time: int = T0, exit_time: int = T0 + 60,
          entry_price: float = 100.0, exit_price: float = 101.0, size: float = 1.0,
          fees: float = 0.0, exit_reason: str = "signal") -> TradeRecord:
    """A closed trade; only the fields a test names matter."""
    return TradeRecord(product, entry_time, exit_time, entry_price, exit_price, size, pnl, fees,
                       exit_reason)
