"""The lifecycle in-process: drain order, the shutdown deadline, a second signal, a crash.

The components that drain (feed, storage, journal) arrive in later issues; these tests plug in
small components of those names that record what happens to them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.helpers import eventually
from trader import config as cfg
from trader.daemon.app import EXIT_CRASH, EXIT_OK, Daemon


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

    def make(components: list[Recorder], **daemon_keys: Any) -> Daemon:
        return build_daemon(tmp_path, sim_url, components, **daemon_keys)

    return make


def build_daemon(tmp_path: Path, sim_url: str, components: list[Recorder],
                 **daemon_keys: Any) -> Daemon:
    ws_url = sim_url.replace("http://", "ws://") + "/"
    raw = {"daemon": {"state_dir": str(tmp_path / "state"), **daemon_keys},
           "coinbase": {"ws_url": ws_url, "user_ws_url": ws_url, "rest_url": sim_url},
           "market": {"products": ["BTC-USD", "ETH-USD"], "warmup_bars": 10}}
    config_path = tmp_path / "config.toml"
    config_path.write_text(tomli_w.dumps(raw))
    config = cfg.parse(config_path.read_bytes())
    assert isinstance(config, cfg.Config), config
    daemon = Daemon(config_path, config, environ={})
    daemon.components.extend(components)
    return daemon


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
