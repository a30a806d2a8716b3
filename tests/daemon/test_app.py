"""The lifecycle in-process: drain order, the shutdown deadline, a second signal, a crash,
a stop in each start-up phase (and one `trader run` stopped while its kernels compile).

The components that drain (feed, storage, journal) arrive in later issues; these tests plug in
small components of those names that record what happens to them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.helpers import eventually, start_daemon, wait_for
from trader import config as cfg
from trader.daemon.app import EXIT_CRASH, EXIT_OK, Daemon

STOP_SIGNALS = [signal.SIGTERM, signal.SIGINT]


class Recorder:
    """A component that records its drain and cancellation into a shared journal."""

    def __init__(self, name: str, journal: list[str], drain_s: float = 0.0,
                 crash: bool = False) -> None:
        self.name = name
        self._journal = journal
        self._drain_s = drain_s
        self._crash = crash

    async def run(self) -> None:
        try:
            if self._crash:
                await asyncio.sleep(0.05)
                raise RuntimeError(f"{self.name} broke an invariant")
            await asyncio.Event().wait()
        finally:
            self._journal.append(f"{self.name} stopped")

    async def drain(self) -> None:
        self._journal.append(f"{self.name} drain")
        await asyncio.sleep(self._drain_s)

    def snapshot(self) -> dict[str, Any]:
        return {"counters": {"drained": 0}}


@pytest.fixture
def make_daemon(tmp_path: Path, sim_url: str):
    """Daemons in this process against the session's simulator, with extra components."""

    def make(components: list[Recorder], *, ws_url: str | None = None,
             daemon_cls: type[Daemon] = Daemon, **daemon_keys: Any) -> Daemon:
        return build_daemon(tmp_path, sim_url, components, ws_url=ws_url,
                            daemon_cls=daemon_cls, **daemon_keys)

    return make


def build_daemon(tmp_path: Path, sim_url: str, components: list[Recorder], *,
                 ws_url: str | None = None, daemon_cls: type[Daemon] = Daemon,
                 **daemon_keys: Any) -> Daemon:
    ws_url = ws_url or sim_url.replace("http://", "ws://") + "/"
    raw = {"daemon": {"state_dir": str(tmp_path / "state"), **daemon_keys},
           "coinbase": {"ws_url": ws_url, "user_ws_url": ws_url, "rest_url": sim_url},
           "market": {"products": ["BTC-USD", "ETH-USD"], "warmup_bars": 10}}
    config_path = tmp_path / "config.toml"
    config_path.write_text(tomli_w.dumps(raw))
    config = cfg.parse(config_path.read_bytes())
    assert isinstance(config, cfg.Config), config
    daemon = daemon_cls(config_path, config, environ={})
    daemon.components.extend(components)
    return daemon


