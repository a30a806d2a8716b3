"""A backtest on the terminal: summary, gates, ambiguity, per product, last trades; progress.

Everything fits 80 columns: long product lists are cut (the JSON has them all), cells may
wrap, headers never do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from trader.research.gates import Gate
from trader.research.result import BacktestResult, TradeRecord

MAX_PRODUCT_ROWS = 20
LAST_TRADES = 10


# ---- formatting (the HTML report shows the same strings) -----------------------------------

def fmt_number(value: float | None, decimals: int = 2) -> str:
    """A plain number; '-' for undefined, 'inf' for unbounded."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.{decimals}f}"


def fmt_pct(value: float | None, signed: bool = False) -> str:
    """A percentage, e.g. '+12.34 %'."""
    if value is None or math.isinf(value):
        return fmt_number(value)
    return f"{value:+,.2f} %" if signed else f"{value:,.2f} %"


def fmt_usd(value: float | None) -> str:
    """Dollars with the sign first, e.g. '-$3.75'."""
    if value is None or math.isinf(value):
        return fmt_number(value)
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def fmt_price(value: float) -> str:
    """A price with the digits that matter: 43,125.37 or 0.00012345."""
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.8g}"


def fmt_duration(seconds: float | None) -> str:
    """A duration in its two largest units, e.g. '3d 4h', '5h 12m', '45m', '30s'."""
    if seconds is None:
        return "-"
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def fmt_time(unix_s: int) -> str:
    """A UTC date and minute, e.g. '2024-01-31 13:05'."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(unix_s))


def profit_factor_text(metrics: Mapping[str, Any]) -> str:
    """The profit factor, 'inf' when some trade won and none lost."""
    if metrics.get("profit_factor") is None and metrics.get("avg_win_usd") is not None \
            and metrics.get("avg_loss_usd") is None:
        return "inf"
    return fmt_number(metrics.get("profit_factor"))


# (label, how to show it from the metrics object): the summary, in reading order
SUMMARY: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("Total return", lambda s: fmt_pct(s["total_return_pct"], signed=True)),
    ("CAGR", lambda s: fmt_pct(s["cagr_pct"], signed=True)),
    ("Buy & hold", lambda s: fmt_pct(s["buy_and_hold_pct"], signed=True)),
    ("Sharpe", lambda s: fmt_number(s["sharpe"])),
    ("Sortino", lambda s: fmt_number(s["sortino"])),
    ("Calmar", lambda s: fmt_number(s["calmar"])),
    ("Max drawdown", lambda s: fmt_pct(s["max_drawdown_pct"])),
    ("Drawdown length", lambda s: fmt_duration(s["max_drawdown_duration_s"])),
    ("Trades", lambda s: f"{s['trades']:,}"),
    ("Win rate", lambda s: fmt_pct(s["win_rate_pct"])),
    ("Profit factor", profit_factor_text),
    ("Expectancy", lambda s: fmt_usd(s["expectancy_usd"])),
    ("Average win", lambda s: fmt_usd(s["avg_win_usd"])),
    ("Average loss", lambda s: fmt_usd(s["avg_loss_usd"])),
    ("Exposure", lambda s: fmt_pct(s["exposure_pct"])),
    ("Fees", lambda s: fmt_usd(s["fees_usd"])),
)


def ambiguity_line(metrics: Mapping[str, Any]) -> str:
    """How much of the result rests on a guess about the order of events within a bar."""
    bars = metrics.get("ambiguous_bars", 0)
    if not bars:
        return "No ambiguous bars: no bar held two events whose order mattered."
    return (f"{bars} bar{'s' if bars != 1 else ''} resolved pessimistically; optimistic "
            f"order would give {fmt_pct(metrics.get('optimistic_return_pct'), signed=True)}")


def top_products(metrics: Mapping[str, Any], limit: int) -> list[str]:
    """Products by trade count (most first; ties in run order), at most `limit`."""
    per_product = metrics.get("per_product", {})
    order = {p: i for i, p in enumerate(per_product)}
    ranked = sorted(per_product, key=lambda p: (-per_product[p]["trades"], order[p]))
    return ranked[:limit]


# ---- tables ---------------------------------------------------------------------------------

def _table(title: str, *headers: str, right: Sequence[bool] = ()) -> Table:
    """A borderless table; headers keep their width, cells wrap (never cut) when space is short.

    Cells given as str are read as rich markup: pass product names and reasons as Text.
    """
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), show_edge=False, pad_edge=False)
    for i, header in enumerate(headers):
        at_right = i < len(right) and right[i]
        table.add_column(header, justify="right" if at_right else "left", min_width=len(header),
                         overflow="fold")
    return table


def summary_table(result: BacktestResult, metrics: Mapping[str, Any]) -> Table:
    """The run's metrics, two to a row."""
    products = ", ".join(result.products) if len(result.products) <= 4 \
        else f"{len(result.products)} products"
    span = f"{fmt_time(result.start)} .. {fmt_time(result.end)}" if result.bars else "no bars"
    title = f"{result.strategy} {result.interval} {products}, fill {result.fill}\n{span} UTC"
    table = _table(title, "Metric", "Value", "Metric", "Value",
                   right=(False, True, False, True))
    half = (len(SUMMARY) + 1) // 2
    for (left, show_left), (right, show_right) in zip(SUMMARY[:half], SUMMARY[half:],
                                                      strict=True):
        table.add_row(left, show_left(metrics), right, show_right(metrics))
    return table


