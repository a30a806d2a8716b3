"""A backtest as one self-contained HTML file: works offline (plotly's JS inlined, no CDN).

Sections (each a <section> with an id): metrics, gates, equity (equity and drawdown), prices
(price with entries and exits, for the products with most trades), monthly (returns by month),
trades (the trade list). Long curves are thinned to at most MAX_POINTS points each, keeping
each stretch's lowest and highest value, so a drawdown's depth and an equity peak are drawn
exactly however long the run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from trader.research import metrics as m
from trader.research.gates import Gate
from trader.research.result import BacktestResult
from trader.research.terminal import (
    SUMMARY,
    ambiguity_line,
    fmt_number,
    fmt_price,
    fmt_time,
    profit_factor_text,
    top_products,
)

MAX_POINTS = 4000  # per curve; a 5-year minute run has 2.6 M bars
PRICE_CHARTS = 4  # products drawn with their trades, the most traded first
MAX_TRADE_ROWS = 2000  # the last ones; the JSON holds them all
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
GREEN, RED, BLUE, GREY = "#1a7f37", "#cf222e", "#0969da", "#8c959f"

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 24px 48px; color: #1f2328; }
h1 { margin: 24px 0 4px; } h2 { margin: 32px 0 8px; border-bottom: 1px solid #d0d7de; }
p.meta { color: #59636e; margin: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fafbfc; }
td.l, th.l { text-align: left; }
table.pairs td:nth-child(3), table.pairs th:nth-child(3) { padding-left: 40px; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.pos { color: #1a7f37; } .neg { color: #cf222e; }
.scroll { max-height: 640px; overflow-y: auto; border: 1px solid #d0d7de; display: inline-block; }
.scroll th { position: sticky; top: 0; }
"""


def decimate(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most about `max_points` points: first, last, and each stretch's min and max."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    per = math.ceil(n / (max_points // 2))
    full = n - n % per
    blocks = values[:full].reshape(-1, per)
    offsets = np.arange(0, full, per)
    chosen = [offsets + blocks.argmin(axis=1), offsets + blocks.argmax(axis=1), [0, n - 1]]
    if full < n:
        tail = values[full:]
        chosen.append([full + int(tail.argmin()), full + int(tail.argmax())])
    return np.unique(np.concatenate(chosen).astype(np.int64))


def _ms(unix_s: np.ndarray) -> np.ndarray:
    """Unix seconds as float milliseconds: what a plotly date axis reads."""
    return unix_s.astype(np.float64) * 1000.0


def _figure_html(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 40},
                      hovermode="x unified", legend={"orientation": "h", "y": 1.08})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=PLOT_CONFIG)


# ---- charts ---------------------------------------------------------------------------------

def buy_and_hold_curve(result: BacktestResult) -> np.ndarray:
    """Equity of the starting cash split equally over the products at the first close."""
    if not result.closes or result.bars == 0:
        return np.empty(0)
    total, count = np.zeros(result.bars), 0
    for closes in result.closes.values():
        if len(closes) == result.bars and closes[0] > 0:
            total += closes / closes[0]
            count += 1
    if not count:
        return np.empty(0)
    return np.concatenate(([result.cash], result.cash * total / count))


def equity_chart(result: BacktestResult) -> str:
    """Equity (with equal-weight buy-and-hold) over the drawdown, sharing the time axis."""
    times, values = m.equity_points(result)
    falls = m.drawdown_pct(values)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.04)
    kept = decimate(values)
    fig.add_trace(go.Scatter(x=_ms(times[kept]), y=values[kept], name="equity",
                             line={"color": BLUE, "width": 1.5}), row=1, col=1)
    hold = buy_and_hold_curve(result)
    if len(hold) == len(times):
        kept = decimate(hold)
        fig.add_trace(go.Scatter(x=_ms(times[kept]), y=hold[kept], name="buy & hold",
                                 line={"color": GREY, "width": 1, "dash": "dot"}), row=1, col=1)
    kept = decimate(-falls)
    fig.add_trace(go.Scatter(x=_ms(times[kept]), y=-falls[kept], name="drawdown %",
                             fill="tozeroy", line={"color": RED, "width": 1}), row=2, col=1)
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text="USD", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_layout(height=560)
    return _figure_html(fig, "equity-chart")


