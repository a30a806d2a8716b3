"""The status view at 80x24, 120x40 and 200x60: real snapshots (a recorded demo daemon's and
a running daemon's) through rich's recording console; the events ring and equity curve the
daemon keeps for it; `trader status --once` through the CLI."""

from __future__ import annotations

import copy
import logging
import os
import re
import subprocess
import sys
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.helpers import DATA, DaemonProcess, start_daemon, wait_for
from trader.daemon.events import EquityCurve, EventLog
from trader.daemon.statusfmt import compact, duration, price, score, signed, size, sparkline
from trader.daemon.statusview import frame_lines

SIZES = ((80, 24), (120, 40), (200, 60))
# `trader status --json` of a `trader demo` daemon (see tests/data/README.md)
RECORDED = orjson.loads((DATA / "status_snapshot_demo.json").read_bytes())
TITLES = ("Equity", "Positions (", "Open orders (", "Products", "Recent events (UTC)")
EVENT_TIME = re.compile(r"\b\d\d:\d\d:\d\d ")


def table_headers(lines: list[str]) -> list[str]:
    """The header line of each table: the line above a rule of '─'."""
    return [lines[i - 1] for i, line in enumerate(lines)
            if i and re.search(r"─{10,}", line) and "│" not in line[:5]]


def table_rows(lines: list[str], title: str) -> dict[str, dict[str, str]]:
    """The rows of the table under `title`: first cell -> {header: cell}."""
    at = next(i for i, line in enumerate(lines) if line.startswith(title))
    header = re.split(r"\s{2,}", lines[at + 1].strip())
    rows = {}
    for line in lines[at + 3:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header):
            break
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def check_frame(lines: list[str], width: int, height: int) -> str:
    assert len(lines) == height, "\n".join(lines)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for title in TITLES:
        assert title in text, f"{title!r} missing at {width}x{height}:\n{text}"
    headers = table_headers(lines)
    assert headers and not any("…" in header for header in headers), text
    for line in lines:  # only an event's text (or a long reason) may be cut at the edge
        assert "…" not in line or EVENT_TIME.search(line) or line.startswith("trader"), line
    return text


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_a_recorded_demo_snapshot_fills_each_terminal_with_nothing_cut(width, height):
    lines = frame_lines(RECORDED, width, height)
    text = check_frame(lines, width, height)
    assert lines[0].startswith("trader 0.1.0  paper  running  reducing")
    assert "reducing: cooldown after 3 losing trades in a row, until 2026-12-06T14:01:24Z" in text
    assert lines[-1].strip(), "the last line is used"
    left = [line[:width * 3 // 5] for line in lines] if width >= 160 else lines
    products = table_rows(left, "Products")
    increments = RECORDED["session"]["price_increments"]
    for product, figures in RECORDED["components"]["market"]["products"].items():
        decimals = len(increments[product].split(".")[1]) if "." in increments[product] else 0
        assert products[product]["price"] == f"{figures['close']:,.{decimals}f}"
    positions = table_rows(left, "Positions (")
    assert len(positions) == len(RECORDED["session"]["positions"]) > 0
    for position in RECORDED["session"]["positions"]:
        row = positions[position["product_id"]]
        assert row["size"] == size(position["size"])
        assert row["uPnL"] == signed(position["unrealized_pnl"]).plain
    assert not re.search(r"\de[+-]\d", text), "no exponent notation"


def test_each_size_shows_what_its_width_allows():
    narrow, middle, wide = (frame_lines(RECORDED, w, h) for w, h in SIZES)
    header = table_headers(narrow)
    assert header[0].split() == ["product", "size", "entry", "last", "uPnL", "stop", "target",
                                 "age"]
    assert "uPnL %" in table_headers(middle)[0] and "strategy" in table_headers(middle)[0]
    assert "bid" in table_headers(middle)[-1] and "bid" not in table_headers(narrow)[-1]
    for lines in (middle, wide):
        text = "\n".join(lines)
        assert re.search(r"^feed\s+frames/s [\d.]+", text, re.M)
        assert re.search(r"^candles\s+last bar 04-05 \d\d:\d\dZ\s+emitted [\d,]+", text, re.M)
        assert re.search(r"^writer\s+not running", text, re.M)
    wide_text = "\n".join(wide)
    assert "Equity over the session" in wide_text and "Risk limits (used / limit)" in wide_text
    assert re.search(r"exposure USD\s+[\d.,]+ / 300.00", wide_text)
    assert EVENT_TIME.match(wide[-1]), "the events reach the bottom"
    assert EVENT_TIME.match(middle[-1]) and EVENT_TIME.match(narrow[-1])


def test_a_halted_daemon_shows_its_reason_and_a_rejected_config():
    snapshot = copy.deepcopy(RECORDED)
    reason = "daily loss 51.20 USD >= daily_loss_limit_usd 50.00 USD"
    snapshot["components"]["trading"].update(state="halted", reason=reason)
    snapshot["config"]["last_reload"] = {
        "at_ns": snapshot["daemon"]["now_ns"] - 50 * 10**9, "outcome": "rejected",
        "errors": [["risk.max_position_usd", "must be > 0, got -5"]],
        "changed_sections": [], "restart_required": []}
    for width, height in SIZES:
        lines = frame_lines(snapshot, width, height)
        text = check_frame(lines, width, height)
        assert f"halted: {reason}" in text
        assert "rejected; running on config v1" in text
        assert "(rejected 50s ago)" in text or width < 120  # the header's room
        assert "risk.max_position_usd: must be > 0, got -5" in text


def test_many_products_are_cut_to_the_rows_that_fit_and_say_how_many_more():
    snapshot = copy.deepcopy(RECORDED)
    market = snapshot["components"]["market"]["products"]
    template = market["BTC-USD"]
    for i in range(40):
        product = f"X{i:02d}-USD"
        snapshot["products"].append(product)
        market[product] = {**template, "close": 1.5 + i, "volume_1m": 1234.0 * i}
    for width, height in SIZES:
        lines = frame_lines(snapshot, width, height)
        check_frame(lines, width, height)
        more = [line for line in lines if re.search(r"\+\d+ more", line)]
        assert more, "\n".join(lines)


def test_a_pipe_gets_the_frame_at_the_height_of_its_content():
    lines = frame_lines(RECORDED, 120, None)
    text = "\n".join(lines)
    assert all(title in text for title in TITLES)
    assert len([line for line in lines if EVENT_TIME.match(line)]) == 12
    assert lines[-1].strip()


def test_an_empty_snapshot_renders_without_error():
    for width, height in SIZES:
        lines = frame_lines({}, width, height)
        assert len(lines) == height and lines[0].startswith("trader ?")


# A daemon half started: no trading part yet, a rejected edit, a restart pending.
PARTIAL = {
    "daemon": {"version": "0.1.0", "pid": 42, "state": "running", "mode": "paper",
               "started_ns": 0, "now_ns": 3_700 * 10**9, "uptime_s": 3700.0,
               "rss_bytes": 80 * 2**20},
    "config": {"path": "config.toml", "version": 3, "restart_required": ["daemon.mode"],
               "last_reload": {"at_ns": 3_650 * 10**9, "outcome": "rejected",
                               "errors": [["risk.max_position_usd", "must be > 0 USD, got -5"]],
                               "changed_sections": [], "restart_required": []},
               "counters": {"version": 3, "reloads_rejected": 1}},
    "products": ["BTC-USD", "ETH-USD"],
    "components": {
        "feed": {"connected": True, "counters": {"frames_per_s": 120.5, "bad_frames": 2,
                                                 "bad_frames_bad_json": 2}},
        "market": {"products": {"BTC-USD": {"close": 64000.5, "bars": 10},
                                "ETH-USD": {"close": 3100.25, "bars": 10}}},
        "selector": None, "strategies": None, "trading": None, "risk": None, "storage": None,
        "config": {"counters": {"version": 3}},
    },
}


def test_a_partly_started_daemon_shows_what_runs_and_the_rejected_edit():
    lines = frame_lines(PARTIAL, 80, 24)
    text = "\n".join(lines)
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80
    assert lines[0] == ("trader 0.1.0  paper  running  config v3 (rejected 50s ago)  "
                        "feed ok 120.5/s")  # no room for the uptime, pid and RSS
    assert frame_lines(PARTIAL, 120, 40)[0] == (
        "trader 0.1.0  paper  running  up 1h01m  config v3 (rejected 50s ago)  "
        "feed ok 120.5/s  pid 42  RSS 80 MiB")
    assert "risk.max_position_usd: must be > 0 USD, got -5" in text
    assert "changed, waiting for a restart: daemon.mode" in text
    assert re.search(r"frames/s\s+120.5", text) and re.search(r"bad frames\s+2", text)
    assert "bad_json" not in text  # detail stays in --json and /metrics
    assert re.search(r"^strategies\s+not running", text, re.M)
    assert "64,000.5" in text and "3,100.25" in text  # no increment known: 6 digits


def test_a_quiet_daemon_without_errors_shows_no_error_lines():
    quiet = {**PARTIAL, "config": {"path": "c", "version": 1, "last_reload": None,
                                   "restart_required": [], "counters": {}}}
    text = "\n".join(frame_lines(quiet, 80, 24))
    assert "rejected" not in text and "restart" not in text


# ---- numbers for people -----------------------------------------------------------------


def test_numbers_are_formatted_for_people():
    assert price(6696.53, "0.01").plain == "6,696.53"
    assert price(373.0, "0.01").plain == "373.00"
    assert price(0.00001234, "0.00000001").plain == "0.00001234"
    assert price(42.123456789, None).plain == "42.1235"
    assert (compact(1234), compact(12_345_678), compact(217.96), compact(0.5)) == (
        "1.2k", "12.3M", "218.0", "0.50")
    assert (score(1_620_580.3), score(0.53), score(-0.034)) == ("1.62M", "0.53", "-0.03")
    assert signed(-1.95987).plain == "-1.96" and signed(2.5).plain == "+2.50"
    assert signed(-0.001).plain == "0.00"
    assert size(0.84317032) == "0.84317032" and size(2.0) == "2"
    assert (duration(4), duration(185), duration(7620), duration(97200)) == (
        "4s", "3m05s", "2h07m", "1d03h")
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▁▂▃▄▅▆▇█"
    assert len(sparkline(list(range(1000)), 50)) == 50


# ---- what the daemon keeps for the view ---------------------------------------------------


class FakeClock:
    """A clock the test moves (ns)."""

    def __init__(self) -> None:
        self.now_ns = 1_000 * 10**9

    def __call__(self) -> int:
        return self.now_ns


def test_the_equity_curve_keeps_the_whole_session_in_bounded_points():
    clock = FakeClock()
    value = [Decimal(10_000)]
    curve = EquityCurve(lambda: value[0], clock, capacity=50)
    for minute in range(1000):
        clock.now_ns += 60 * 10**9
        value[0] = Decimal(10_000 + minute)
        curve.on_bar(60, minute * 60)
        curve.on_bar(300, minute * 60)  # other intervals are not samples
    snapshot = curve.snapshot()
    assert 25 <= len(snapshot["equity_usd"]) <= 50
    assert snapshot["equity_usd"][-1] == 10_999.0  # the newest is the latest equity
    assert snapshot["times_ns"][0] < 1_000 * 10**9 + 60 * 10**9 * 60  # from the start on
    assert snapshot["times_ns"] == sorted(snapshot["times_ns"])


def test_bars_replayed_at_start_up_collapse_into_one_point():
    clock = FakeClock()
    curve = EquityCurve(lambda: Decimal(5), clock)
    for minute in range(300):
        curve.on_bar(60, minute * 60)  # all within one second of wall time
    assert len(curve.snapshot()["equity_usd"]) == 1


def test_log_lines_that_matter_become_events_and_the_ring_is_bounded():
    log = EventLog(capacity=5)
    handler = log.handler()
    logger = logging.getLogger("trader")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        logging.getLogger("trader.trading.risk").info("entry denied: s BTC-USD: %s", "why")
        logging.getLogger("trader.daemon.reload").info("config version %d applied", 2)
        logging.getLogger("trader.market.candles").info("a routine line")  # not an event
        logging.getLogger("trader.store.writer").warning("storage: down")
        logging.getLogger("trader.coinbase.reconnect").info("market: reconnecting in 1 s")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    kinds = [(e["kind"], e["text"]) for e in log.snapshot()]
    assert kinds == [("risk", "entry denied: s BTC-USD: why"),
                     ("reload", "config version 2 applied"), ("warning", "storage: down"),
                     ("feed", "market: reconnecting in 1 s")]
    for i in range(10):
        log.add("order", f"o{i}")
    assert [e["text"] for e in log.snapshot()] == [f"o{i}" for i in range(5, 10)]


# ---- a running daemon, and `trader status --once` -------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, sim_url: str):
    daemon = start_daemon(tmp_path_factory.mktemp("statusview") / "daemon", sim_url)
    yield daemon
    assert daemon.stop() == 0, daemon.log()


def settled_snapshot(daemon: DaemonProcess) -> dict[str, Any]:
    """A snapshot once candles and the equity curve have something to show."""
    def ready() -> dict[str, Any] | None:
        snapshot = daemon.status()
        closes = [p["close"] for p in snapshot["components"]["market"]["products"].values()]
        curve = snapshot["session"]["equity"]["equity_usd"]
        return snapshot if any(closes) and len(curve) > 1 else None
    return wait_for(ready, timeout_s=60, interval_s=0.25)


def test_a_running_daemons_snapshot_renders_at_each_size(running: DaemonProcess):
    snapshot = settled_snapshot(running)
    events = snapshot["session"]["events"]
    assert any(e["kind"] == "daemon" and e["text"].startswith("running:") for e in events)
    for width, height in SIZES:
        text = check_frame(frame_lines(snapshot, width, height), width, height)
        for product in ("BTC-USD", "ETH-USD", "SOL-USD"):
            assert product in text
        assert "running: paper mode, 3 products, config v1" in text


def test_trader_status_once_prints_the_same_layout(running: DaemonProcess):
    settled_snapshot(running)
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "dumb"}
    result = subprocess.run([sys.executable, "-m", "trader", "status", "--once", "--socket",
                             str(running.socket)], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.rstrip("\n").split("\n")
    check_frame(printed, 120, 40)
    rendered = frame_lines(running.status(), 120, 40)
    titles = [(i, line.split("  ")[0]) for i, line in enumerate(printed)
              if line.startswith(TITLES)]
    assert titles == [(i, line.split("  ")[0]) for i, line in enumerate(rendered)
                      if line.startswith(TITLES)]


def test_trader_status_once_in_a_pipe_without_lines_prints_the_contents_height(
        running: DaemonProcess):
    env = {k: v for k, v in os.environ.items() if k != "LINES"}
    env.update(COLUMNS="100", TERM="dumb")
    result = subprocess.run([sys.executable, "-m", "trader", "status", "--once", "--socket",
                             str(running.socket)], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").split("\n")
    assert all(title in result.stdout for title in TITLES)
    assert max(len(line) for line in lines) <= 100
    assert lines[-1].strip(), "no padding to a terminal's height"
