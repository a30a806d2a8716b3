"""The rich status view, on snapshots shaped like the daemon's, and the socket round trip
(Prometheus rendering: tests/daemon/test_metrics.py)."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import orjson
from rich.console import Console

from tests.helpers import eventually
from trader.daemon.status import StatusServer, render_metrics
from trader.daemon.statusview import NoDaemon, fetch, render

SNAPSHOT = {
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


def render_text(width: int, snapshot: dict = SNAPSHOT) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(render(snapshot, width))
    console.file.close()
    return console.export_text().rstrip("\n").split("\n")


def test_view_fits_an_80x24_terminal_and_shows_what_matters():
    lines = render_text(80)
    text = "\n".join(lines)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    assert lines[0].startswith("trader 0.1.0  paper  running  up 1h01m  pid 42  RSS 80.0 MiB")
    assert "config v3 (rejected 50s ago)" in " ".join(lines[:2]).replace("  ", " ")
    assert "risk.max_position_usd: must be > 0 USD, got -5" in text
    assert "changed, waiting for a restart: daemon.mode" in text
    assert re.search(r"frames/s\s+120.5", text) and re.search(r"bad frames\s+2", text)
    assert "bad_json" not in text  # detail stays in --json and /metrics
    assert "not running" in text
    assert "64,000.5" in text and "3,100.25" in text


def test_view_uses_the_width_of_a_large_terminal():
    wide = render_text(200)
    assert max(len(line) for line in wide) == 200


def test_a_quiet_daemon_without_errors_shows_no_error_lines():
    quiet = {**SNAPSHOT, "config": {"path": "c", "version": 1, "last_reload": None,
                                    "restart_required": [], "counters": {}}}
    text = "\n".join(render_text(80, quiet))
    assert "rejected" not in text and "restart" not in text


async def test_server_and_fetch_round_trip_over_a_unix_socket(tmp_path: Path):
    path = tmp_path / "s" / "status.sock"
    server = StatusServer(path, lambda: SNAPSHOT)
    task = asyncio.create_task(server.run())
    try:
        await eventually(path.exists, timeout_s=5)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert orjson.loads(await fetch(path)) == SNAPSHOT
        assert (await fetch(path, "/metrics")).decode() == render_metrics(SNAPSHOT)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not path.exists()


async def test_fetch_without_a_daemon_raises_no_daemon(tmp_path: Path):
    try:
        await fetch(tmp_path / "absent.sock")
    except NoDaemon as exc:
        assert "no daemon running at" in str(exc)
    else:
        raise AssertionError("fetch succeeded without a server")
