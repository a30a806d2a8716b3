"""`trader demo`: the simulator replaying the bundled real candles, a paper daemon against it,
and the status view; offline, in one command.

The simulator and the daemon go down with the demo: SIGHUP (the terminal closed), SIGTERM and
SIGINT stop them, daemon first, before the demo exits, and on Linux each child also gets SIGTERM
from the kernel when the demo dies however it dies (SIGKILL included).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from trader import config as cfg
from trader.daemon.statusview import show_status
from trader.simulator.run import aimed_at, bundled_sources

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"  # the built-in ones
DEMO_SPEED = 60.0  # a simulated minute per second: candles visibly close
STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
STOP_DEADLINE_S = 10.0  # per child, from its SIGTERM to a SIGKILL
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_demo(duration_s: float | None) -> int:
    """Run the demo until Ctrl-C, or for `duration_s` and then print one status frame."""
    workdir = Path(tempfile.mkdtemp(prefix="trader-demo-"))
    children = _Children()
    previous = children.handle(STOP_SIGNALS)
    try:
        sim = children.start([sys.executable, "-m", "trader", "sim", "--speed", str(DEMO_SPEED)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert sim.stdout is not None, "opened with stdout=PIPE"
        url = sim.stdout.readline().strip()
        config_path = _write_config(workdir, url)
        with open(workdir / "daemon.log", "wb") as log:
            children.start([sys.executable, "-m", "trader", "run", "-c", str(config_path)],
                           cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        socket = workdir / "state" / "status.sock"
        print(f"demo: simulator at {url}, daemon log in {workdir / 'daemon.log'}")
        if duration_s is None:
            return show_status(socket, once=False, raw_json=False)
        time.sleep(duration_s)
        return show_status(socket, once=True, raw_json=False)
    finally:
        children.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in children.procs:
            if proc.stdout:
                proc.stdout.close()
        _clean_up(workdir, children.procs)


def _clean_up(workdir: Path, procs: list[subprocess.Popen[Any]]) -> None:
    """Remove the demo's folder, unless its daemon failed: then its log is kept and named."""
    daemon = procs[1] if len(procs) > 1 else None
    if daemon is not None and daemon.returncode not in (0, None, -signal.SIGTERM,
                                                        -signal.SIGKILL):
        print(f"demo: the daemon exited with {daemon.returncode}; its log is "
              f"{workdir / 'daemon.log'}", file=sys.stderr)
        return
    shutil.rmtree(workdir, ignore_errors=True)


class _Children:
    """The demo's processes; stopped once, newest first (the daemon before its simulator)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.stopping = False
        self._handled: tuple[signal.Signals, ...] = ()
        self._owner = os.getpid()

    def start(self, argv: list[str], **popen_args: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, preexec_fn=self._child_setup(), **popen_args)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for proc in reversed(self.procs):
            _stop(proc)

    def handle(self, signals: tuple[signal.Signals, ...]) -> dict[signal.Signals, Any]:
        """Stop the children on these signals, then exit (SIGINT: KeyboardInterrupt, as
        before); the previous handlers, to restore. A signal ignored already (nohup) stays so."""
        previous = {sig: signal.getsignal(sig) for sig in signals}
        self._handled = tuple(sig for sig in signals if previous[sig] != signal.SIG_IGN)
        for sig in self._handled:
            signal.signal(sig, self._on_signal)
        return {sig: previous[sig] for sig in self._handled}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second signal while stopping: the stop goes on
            return
        self.stop()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _child_setup(self) -> Callable[[], None] | None:
        """Run in each child between fork and exec: the demo's handlers off, and on Linux
        SIGTERM when the demo dies (or exit now if it died already)."""
        handled, owner = self._handled, self._owner
        prctl = _prctl()

        def setup() -> None:
            for sig in handled:
                signal.signal(sig, signal.SIG_DFL)
            if prctl is not None:
                prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
                if os.getppid() != owner:
                    os._exit(128 + signal.SIGTERM)

        return setup


def _prctl() -> Callable[..., Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        func: Callable[..., Any] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return func


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


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
