"""Fixtures shared by the suite: a real PostgreSQL server and running daemons."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import DaemonProcess, start_daemon, start_simulator
from tests.pg import INSTALL_HINT, PostgresServer, find_bin_dir

# CI runs the same examples every time (a red CI must be reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# Files whose tests wait on real time for tens of seconds (database outages, a crash loop,
# replays). They start first, so in a parallel run (-n auto, one file per worker at a time)
# the short files fill the other workers around them instead of one of these ending the run.
# The two outage files lead: they start together and mostly wait, so the timing bounds they
# assert are not measured beside the crash loop's daemon starts.
LONG_FILES = ("store/test_storage_outage.py", "store/test_writer.py",
              "daemon/test_crash_safety.py", "daemon/test_daemon.py",
              "coinbase/test_feed_candles.py", "daemon/test_daemon_trading.py",
              "store/test_backfill.py", "daemon/test_demo.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first (stable: the order inside a file stays as written)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"),
                                         len(rank)))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the kernels once, so daemons started by tests load them from the cache."""
    from trader import kernels
    from trader.signals import indicators

    kernels.warmup()
    indicators.warmup()


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    """`trader sim` replaying the bundled sample at 60x, for daemons under test."""
    proc, url = start_simulator("--speed", "60")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


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
def database(postgres: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database on the suite's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name}")
    try:
        yield postgres.dsn_of(name)
    finally:
        postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def daemon(tmp_path: Path, sim_url: str) -> Iterator[DaemonProcess]:
    """A real `trader run` with the shipped config against the simulator."""
    running = start_daemon(tmp_path / "daemon", sim_url)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
