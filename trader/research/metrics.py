"""Every number a backtest is judged by, each defined once (the README quotes these docstrings).

Conventions, shared by all metrics:
- The equity curve starts with the starting cash at the open of the first decided bar, then
  holds the equity at each bar's close (a bar closes at its open time plus the bar length; an
  open position is marked at the close).
- Daily returns: the curve resampled to UTC day closes (the equity at the last bar close of
  each UTC day; a day with no bar carries the previous close), the first day's return taken
  against the starting cash. Annualised with 365 days a year (crypto trades every day). The
  risk-free rate is 0.
- A metric that is undefined (no trades, no losing trade, fewer than two days, a flat curve)
  is None, which is `null` in JSON; NaN and infinity never leave this module.
- Percentages are percent (12.5 means 12.5 %), money is USD, durations are seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from trader.config import interval_seconds
from trader.research.result import BacktestResult, OpenTradeRecord, TradeRecord

DAY_S = 86_400
YEAR_DAYS = 365


def finite(value: float | None) -> float | None:
    """`value` as a float, or None when it is None, NaN or infinite (JSON has neither)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def bar_seconds(result: BacktestResult) -> int:
    """Length of one bar of the curves: the smallest step between bar times (else the interval)."""
    if len(result.times) >= 2:
        steps = np.diff(result.times)
        positive = steps[steps > 0]
        if len(positive):
            return int(positive.min())
    return interval_seconds(result.interval)


def equity_points(result: BacktestResult) -> tuple[np.ndarray, np.ndarray]:
    """(times in unix s, equity USD): the starting cash at `start`, then each bar's close."""
    close_s = result.times.astype(np.int64) + bar_seconds(result)
    times = np.concatenate(([result.start], close_s)).astype(np.int64)
    values = np.concatenate(([result.cash], result.equity)).astype(np.float64)
    return times, values


# ---- returns --------------------------------------------------------------------------------

def total_return_pct(result: BacktestResult) -> float | None:
    """Total return %: final equity / starting cash - 1, times 100."""
    if result.bars == 0 or result.cash <= 0:
        return None
    return finite((float(result.equity[-1]) / result.cash - 1.0) * 100.0)


def span_years(result: BacktestResult) -> float:
    """Years of 365 days from the open of the first decided bar to the close of the last."""
    return (result.end + bar_seconds(result) - result.start) / (YEAR_DAYS * DAY_S)


def cagr_pct(result: BacktestResult) -> float | None:
    """CAGR %: (final equity / starting cash) ** (1 / years) - 1, times 100.

    Years are 365-day years over the span from the open of the first decided bar to the close
    of the last. A final equity of 0 or less gives -100. Over a short span the annualised
    figure can overflow a float: then None.
    """
    total = total_return_pct(result)
    years = span_years(result)
    if total is None or years <= 0:
        return None
    growth = 1.0 + total / 100.0
    if growth <= 0:
        return -100.0
    try:
        return finite((growth ** (1.0 / years) - 1.0) * 100.0)
    except OverflowError:
        return None


def daily_closes(result: BacktestResult) -> tuple[np.ndarray, np.ndarray]:
    """(UTC day numbers, equity at each day's last bar close) for every day of the span.

    A bar belongs to the day its close falls in, a close at exactly midnight to the day before
    (the day's last minute closes at 24:00). A day with no bar carries the previous close.
    """
    if result.bars == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    close_s = result.times.astype(np.int64) + bar_seconds(result)
    days = (close_s - 1) // DAY_S
    last_of_day = np.flatnonzero(np.r_[days[1:] != days[:-1], True])
    every_day = np.arange(days[0], days[-1] + 1, dtype=np.int64)
    carried = np.searchsorted(days[last_of_day], every_day, side="right") - 1
    return every_day, result.equity[last_of_day][carried].astype(np.float64)


def daily_returns(result: BacktestResult) -> np.ndarray:
    """Each UTC day's return: its close / the previous day's close - 1 (day one: / cash)."""
    _, closes = daily_closes(result)
    previous = np.concatenate(([result.cash], closes[:-1]))
    return closes / previous - 1.0


def sharpe(returns: np.ndarray) -> float | None:
    """Sharpe ratio: mean daily return / sample standard deviation (n - 1), times sqrt(365).

    Risk-free rate 0. None with fewer than two days or when every day returned the same.
    """
    if len(returns) < 2:
        return None
    deviation = float(np.std(returns, ddof=1))
    if deviation == 0:
        return None
    return finite(float(np.mean(returns)) / deviation * math.sqrt(YEAR_DAYS))


