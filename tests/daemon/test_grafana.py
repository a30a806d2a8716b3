"""The Grafana dashboard (deploy/grafana/trader.json): well formed, and the metric names its
queries use. That each name is one a running daemon serves is checked against a real
exposition in tests/daemon/test_metrics.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from tests.helpers import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "trader.json"
# PromQL words that are not metric names (functions are recognised by their parenthesis)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset"}
HISTOGRAMS = ("trader_bar_close_seconds", "trader_frame_to_order_seconds",
              "trader_writer_flush_seconds", "trader_rest_request_seconds")


def load() -> dict[str, Any]:
    return orjson.loads(DASHBOARD.read_bytes())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the panels' queries."""
    return [target["expr"] for panel in panels(dashboard)
            for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                  expr)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if match.group() in KEYWORDS or expr[match.end():].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(match.group())
    return names


def dashboard_metric_names() -> set[str]:
    """Every metric the dashboard's queries and variables name."""
    dashboard = load()
    names = set().union(*(metric_names(expr) for expr in expressions(dashboard)))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        names |= set(re.findall(r"label_values\(([A-Za-z_:][A-Za-z0-9_:]*)", query))
    return names


def test_metric_names_are_read_from_promql():
    expr = ('histogram_quantile(0.99, sum by (le, interval) (rate(trader_bar_close_seconds_bucket'
            '{instance=~"$instance", le!="x"}[$__rate_interval]))) * on (instance) group_left '
            'trader_info or vector(0)')
    assert metric_names(expr) == {"trader_bar_close_seconds_bucket", "trader_info"}


def test_the_dashboard_is_well_formed():
    dashboard = load()
    assert dashboard["uid"] == "trader-daemon" and dashboard["title"] == "trader"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    for expr in expressions(dashboard):
        assert expr.count("(") == expr.count(")"), expr
        assert re.search(r'instance=~"\$instance"', expr), expr


def test_every_name_is_a_trader_or_process_metric_and_each_topic_has_panels():
    names = dashboard_metric_names()
    assert all(name.startswith(("trader_", "process_")) for name in names), names
    titles = " ".join(panel["title"].lower() for panel in panels(load()))
    for topic in ("equity", "pnl", "positions", "orders", "fills", "feed", "bar close",
                  "frame to order", "writer backlog", "risk", "rest", "flush"):
        assert topic in titles, topic


def test_latency_panels_are_quantiles_over_the_bucket_series():
    exprs = expressions(load())
    for histogram in HISTOGRAMS:
        using = [e for e in exprs if f"{histogram}_bucket" in e]
        assert using, histogram
        for expr in using:
            assert expr.startswith("histogram_quantile(")
            assert re.search(r"sum by \(le\b", expr), expr
