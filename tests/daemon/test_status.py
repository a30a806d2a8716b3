"""The status socket round trip on a snapshot shaped like the daemon's (the view:
tests/daemon/test_statusview.py; Prometheus rendering: tests/daemon/test_metrics.py)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import orjson

from tests.helpers import eventually
from trader.daemon.status import StatusServer, render_metrics
from trader.daemon.statusview import NoDaemon, fetch

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
