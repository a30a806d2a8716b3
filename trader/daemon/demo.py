"""`trader demo`: the simulator replaying the bundled real candles, a paper daemon against it,
and the status view; offline, in one command."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trader import config as cfg
from trader.daemon.statusview import show_status
from trader.simulator.run import aimed_at, bundled_sources

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"  # the built-in ones
DEMO_SPEED = 60.0  # a simulated minute per second: candles visibly close


def run_demo(duration_s: float | None) -> int:
    """Run the demo until Ctrl-C, or for `duration_s` and then print one status frame."""
    workdir = Path(tempfile.mkdtemp(prefix="trader-demo-"))
    sim = subprocess.Popen([sys.executable, "-m", "trader", "sim", "--speed", str(DEMO_SPEED)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    daemon = None
    try:
        assert sim.stdout is not None, "opened with stdout=PIPE"
        url = sim.stdout.readline().strip()
        config_path = _write_config(workdir, url)
        with open(workdir / "daemon.log", "wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "trader", "run", "-c",
                                       str(config_path)], cwd=workdir, stdout=log,
                                      stderr=subprocess.STDOUT)
        socket = workdir / "state" / "status.sock"
        print(f"demo: simulator at {url}, daemon log in {workdir / 'daemon.log'}")
        if duration_s is None:
            return show_status(socket, once=False, raw_json=False)
        time.sleep(duration_s)
        return show_status(socket, once=True, raw_json=False)
    finally:
        _stop(daemon)
        _stop(sim)
        if sim.stdout:
            sim.stdout.close()


def _write_config(workdir: Path, sim_url: str) -> Path:
    products = ", ".join(f'"{p}"' for p in bundled_sources())
    text = aimed_at(cfg.render_default(), sim_url)
    for old, new in (('products = ["BTC-USD", "ETH-USD", "SOL-USD"]', f"products = [{products}]"),
                     ('state_dir = "state"', f'state_dir = "{workdir / "state"}"'),
                     ("window_bars = 60", "window_bars = 10"),  # ranks within seconds
                     ('interval = "5m"', 'interval = "1m"'),  # and signals within a minute
                     ('strategies_dir = "strategies"', f'strategies_dir = "{STRATEGIES}"')):
        text = text.replace(old, new)
    path = workdir / "config.toml"
    path.write_text(text)
    return path


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