def gates_table(gates: Sequence[Gate]) -> Table:
    """Each approval gate: the metric's JSON name, its value, the rule, pass or FAIL."""
    table = _table("Approval gates [research]", "Gate", "Value", "Rule", "Result",
                   right=(False, True, False, False))
    for gate in gates:
        verdict = Text("pass", style="green") if gate.passed \
            else Text("FAIL", style="bold red")
        table.add_row(gate.name, fmt_number(gate.value),
                      f"{gate.op} {fmt_number(gate.threshold)}", verdict)
    return table


def products_table(metrics: Mapping[str, Any]) -> Table:
    """Per product: trades and their results, exposure and buy-and-hold."""
    shown = top_products(metrics, MAX_PRODUCT_ROWS)
    hidden = len(metrics.get("per_product", {})) - len(shown)
    title = "Per product" + (f" (the {len(shown)} with most trades)" if hidden else "")
    table = _table(title, "Product", "Trades", "Win %", "PF", "P&L $", "Fees $", "Expo %",
                   "B&H %", right=(False, *[True] * 7))
    for product in shown:
        row = metrics["per_product"][product]
        table.add_row(Text(product), str(row["trades"]), fmt_number(row["win_rate_pct"], 1),
                      profit_factor_text(row), fmt_number(row["pnl_usd"]),
                      fmt_number(row["fees_usd"]), fmt_number(row["exposure_pct"], 1),
                      fmt_number(row["buy_and_hold_pct"], 1))
    return table


def trades_table(trades: Sequence[TradeRecord], limit: int = LAST_TRADES) -> Table:
    """The last closed trades: exit time, prices, pnl net of fees, why it closed."""
    title = f"Last {min(limit, len(trades))} of {len(trades)} trades"
    table = _table(title, "Product", "Exit (UTC)", "Entry", "Exit", "P&L $", "Reason",
                   right=(False, False, True, True, True, False))
    table.columns[1].min_width = len(fmt_time(0))  # a time is never cut nor wrapped
    for t in trades[-limit:] if limit else ():
        pnl = Text(fmt_number(t.pnl), style="green" if t.pnl > 0 else "red" if t.pnl < 0 else "")
        table.add_row(Text(t.product), fmt_time(t.exit_time), fmt_price(t.entry_price),
                      fmt_price(t.exit_price), pnl, Text(t.exit_reason))
    return table


def render(result: BacktestResult, metrics: Mapping[str, Any],
           gates: Sequence[Gate]) -> Group:
    """Everything shown after a backtest, in reading order."""
    parts: list[RenderableType] = [summary_table(result, metrics), gates_table(gates),
                                   Text(ambiguity_line(metrics))]
    if len(result.products) > 1:
        parts.append(products_table(metrics))
    if result.trades:
        parts.append(trades_table(result.trades))
    spaced: list[RenderableType] = []
    for part in parts:
        spaced += [part, Text("")]
    return Group(*spaced[:-1])


def show(result: BacktestResult, metrics: Mapping[str, Any], gates: Sequence[Gate],
         console: Console | None = None) -> None:
    """Print `render` (to stdout unless a console is given)."""
    (console or Console()).print(render(result, metrics, gates))


# ---- progress -------------------------------------------------------------------------------

@contextmanager
def progress(total_bars: int, console: Console | None = None
             ) -> Iterator[Callable[[int], None]]:
    """A callback `on_progress(done_bars)` that moves a progress bar on stderr.

    The bar shows only when the console (stderr by default) is a terminal; elsewhere the
    callback does nothing. It redraws at most every 1/500 of the run, so calling it every bar
    costs little.
    """
    console = console or Console(stderr=True)
    if not console.is_terminal or total_bars <= 0:
        yield lambda done_bars: None
        return
    step = max(1, total_bars // 500)
    columns = (TextColumn("backtest"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.completed:,}/{task.total:,} bars"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=total_bars)
        shown = 0

        def on_progress(done_bars: int) -> None:
            nonlocal shown
            if done_bars - shown >= step or done_bars >= total_bars:
                shown = done_bars
                bar.update(task, completed=done_bars)

        yield on_progress
