"""The HTML report: parses, holds every section, works offline, lists every trade."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from tests.research.handmade import DAY, T0, make_result, trade
from trader.config import ResearchConfig
from trader.research import metrics as m
from trader.research.gates import gates
from trader.research.report import decimate, write_report
from trader.research.result import OpenTradeRecord

SECTIONS = {"metrics": "Metrics", "gates": "Approval gates", "equity": "Equity and drawdown",
            "prices": "Prices, entries and exits", "monthly": "Monthly returns",
            "trades": "Trades"}
CHARTS = {"equity-chart", "price-chart-0", "price-chart-1", "monthly-chart"}


class Page(HTMLParser):
    """What the tests read from a page: sections and their headings, scripts, divs, rows."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: dict[str, str] = {}  # section id -> its h2 text
        self.scripts: list[tuple[dict, int]] = []  # (attributes, length of the inline code)
        self.div_ids: set[str] = set()
        self.rows: dict[str, list[list[str]]] = {}  # section id -> table rows (cell texts)
        self.section = ""
        self.open_tag = ""
        self.in_h2 = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.open_tag = tag
        if tag == "section":
            self.section = attributes["id"]
        elif tag == "h2":
            self.in_h2 = True
            self.headings[self.section] = ""
        elif tag == "script":
            self.scripts.append((attributes, 0))
        elif tag == "div" and "id" in attributes:
            self.div_ids.add(attributes["id"])
        elif tag == "tr":
            self.rows.setdefault(self.section, []).append([])
        elif tag in ("td", "th"):
            self.rows[self.section][-1].append("")

    def handle_endtag(self, tag):
        self.open_tag = ""
        if tag == "h2":
            self.in_h2 = False
        elif tag == "section":
            self.section = ""

    def handle_data(self, data):
        if self.in_h2:
            self.headings[self.section] += data
        elif self.open_tag == "script":
            attributes, length = self.scripts[-1]
            self.scripts[-1] = (attributes, length + len(data))
        elif self.section in self.rows and self.rows[self.section] and self.open_tag in (
                "td", "th", "span"):
            self.rows[self.section][-1][-1] += data


def two_products():
    closes = {"BTC-USD": [40_000.0, 41_000.0, 39_000.0, 42_000.0, 43_000.0],
              "ETH-USD": [2_000.0, 2_100.0, 1_900.0, 2_050.0, 2_200.0]}
    trades = [trade(24.5, product="BTC-USD", entry_time=T0, exit_time=T0 + 3 * DAY,
                    entry_price=40_000.0, exit_price=42_000.0, size=0.0125, fees=0.5,
                    exit_reason="take_profit"),
              trade(-11.0, product="ETH-USD", entry_time=T0 + DAY, exit_time=T0 + 2 * DAY,
                    entry_price=2_100.0, exit_price=1_900.0, size=0.05, fees=1.0,
                    exit_reason="<stop>")]
    holding = [OpenTradeRecord("ETH-USD", T0 + 3 * DAY, 2_050.0, 0.1)]
    return make_result([1000.0, 1010.0, 990.0, 1013.5, 1030.0], cash=1000.0, bar_s=DAY,
                       interval="1d", closes=closes, trades=trades, open_trades=holding,
                       exposure=[500.0, 500.0, 0.0, 205.0, 220.0], fees_usd=1.75)


def report_page(result, tmp_path) -> tuple[Page, str]:
    metrics = m.compute(result)
    path = tmp_path / "report.html"
    write_report(path, result, metrics, gates(metrics, ResearchConfig()))
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    return page, text


def test_every_section_with_its_heading_and_charts(tmp_path):
    page, text = report_page(two_products(), tmp_path)
    assert text.startswith("<!DOCTYPE html>")
    assert page.headings == SECTIONS
    assert CHARTS <= page.div_ids


def test_plotly_is_inline_and_nothing_is_fetched(tmp_path):
    page, text = report_page(two_products(), tmp_path)
    assert all("src" not in attributes for attributes, _ in page.scripts)
    assert max(length for _, length in page.scripts) > 1_000_000  # plotly.js itself
    assert "<link" not in text and "<iframe" not in text
    assert text.count("Plotly.newPlot(") == len(CHARTS)


def test_trade_list_rows_and_open_trades(tmp_path):
    page, _ = report_page(two_products(), tmp_path)
    rows = page.rows["trades"]
    assert rows[:3] == [
        ["#", "Product", "Entry (UTC)", "Exit (UTC)", "Entry price", "Exit price", "Size",
         "P&L $", "Fees $", "Reason"],
        ["1", "BTC-USD", "2024-01-01 00:00", "2024-01-04 00:00", "40,000.00", "42,000.00",
         "0.0125", "24.50", "0.50", "take_profit"],
        ["2", "ETH-USD", "2024-01-02 00:00", "2024-01-03 00:00", "2,100.00", "1,900.00",
         "0.05", "-11.00", "1.00", "<stop>"],  # escaped: text, not a tag
    ]
    assert rows[3:] == [["Product", "Entry (UTC)", "Entry price", "Size"],
                        ["ETH-USD", "2024-01-04 00:00", "2,050.00", "0.1"]]


def test_metrics_and_gates_tables(tmp_path):
    page, _ = report_page(two_products(), tmp_path)
    summary = page.rows["metrics"]
    # equity 1000 (cash), 1000, 1010, 990, 1013.5, 1030 at the day closes
    assert summary[1] == ["Total return", "+3.00 %", "Trades", "2"]
    assert ["Max drawdown", "1.98 %", "Exposure", "80.00 %"] in summary  # 1010 -> 990
    assert ["Drawdown length", "2d", "Fees", "$1.75"] in summary  # day 2 close to day 4 close
    assert ["Product", "Trades", "Win %", "Profit factor", "P&L $", "Fees $", "Exposure %",
            "Buy & hold %"] in summary
    assert ["BTC-USD", "1", "100.0", "inf", "24.50", "0.50", "60.0", "7.5"] in summary
    assert ["ETH-USD", "1", "0.0", "0.00", "-11.00", "1.00", "60.0", "10.0"] in summary
    sharpe = m.compute(two_products())["sharpe"]
    assert page.rows["gates"] == [
        ["Metric", "Value", "Rule", "Result"],
        ["sharpe", f"{sharpe:.2f}", ">= 1.2", "pass"],
        ["win_rate_pct", "50.00", ">= 45", "pass"],
        ["profit_factor", "2.23", ">= 1.5", "pass"],  # 24.5 / 11
        ["max_drawdown_pct", "1.98", "<= 15", "pass"],
    ]


def test_empty_run_still_has_every_section(tmp_path):
    page, _ = report_page(make_result([], closes={"BTC-USD": []}), tmp_path)
    assert page.headings == SECTIONS
    assert page.rows["trades"] == [["#", "Product", "Entry (UTC)", "Exit (UTC)", "Entry price",
                                    "Exit price", "Size", "P&L $", "Fees $", "Reason"]]


def test_decimate_keeps_extremes_and_bounds_the_points():
    values = np.sin(np.arange(1_000_003) / 5000.0)
    values[123_457] = -7.0  # a one-bar crash
    values[876_543] = 9.0
    kept = decimate(values, 4000)
    assert len(kept) <= 4000 + 4
    assert {0, 123_457, 876_543, 1_000_002} <= set(kept.tolist())
    assert np.all(np.diff(kept) > 0)
    assert decimate(values[:10], 4000).tolist() == list(range(10))
