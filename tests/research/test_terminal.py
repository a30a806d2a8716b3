"""The terminal rendering: 80 columns, nothing cut, exact lines; the progress callback."""

from __future__ import annotations

import io
import re

from rich.console import Console

from tests.research.handmade import DAY, T0, make_result, trade
from trader.config import ResearchConfig
from trader.research import metrics as m
from trader.research import terminal as term
from trader.research.gates import gates
from trader.research.result import Ambiguity

PRODUCTS = ("BTC-USD", "ETH-USD", "MATIC-USDC", "AUCTION-USDC")


def busy_result():
    """Four products with long-ish names, a trade each bar, big and tiny prices."""
    closes = {p: [43_125.37 + i, 43_200.0, 44_000.0] for i, p in enumerate(PRODUCTS)}
    trades = [trade((i % 5 - 2) * 12.5, product=PRODUCTS[i % 4], entry_time=T0,
                    exit_time=T0 + i * 3600, entry_price=43_125.37, exit_price=0.00012345,
                    exit_reason=("take_profit", "stop_loss", "signal")[i % 3])
              for i in range(1, 13)]
    return make_result([100_000.0, 95_000.0, 99_000.0], cash=100_000.0, bar_s=DAY, interval="1d",
                       closes=closes, trades=trades, exposure=[10.0, 0.0, 5.0],
                       ambiguity=Ambiguity(12, 3.4), fees_usd=123.45)


def rendered(result, width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    metrics = m.compute(result)
    term.show(result, metrics, gates(metrics, ResearchConfig()), console)
    return console.export_text()


def test_everything_fits_80_columns_and_nothing_is_cut():
    text = rendered(busy_result())
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in ("Metric", "Value", "Gate", "Rule", "Result", "Product", "Trades", "Win %",
                   "PF", "P&L $", "Fees $", "Expo %", "B&H %", "Exit (UTC)", "Entry", "Exit",
                   "Reason", "Total return", "Drawdown length", "Profit factor"):
        assert header in text
    last_ten = busy_result().trades[-10:]
    rows = [line.split() for line in text.splitlines()]
    for t in last_ten:
        row = [t.product, *term.fmt_time(t.exit_time).split(), "43,125.37", "0.00012345",
               term.fmt_number(t.pnl), t.exit_reason]
        assert row in rows
    assert "Last 10 of 12 trades" in text
    assert "0.00012345" in text and "43,125.37" in text


def test_summary_values_and_gates_read_as_computed():
    text = rendered(busy_result())
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    # 100,000 -> 95,000: 5 %, from day 1's close (the last at the peak) to the end, day 3's close
    assert ["Max drawdown", "5.00 %", "Exposure", "66.67 %"] in rows
    assert ["Drawdown length", "2d", "Fees", "$123.45"] in rows
    assert ["Total return", "-1.00 %", "Trades", "12"] in rows
    # pnls -12.5, 0, 12.5, 25, -25, -12.5, 0, 12.5, 25, -25, -12.5, 0: 4 wins of 12
    assert ["win_rate_pct", "33.33", ">= 45.00", "FAIL"] in rows
    assert ["max_drawdown_pct", "5.00", "<= 15.00", "pass"] in rows
    assert ["12 bars resolved pessimistically; optimistic order would give +3.40 %"] in rows


def test_ambiguity_line():
    assert term.ambiguity_line({"ambiguous_bars": 1, "optimistic_return_pct": -2.5}) == (
        "1 bar resolved pessimistically; optimistic order would give -2.50 %")
    assert term.ambiguity_line({"ambiguous_bars": 0, "optimistic_return_pct": 4.0}) == (
        "No ambiguous bars: no bar held two events whose order mattered.")


def test_single_product_without_trades_shows_no_empty_tables():
    text = rendered(make_result([100.0, 100.0]))
    assert "Per product" not in text and "Last" not in text
    assert "No ambiguous bars" in text


def test_formats():
    assert term.fmt_duration(3 * DAY + 4 * 3600 + 59) == "3d 4h"
    assert term.fmt_duration(5 * 3600 + 12 * 60) == "5h 12m"
    assert (term.fmt_duration(45 * 60), term.fmt_duration(0), term.fmt_duration(None)) == (
        "45m", "0s", "-")
    assert (term.fmt_usd(-3.75), term.fmt_usd(1234.5), term.fmt_usd(None)) == (
        "-$3.75", "$1,234.50", "-")
    assert (term.fmt_pct(12.345, signed=True), term.fmt_pct(-1.0), term.fmt_number(
        float("inf"))) == ("+12.35 %", "-1.00 %", "inf")
    assert term.fmt_time(T0 + 13 * 3600 + 5 * 60) == "2024-01-01 13:05"
    assert term.profit_factor_text({"profit_factor": None, "avg_win_usd": 2.0,
                                    "avg_loss_usd": None}) == "inf"


def test_progress_is_silent_off_a_terminal():
    out = io.StringIO()
    with term.progress(1000, Console(file=out)) as on_progress:
        for done in range(0, 1001, 100):
            on_progress(done)
    assert out.getvalue() == ""


def test_progress_draws_a_bar_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    with term.progress(1000, console) as on_progress:
        for done in range(0, 1001, 100):
            on_progress(done)
    assert "backtest" in out.getvalue() and "1,000/1,000 bars" in out.getvalue()
