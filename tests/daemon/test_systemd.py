"""sd_notify over a real datagram socket, and the unit file checked by systemd-analyze."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from trader.daemon.systemd import Notifier

UNIT = REPO / "systemd" / "trader.service"


@pytest.fixture
def sink(tmp_path: Path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(5)
        yield path, receiver


def test_notify_sends_state_lines(sink):
    path, receiver = sink
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready("paper mode")
    assert receiver.recv(256) == b"READY=1\nSTATUS=paper mode"
    assert notifier.reloading()
    reloading = receiver.recv(256).decode()
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading)
    assert notifier.stopping()
    assert receiver.recv(256) == b"STOPPING=1\nSTATUS=stopping"
    notifier.close()


def test_abstract_namespace_socket():
    name = f"trader-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.status("hello")
        assert receiver.recv(256) == b"STATUS=hello"
        notifier.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready("x")


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_pid():
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000",
                     "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


async def test_watchdog_pings_from_the_loop(sink):
    path, receiver = sink
    receiver.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "40000"})
    task = asyncio.create_task(notifier.run())
    loop = asyncio.get_running_loop()
    pings = [await asyncio.wait_for(loop.sock_recv(receiver, 64), 5) for _ in range(3)]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pings == [b"WATCHDOG=1"] * 3


def test_a_send_failure_is_counted_not_raised(tmp_path: Path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert not notifier.ready("x")
    assert notifier.snapshot()["counters"] == {"notify_sent": 0, "notify_failed": 1}
    notifier.close()


def installed_root(tmp_path: Path) -> Path:
    """A file-system root laid out as the README installs trader, for systemd-analyze --root."""
    root = tmp_path / "root"
    exe = root / "opt/trader/.venv/bin/trader"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/trader.service")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    return root


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found: apt-get install systemd", pytrace=False)
    return tool


def test_unit_passes_systemd_analyze_verify(tmp_path: Path):
    root = installed_root(tmp_path)
    result = subprocess.run([systemd_analyze(), "verify", f"--root={root}", "trader.service"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_exposure_score_is_ok_or_better(tmp_path: Path):
    root = installed_root(tmp_path)
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", f"--root={root}",
                             "--no-pager", "trader.service"],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for trader.service: ([0-9.]+) (\w+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    assert match[2] in ("OK", "SAFE"), match[0]


def test_unit_declares_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "StateDirectory=trader", "CacheDirectory=trader", "RuntimeDirectory=trader",
                 "Environment=NUMBA_CACHE_DIR=/var/cache/trader/numba", "User=trader",
                 "ProtectSystem=strict", "SystemCallFilter=@system-service", "MemoryMax=1G"):
        assert f"\n{line}\n" in text, line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)
    assert re.search(r"^LoadCredential=coinbase_key.json:", text, re.M)  # auth.CREDENTIAL_NAME