def _markers(points: Sequence[tuple[int, float, str]], name: str, symbol: str,
             color: str) -> go.Scatter:
    """Trade markers: (bar open time, price, hover text) each; smaller when there are many,
    so the price stays visible under them."""
    times = np.asarray([p[0] for p in points], dtype=np.int64)
    size = 9 if len(points) <= 300 else 6 if len(points) <= 3000 else 4
    return go.Scatter(x=_ms(times), y=[p[1] for p in points], text=[p[2] for p in points],
                      mode="markers", name=name, hoverinfo="text+name",
                      marker={"symbol": symbol, "size": size, "color": color,
                              "line": {"width": 1, "color": "white"}})


def price_chart(result: BacktestResult, product: str, index: int) -> str:
    """A product's closes with its entries (up triangles) and exits (down triangles).

    Closes are drawn at bar close times, fills at the open time of the bar that filled them.
    """
    closes = result.closes[product]
    close_s = result.times.astype(np.int64) + m.bar_seconds(result)
    kept = decimate(closes)
    fig = go.Figure(go.Scatter(x=_ms(close_s[kept]), y=closes[kept], name="close",
                               line={"color": GREY, "width": 1}))
    trades = [t for t in result.trades if t.product == product]
    entries = [(t.entry_time, t.entry_price, f"size {t.size:g}") for t in trades]
    entries += [(t.entry_time, t.entry_price, f"size {t.size:g}, open")
                for t in result.open_trades if t.product == product]
    exits = [(t.exit_time, t.exit_price, f"{t.exit_reason}, pnl {t.pnl:,.2f}") for t in trades]
    if entries:
        fig.add_trace(_markers(entries, "entry", "triangle-up", GREEN))
    if exits:
        fig.add_trace(_markers(exits, "exit", "triangle-down", RED))
    fig.update_xaxes(type="date")
    fig.update_layout(height=380, title={"text": html.escape(product), "x": 0.01})
    return _figure_html(fig, f"price-chart-{index}")


def monthly_chart(result: BacktestResult) -> str:
    """Returns by calendar month: a heatmap of years by months, the % written in each cell."""
    months = m.monthly_returns(result)
    if not months:
        return "<p>No full day in the run.</p>"
    years = list(range(months[0][0], months[-1][0] + 1))
    z: list[list[float | None]] = [[None] * 12 for _ in years]
    for year, month, pct in months:
        z[years.index(year)][month - 1] = pct
    text = [["" if v is None else f"{v:+.1f} %" for v in row] for row in z]
    limit = max((abs(v) for row in z for v in row if v is not None), default=1.0) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=list(MONTHS), y=[str(y) for y in years], text=text,
                               texttemplate="%{text}", colorscale="RdYlGn", zmid=0,
                               zmin=-limit, zmax=limit, hoverongaps=False, xgap=2, ygap=2,
                               colorbar={"title": {"text": "%"}}))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=140 + 36 * len(years), hovermode="closest")
    return _figure_html(fig, "monthly-chart")


# ---- tables ---------------------------------------------------------------------------------

def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           left: Sequence[int] = (0,), css: str = "") -> str:
    """An HTML table of already-escaped cells; the columns numbered in `left` align left."""
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f"<{tag}{' class=l' if i in left else ''}>{v}</{tag}>"
                       for i, v in enumerate(values))
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    head = f'<table class="{css}">' if css else "<table>"
    return f"{head}<thead><tr>{cells('th', headers)}</tr></thead><tbody>{body}</tbody></table>"


def _signed(text: str, value: float | None) -> str:
    kind = "pos" if value and value > 0 else "neg" if value and value < 0 else ""
    return f'<span class="{kind}">{html.escape(text)}</span>' if kind else html.escape(text)


def metrics_html(metrics: Mapping[str, Any]) -> str:
    """The run's metrics, the ambiguity line and the per-product table."""
    cells = [[html.escape(label), html.escape(show(metrics))] for label, show in SUMMARY]
    half = (len(cells) + 1) // 2
    rows = [[*a, *b] for a, b in zip(cells[:half], cells[half:], strict=True)]
    parts = [_table(["Metric", "Value", "Metric", "Value"], rows, left=(0, 2), css="pairs"),
             f"<p>{html.escape(ambiguity_line(metrics))}</p>"]
    per_product = metrics.get("per_product", {})
    product_rows = [
        [html.escape(p), str(row["trades"]), fmt_number(row["win_rate_pct"], 1),
         profit_factor_text(row), _signed(fmt_number(row["pnl_usd"]), row["pnl_usd"]),
         fmt_number(row["fees_usd"]), fmt_number(row["exposure_pct"], 1),
         _signed(fmt_number(row["buy_and_hold_pct"], 1), row["buy_and_hold_pct"])]
        for p, row in ((p, per_product[p]) for p in top_products(metrics, len(per_product)))]
    parts += ["<h3>Per product</h3>", '<div class="scroll">',
              _table(["Product", "Trades", "Win %", "Profit factor", "P&amp;L $", "Fees $",
                      "Exposure %", "Buy &amp; hold %"], product_rows), "</div>"]
    return "\n".join(parts)


