"""Fixtures shared by the suite: a real PostgreSQL server and running daemons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, start_daemon
from tests.pg import INSTALL_HINT, PostgresServer, find_bin_dir


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on a free loopback port; fails (never skips) without binaries."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A real `trader run` with the shipped config, stopped after the test."""
    running = start_daemon(tmp_path / "daemon")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