class WatchedDaemon(Daemon):
    """A daemon that remembers every state it went through and every READY it sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.states: list[str] = []
        super().__init__(*args, **kwargs)
        self.readies: list[str] = []
        self.notifier.ready = self._ready  # type: ignore[method-assign]

    @property  # type: ignore[override]
    def state(self) -> str:
        return self.states[-1]

    @state.setter
    def state(self, value: str) -> None:
        self.states.append(value)

    def _ready(self, status: str) -> bool:
        self.readies.append(status)
        return False


async def run_and_signal(daemon: Daemon, *signals: signal.Signals) -> int:
    task = asyncio.create_task(daemon.run())
    await eventually(lambda: daemon.state == "running", timeout_s=5)
    for sig in signals:
        os.kill(os.getpid(), sig)
        await asyncio.sleep(0.01)
    return await asyncio.wait_for(task, timeout=10)


async def test_shutdown_drains_intake_first_and_the_journal_last(make_daemon):
    journal: list[str] = []
    components = [Recorder(n, journal) for n in ("journal", "storage", "feed", "trading")]
    daemon = make_daemon(components)
    assert await run_and_signal(daemon, signal.SIGTERM) == EXIT_OK
    drains = [entry for entry in journal if entry.endswith("drain")]
    assert drains == ["feed drain", "trading drain", "storage drain", "journal drain"]
    assert journal.index("journal drain") < min(journal.index(f"{n} stopped")
                                                for n in ("journal", "storage", "feed"))


async def test_a_drain_past_the_deadline_is_cancelled_and_exits_non_zero(make_daemon):
    journal: list[str] = []
    stuck = Recorder("storage", journal, drain_s=60)
    daemon = make_daemon([stuck, Recorder("journal", journal)],
                         shutdown_timeout_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await run_and_signal(daemon, signal.SIGTERM) == EXIT_CRASH
    assert loop.time() - started < 5
    assert "journal drain" not in journal and "storage stopped" in journal


async def test_a_second_signal_cancels_at_once(make_daemon):
    journal: list[str] = []
    daemon = make_daemon([Recorder("storage", journal, drain_s=60)])
    task = asyncio.create_task(daemon.run())
    await eventually(lambda: daemon.state == "running", timeout_s=5)
    os.kill(os.getpid(), signal.SIGTERM)
    await eventually(lambda: "storage drain" in journal, timeout_s=5)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
    assert "storage stopped" in journal


async def test_a_crashing_component_stops_the_daemon_with_a_non_zero_exit(make_daemon):
    journal: list[str] = []
    daemon = make_daemon([Recorder("feed", journal, crash=True),
                                    Recorder("storage", journal)])
    assert await asyncio.wait_for(daemon.run(), timeout=10) == EXIT_CRASH
    assert "storage stopped" in journal and not daemon.status.socket_path.exists()


async def test_a_reload_hands_each_part_only_its_own_changed_section(make_daemon):
    daemon = make_daemon([])
    parts = daemon.parts
    untouched = (parts.selector.section, parts.trading.section, parts.execution.section)
    task = asyncio.create_task(daemon.run())
    await eventually(lambda: daemon.state == "running", timeout_s=5)
    edited = tomllib.loads(daemon.watcher.path.read_text())
    edited["market"]["products"] = ["BTC-USD"]
    edited["risk"] = {"max_open_positions": 1}
    daemon.watcher.path.write_text(tomli_w.dumps(edited))
    os.kill(os.getpid(), signal.SIGHUP)
    await eventually(lambda: parts.risk.limits.max_open_positions == 1, timeout_s=5)
    assert daemon.snapshot()["products"] == ["BTC-USD"]
    assert list(parts.market.slots) == ["BTC-USD"]
    assert (parts.selector.section, parts.trading.section, parts.execution.section) == untouched
    daemon.request_stop()
    assert await asyncio.wait_for(task, timeout=10) == EXIT_OK


# ---- a stop in every start-up phase ----------------------------------------------------------

async def stop_during_start_up(daemon: WatchedDaemon, sig: signal.Signals,
                               in_phase: Callable[[], bool],
                               caplog: pytest.LogCaptureFixture) -> float:
    """Start `daemon`, signal it once `in_phase()`; asserts a clean exit that never ran or
    sent READY, and returns the seconds from the signal to the exit."""
    caplog.set_level(logging.INFO, logger="trader")
    task = asyncio.create_task(daemon.run())
    await eventually(in_phase, timeout_s=10)
    assert daemon.state == "starting"
    loop = asyncio.get_running_loop()
    signalled = loop.time()
    os.kill(os.getpid(), sig)
    assert await asyncio.wait_for(task, timeout=10) == EXIT_OK
    elapsed = loop.time() - signalled
    assert elapsed < 1.0
    assert "running" not in daemon.states and daemon.readies == []
    assert not [r for r in caplog.records if r.getMessage().startswith("running")]
    assert not daemon.status.socket_path.exists()
    return elapsed


@pytest.fixture
async def silent_ws() -> Any:
    """A TCP server that takes connections and never answers: no subscription ever comes.
    Yields (its ws:// URL, an event set once a connection arrived)."""
    connected = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"ws://127.0.0.1:{port}/", connected
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
async def test_a_stop_while_waiting_for_the_first_subscription_exits_at_once(
        make_daemon, silent_ws, caplog, sig):
    ws_url, connected = silent_ws
    journal: list[str] = []
    daemon = make_daemon([Recorder("storage", journal)], ws_url=ws_url,
                         daemon_cls=WatchedDaemon)
    await stop_during_start_up(daemon, sig, connected.is_set, caplog)
    assert not daemon.parts.market_feed.subscribed.is_set()
    assert journal == ["storage drain", "storage stopped"]  # started, so drained in order
    assert daemon.states == ["starting", "stopping"]


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_trader_run_stopped_while_its_kernels_compile_exits_at_once(tmp_path, sim_url, sig):
    """A cold numba cache: the compile thread cannot be interrupted, the process exits anyway
    (the thread is abandoned, not joined), and never says it is running."""
    cold_cache = tmp_path / "numba"
    daemon = start_daemon(tmp_path / "run", sim_url, wait_ready=False,
                          env={"NUMBA_CACHE_DIR": str(cold_cache)})
    try:
        wait_for(lambda: (daemon.try_status() or {}).get("daemon", {}).get("state")
                 == "starting", timeout_s=30)
        assert "kernels ready" not in daemon.log()
        signalled = time.monotonic()
        daemon.signal(sig)
        assert daemon.proc.wait(timeout=10) == EXIT_OK
        assert time.monotonic() - signalled < 1.0
        assert "kernels ready" not in daemon.log() and "running:" not in daemon.log()
    finally:
        daemon.stop()