def sortino(returns: np.ndarray) -> float | None:
    """Sortino ratio: mean daily return / downside deviation, times sqrt(365).

    Downside deviation: sqrt(mean over ALL days of min(return, 0) ** 2), a day without a loss
    counting as 0. Target and risk-free rate 0. None with fewer than two days or when no day
    lost.
    """
    if len(returns) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0:
        return None
    return finite(float(np.mean(returns)) / downside * math.sqrt(YEAR_DAYS))


def max_drawdown(result: BacktestResult) -> tuple[float | None, int | None]:
    """(max drawdown %, its duration in s) on the equity at every bar close.

    Drawdown at a point: 1 - equity / the highest equity so far (the starting cash included),
    times 100; the max drawdown is the deepest. Its duration runs from the close where that
    peak was last held to the first close back at or above the peak, or to the close of the
    last bar when equity never recovered. No fall at all: (0, 0).
    """
    if result.bars == 0:
        return None, None
    times, values = equity_points(result)
    falls = drawdown_pct(values)
    trough = int(np.argmax(falls))
    if falls[trough] <= 0:
        return 0.0, 0
    peak_value = np.maximum.accumulate(values)[trough]
    peak = int(np.flatnonzero(values[: trough + 1] >= peak_value)[-1])
    recovered = np.flatnonzero(values[trough:] >= peak_value)
    until = times[trough + int(recovered[0])] if len(recovered) else times[-1]
    return finite(float(falls[trough])), int(until - times[peak])


def drawdown_pct(values: np.ndarray) -> np.ndarray:
    """Drawdown % at each point of an equity curve: 1 - value / running peak, times 100."""
    peaks = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (1.0 - values / peaks) * 100.0, 0.0)
    return falls


def calmar(cagr: float | None, max_drawdown_pct: float | None) -> float | None:
    """Calmar ratio: CAGR % / max drawdown %. None without a drawdown."""
    if cagr is None or not max_drawdown_pct:
        return None
    return finite(cagr / max_drawdown_pct)


