"""Shared test helpers: waiting on conditions, talking to a daemon over its unix socket."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trader.simulator.run import aimed_at, spawn

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # real files with open licences, see tests/data/README.md


def wait_for(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


async def eventually(condition: Callable[[], Any | Awaitable[Any]], timeout_s: float,
                     interval_s: float = 0.02) -> Any:
    """Async `wait_for`: the condition may be a plain or an async callable."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("trader", timeout=timeout_s)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def http_get(socket_path: Path, path: str, timeout_s: float = 5.0) -> tuple[int, str, bytes]:
    """GET over a unix socket with the stdlib only: (status, content type, body)."""
    conn = _UnixHTTPConnection(socket_path, timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@dataclass
class DaemonProcess:
    """A real `trader run` in a subprocess, in its own working directory."""

    workdir: Path
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    @property
    def socket(self) -> Path:
        return self.workdir / "state" / "status.sock"

    def status(self) -> dict[str, Any]:
        code, _, body = http_get(self.socket, "/status")
        assert code == 200
        return orjson.loads(body)

    def try_status(self) -> dict[str, Any] | None:
        try:
            return self.status()
        except OSError:
            return None

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)


def shipped_config(sim_url: str) -> str:
    """The repo's config.toml with the Coinbase URLs pointed at a simulator."""
    text = aimed_at((REPO / "config.toml").read_text(), sim_url)
    return text.replace('strategies_dir = "strategies"',
                        f'strategies_dir = "{REPO / "strategies"}"')


def start_simulator(*args: str) -> tuple[subprocess.Popen, str]:
    """`trader sim` in a subprocess; returns it and its base URL."""
    return spawn([sys.executable, "-m", "trader", "sim", *args])


def start_daemon(workdir: Path, sim_url: str, config_text: str | None = None,
                 env: dict[str, str] | None = None, wait_ready: bool = True) -> DaemonProcess:
    """Write the config (default: the shipped one against `sim_url`) and start `trader run`."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = config_text if config_text is not None else shipped_config(sim_url)
    (workdir / "config.toml").write_text(text)
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
    full_env.update(env or {})
    log_path = workdir / "daemon.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "trader", "run", "-c", "config.toml"],
                                cwd=workdir, env=full_env, stdout=log_file,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    daemon = DaemonProcess(workdir, proc, log_path, full_env)
    if wait_ready:
        wait_for(lambda: _running(daemon) or _check_alive(daemon), timeout_s=90)
    return daemon


def _running(daemon: DaemonProcess) -> bool:
    status = daemon.try_status()
    return status is not None and status["daemon"]["state"] == "running"


def _check_alive(daemon: DaemonProcess) -> None:
    if daemon.proc.poll() is not None:
        raise AssertionError(f"daemon exited with {daemon.proc.returncode}:\n{daemon.log()}")