def gates_html(gates: Sequence[Gate]) -> str:
    """Each approval gate of [research] with its verdict."""
    rows = [[html.escape(g.name), fmt_number(g.value), html.escape(f"{g.op} {g.threshold:g}"),
             '<span class="pass">pass</span>' if g.passed else '<span class="fail">FAIL</span>']
            for g in gates]
    return _table(["Metric", "Value", "Rule", "Result"], rows)


def trades_html(result: BacktestResult) -> str:
    """Closed trades in exit order (the last MAX_TRADE_ROWS), then the open ones."""
    shown = result.trades[-MAX_TRADE_ROWS:]
    first = len(result.trades) - len(shown) + 1
    rows = [[str(first + i), html.escape(t.product), fmt_time(t.entry_time),
             fmt_time(t.exit_time), fmt_price(t.entry_price), fmt_price(t.exit_price),
             f"{t.size:g}", _signed(fmt_number(t.pnl), t.pnl), fmt_number(t.fees),
             html.escape(t.exit_reason)] for i, t in enumerate(shown)]
    note = (f"<p>The last {len(shown)} of {len(result.trades)} trades; the JSON has all.</p>"
            if len(shown) < len(result.trades) else "")
    parts = [note, '<div class="scroll">', _table(
        ["#", "Product", "Entry (UTC)", "Exit (UTC)", "Entry price", "Exit price", "Size",
         "P&amp;L $", "Fees $", "Reason"], rows, left=(1, 9)), "</div>"]
    if result.open_trades:
        open_rows = [[html.escape(t.product), fmt_time(t.entry_time), fmt_price(t.entry_price),
                      f"{t.size:g}"] for t in result.open_trades]
        parts += ["<h3>Open at the end</h3>",
                  _table(["Product", "Entry (UTC)", "Entry price", "Size"], open_rows)]
    return "\n".join(parts)


# ---- the page -------------------------------------------------------------------------------

def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _header(result: BacktestResult) -> str:
    params = ", ".join(f"{k}={v}" for k, v in result.params.items()) or "defaults"
    span = f"{fmt_time(result.start)} to {fmt_time(result.end)} UTC" if result.bars else "no bars"
    facts = [", ".join(result.products), result.interval, f"fill {result.fill}", span,
             f"{result.bars:,} bars", f"starting cash ${result.cash:,.2f}", f"params {params}"]
    meta = " &middot; ".join(html.escape(fact) for fact in facts)
    return f"<h1>Backtest: {html.escape(result.strategy)}</h1>\n<p class=\"meta\">{meta}</p>"


def price_sections(result: BacktestResult, metrics: Mapping[str, Any]) -> str:
    """Price charts of the most traded products (all when there are few)."""
    products = [p for p in top_products(metrics, PRICE_CHARTS) if p in result.closes]
    note = (f"<p>The {len(products)} products with most trades of {len(result.products)}.</p>"
            if len(result.products) > len(products) else "")
    return note + "\n".join(price_chart(result, p, i) for i, p in enumerate(products))


def render_report(result: BacktestResult, metrics: Mapping[str, Any],
                  gates: Sequence[Gate]) -> str:
    """The whole HTML page."""
    charts = result.bars > 0
    sections = [
        _section("metrics", "Metrics", metrics_html(metrics)),
        _section("gates", "Approval gates", gates_html(gates)),
        _section("equity", "Equity and drawdown",
                 equity_chart(result) if charts else "<p>No bars.</p>"),
        _section("prices", "Prices, entries and exits",
                 price_sections(result, metrics) if charts else "<p>No bars.</p>"),
        _section("monthly", "Monthly returns", monthly_chart(result)),
        _section("trades", "Trades", trades_html(result)),
    ]
    title = html.escape(f"Backtest {result.strategy} {result.interval}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{title}</title>", f"<style>{CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head>", "<body>",
        _header(result), *sections, "</body>", "</html>", ""])


def write_report(path: str | Path, result: BacktestResult, metrics: Mapping[str, Any],
                 gates: Sequence[Gate]) -> None:
    """Write the report of one backtest to `path` (UTF-8 HTML, about 5 MB of it plotly's JS)."""
    Path(path).write_text(render_report(result, metrics, gates), encoding="utf-8")