def monthly_returns(result: BacktestResult) -> list[tuple[int, int, float]]:
    """(year, month, return %) of each UTC calendar month: its last day close / the previous
    month's (the first month: / starting cash) - 1, times 100."""
    days, closes = daily_closes(result)
    if len(days) == 0:
        return []
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    last = np.flatnonzero(np.r_[months[1:] != months[:-1], True])
    month_closes = closes[last]
    previous = np.concatenate(([result.cash], month_closes[:-1]))
    pct = (month_closes / previous - 1.0) * 100.0
    return [(int(m // 12 + 1970), int(m % 12 + 1), float(r))
            for m, r in zip(months[last], pct, strict=True)]


# ---- trades ---------------------------------------------------------------------------------

def win_rate_pct(pnls: Sequence[float]) -> float | None:
    """Win rate %: trades with pnl > 0 (net of fees) / all closed trades, times 100."""
    if not pnls:
        return None
    return sum(1 for p in pnls if p > 0) / len(pnls) * 100.0


def profit_factor(pnls: Sequence[float]) -> float | None:
    """Profit factor: gross profit / gross loss, the sums of winning pnls and of losing -pnls.

    None (JSON null) when no trade lost, since the ratio is then unbounded or 0/0; the
    profit-factor gate passes that case when some trade won (trader.research.gates).
    """
    gross_loss = -sum(p for p in pnls if p < 0)
    if gross_loss == 0:
        return None
    return finite(sum(p for p in pnls if p > 0) / gross_loss)


def expectancy_usd(pnls: Sequence[float]) -> float | None:
    """Expectancy USD: mean pnl per closed trade, net of fees."""
    return sum(pnls) / len(pnls) if pnls else None


def average_win_usd(pnls: Sequence[float]) -> float | None:
    """Average win USD: mean pnl of the trades with pnl > 0."""
    wins = [p for p in pnls if p > 0]
    return sum(wins) / len(wins) if wins else None


def average_loss_usd(pnls: Sequence[float]) -> float | None:
    """Average loss USD: mean pnl of the trades with pnl < 0 (a negative number)."""
    losses = [p for p in pnls if p < 0]
    return sum(losses) / len(losses) if losses else None


def trade_metrics(trades: Iterable[TradeRecord]) -> dict[str, Any]:
    """The metrics of a set of closed trades (fees_usd: the fees of those trades, both sides)."""
    chosen = list(trades)
    pnls = [t.pnl for t in chosen]
    return {
        "trades": len(chosen),
        "win_rate_pct": finite(win_rate_pct(pnls)),
        "profit_factor": profit_factor(pnls),
        "expectancy_usd": finite(expectancy_usd(pnls)),
        "avg_win_usd": finite(average_win_usd(pnls)),
        "avg_loss_usd": finite(average_loss_usd(pnls)),
        "pnl_usd": finite(float(sum(pnls))),
        "fees_usd": finite(float(sum(t.fees for t in chosen))),
    }


# ---- exposure and the benchmark -------------------------------------------------------------

def exposure_pct(exposure: np.ndarray) -> float | None:
    """Exposure %: bars whose close found a position held (notional > 0) / all bars, times 100.

    `exposure` is the notional held at each bar's close (USD), or whether anything was held.
    """
    if len(exposure) == 0:
        return None
    return float(np.count_nonzero(exposure > 0)) / len(exposure) * 100.0


def held_bars(result: BacktestResult, trades: Sequence[TradeRecord],
              open_trades: Sequence[OpenTradeRecord]) -> np.ndarray:
    """Per bar, whether one of these trades was held at its close: from the entry bar to the
    bar before the exit bar (an exit fills within its bar), or to the last bar if still open."""
    held = np.zeros(result.bars, dtype=bool)
    spans = [(t.entry_time, t.exit_time) for t in trades]
    spans += [(t.entry_time, result.end + 1) for t in open_trades]
    for entry_time, exit_time in spans:
        first, stop = np.searchsorted(result.times, [entry_time, exit_time], side="left")
        held[first:stop] = True
    return held


def buy_and_hold_pct(closes: np.ndarray) -> float | None:
    """Buy-and-hold return % of a product: last close / first close - 1, times 100."""
    if len(closes) == 0 or not closes[0] > 0:
        return None
    return finite((float(closes[-1]) / float(closes[0]) - 1.0) * 100.0)


def total_buy_and_hold_pct(per_product: Iterable[float | None]) -> float | None:
    """Buy-and-hold return % of the run: the equal-weight mean of its products' (known) ones."""
    known = [v for v in per_product if v is not None]
    return sum(known) / len(known) if known else None


def optimistic_return_pct(result: BacktestResult) -> float | None:
    """Total return % had every ambiguous bar been resolved the optimistic way."""
    if result.ambiguity.bars == 0 and result.ambiguity.optimistic_return_pct is None:
        return total_return_pct(result)
    return finite(result.ambiguity.optimistic_return_pct)


# ---- the JSON "metrics" object --------------------------------------------------------------

def product_metrics(result: BacktestResult, product: str, trades: Sequence[TradeRecord],
                    open_trades: Sequence[OpenTradeRecord]) -> dict[str, Any]:
    """One product's trade metrics, exposure and buy-and-hold, given its trades."""
    metrics = trade_metrics(trades)
    closes = result.closes.get(product, np.empty(0))
    metrics["exposure_pct"] = exposure_pct(held_bars(result, trades, open_trades))
    metrics["buy_and_hold_pct"] = buy_and_hold_pct(closes)
    return metrics


def per_product_metrics(result: BacktestResult) -> dict[str, dict[str, Any]]:
    """`product_metrics` of every product of the run, in run order."""
    trades: dict[str, list[TradeRecord]] = {p: [] for p in result.products}
    held: dict[str, list[OpenTradeRecord]] = {p: [] for p in result.products}
    for t in result.trades:
        trades.setdefault(t.product, []).append(t)
    for o in result.open_trades:
        held.setdefault(o.product, []).append(o)
    return {p: product_metrics(result, p, trades[p], held.get(p, [])) for p in trades}


def compute(result: BacktestResult) -> dict[str, Any]:
    """The "metrics" object of the backtest JSON (DESIGN.md section 3): total, then per product."""
    returns = daily_returns(result)
    cagr = cagr_pct(result)
    drawdown, drawdown_s = max_drawdown(result)
    trades = trade_metrics(result.trades)
    per_product = per_product_metrics(result)
    final = finite(float(result.equity[-1])) if result.bars else None
    return {
        "total_return_pct": total_return_pct(result),
        "cagr_pct": cagr,
        "sharpe": sharpe(returns),
        "sortino": sortino(returns),
        "calmar": calmar(cagr, drawdown),
        "max_drawdown_pct": drawdown,
        "max_drawdown_duration_s": drawdown_s,
        **{k: v for k, v in trades.items() if k != "fees_usd"},
        "exposure_pct": exposure_pct(result.exposure),
        "fees_usd": finite(result.fees_usd),
        "buy_and_hold_pct": total_buy_and_hold_pct(
            m["buy_and_hold_pct"] for m in per_product.values()),
        "final_equity_usd": final,
        "days": len(returns),
        "ambiguous_bars": result.ambiguity.bars,
        "optimistic_return_pct": optimistic_return_pct(result),
        "per_product": per_product,
    }
