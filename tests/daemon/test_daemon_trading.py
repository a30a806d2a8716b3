"""A real paper-mode daemon trading against the simulator: entries, positions, the kill
switch by SIGUSR1 and by config, and the status view's trading figures."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, shipped_config, start_daemon, wait_for

# Enters on every up-close and exits on every down-close: trades often, for tests only.
FLIP = '''
from trader.strategy import CLOSE, ENTER_LONG, EXIT, HOLD, NAN, Param, columns, njit, sma
from trader.strategy import param_index

INTERVAL = "1m"
PARAMS = {"n": Param(2, low=1, high=10)}
P = param_index(PARAMS)


def indicators(p):
    return {"avg": sma(p[P.n])}


C = columns(indicators, PARAMS)


@njit(cache=True)
def decide(now, prev, bars, p):
    bar = bars[-1]
    if bar[CLOSE] > now[C.avg]:
        return 1.0, ENTER_LONG, NAN, NAN
    if bar[CLOSE] < now[C.avg]:
        return -1.0, EXIT, NAN, NAN
    return 0.0, HOLD, NAN, NAN
'''


def flip_config(workdir: Path, sim_url: str, extra: str = "") -> str:
    strategies = workdir / "strategies"
    strategies.mkdir(parents=True, exist_ok=True)
    (strategies / "flip.py").write_text(FLIP)
    text = shipped_config(sim_url).replace("[strategies.sma_cross]", "[strategies.flip]")
    text = _set(text, "strategies_dir", f'"{strategies}"')
    text = _set(text, "limit_timeout_s", "600.0")
    text = text.replace('interval = "5m"', 'interval = "1m"').replace(
        "params = { fast = 10, slow = 30 }", "params = { n = 2 }")
    return text.replace("products = []", 'products = ["BTC-USD", "ETH-USD"]', 1) + extra


def _set(text: str, key: str, value: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{key} ="):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    raise AssertionError(f"{key} not in the config")


@pytest.fixture
def trading_daemon(tmp_path: Path, sim_url: str):
    workdir = tmp_path / "daemon"
    daemon = start_daemon(workdir, sim_url, flip_config(workdir, sim_url))
    try:
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def trading(daemon: DaemonProcess) -> dict:
    return daemon.status()["components"]["trading"]


def test_a_paper_daemon_enters_and_holds_positions_from_strategy_signals(trading_daemon):
    status = wait_for(lambda: (t := trading(trading_daemon))["counters"].get(
        "intents_entry", 0) >= 1 and t, timeout_s=60)
    assert status["mode"] == "paper" and status["ready"] is True
    wait_for(lambda: trading(trading_daemon)["counters"].get("fills", 0) >= 1, timeout_s=60)
    paper = trading_daemon.status()["components"]["paper"]
    assert paper["counters"]["fills"] >= 1
    assert set(paper["balances"]) & {"BTC", "ETH"} or trading(trading_daemon)["counters"][
        "realized_pnl"] != 0
    assert trading_daemon.stop() == 0


def test_sigusr1_cancels_open_orders_within_a_second_and_halts(trading_daemon):
    wait_for(lambda: trading(trading_daemon)["counters"].get("open_orders", 0) >= 1,
             timeout_s=90)
    trading_daemon.signal(signal.SIGUSR1)
    sent = time.monotonic()
    status = wait_for(lambda: (t := trading(trading_daemon))["counters"]["open_orders"] == 0
                      and t["state"] == "halted" and t, timeout_s=1.0)
    assert time.monotonic() - sent < 1.0
    assert "kill switch" in status["reason"]
    risk = trading_daemon.status()["components"]["risk"]
    assert risk["state"] == "halted"
    entries = status["counters"]["intents_entry"]
    emitted = trading_daemon.status()["components"]["market"]["counters"]["minutes_emitted"]
    wait_for(lambda: trading_daemon.status()["components"]["market"]["counters"][
        "minutes_emitted"] >= emitted + 3, timeout_s=30)  # three bars close while halted
    assert trading(trading_daemon)["counters"]["intents_entry"] == entries
    assert "SIGUSR1: kill switch" in trading_daemon.log()


def test_the_kill_switch_in_config_halts_and_turning_it_off_resumes(trading_daemon):
    config = trading_daemon.config_path
    config.write_text(_set(config.read_text(), "kill_switch", "true"))
    wait_for(lambda: trading(trading_daemon)["state"] == "halted", timeout_s=5)
    config.write_text(_set(config.read_text(), "kill_switch", "false"))
    wait_for(lambda: trading(trading_daemon)["state"] == "active", timeout_s=5)


def test_a_daemon_with_a_database_stores_candles_signals_and_says_which_mode(
        tmp_path: Path, sim_url: str, database: str):
    import asyncio

    import asyncpg

    workdir = tmp_path / "daemon"
    text = _set(flip_config(workdir, sim_url), "dsn", f'"{database}"')
    daemon = start_daemon(workdir, sim_url, text)
    try:
        storage = wait_for(lambda: (s := daemon.status()["components"]["storage"])[
            "counters"]["rows_written_candles"] >= 6 and s, timeout_s=60)
        assert storage["connected"] is True and storage["mode"] == "postgresql"
        wait_for(lambda: daemon.status()["components"]["storage"]["counters"][
            "rows_written_signals"] >= 1, timeout_s=60)
        wait_for(lambda: trading(daemon)["counters"].get("fills", 0) >= 1, timeout_s=60)
        assert daemon.stop() == 0  # the writer drains at shutdown
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()

    async def counts() -> tuple[int, ...]:
        conn = await asyncpg.connect(database)
        try:
            return tuple([await conn.fetchval(f"SELECT count(*) FROM {table}") for table in
                          ("candles", "signals", "orders", "equity", "fills")])
        finally:
            await conn.close()

    candles, signals, orders, equity, fills = asyncio.run(counts())
    assert candles >= 6 and signals >= 1 and orders >= 1 and equity >= 1 and fills >= 1
