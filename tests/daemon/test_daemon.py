"""A real `trader run` subprocess: hot reload, corrupted edits, signals, sd_notify, status."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import orjson
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    REPO,
    DaemonProcess,
    http_get,
    shipped_config,
    start_daemon,
    wait_for,
)
from trader import config as cfg

DEFAULT = tomllib.loads((REPO / "config.toml").read_text())


def reloads_seen(status: dict) -> int:
    return sum(v for k, v in status["config"]["counters"].items() if k.startswith("reloads_"))


def test_an_edit_of_market_products_is_applied_within_2_s(daemon: DaemonProcess):
    assert daemon.status()["products"] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    edited = daemon.config_path.read_text().replace(
        'products = ["BTC-USD", "ETH-USD", "SOL-USD"]', 'products = ["BTC-USD", "ADA-USD"]')
    written = time.monotonic()
    daemon.config_path.write_text(edited)
    status = wait_for(lambda: (s := daemon.status())["products"] == ["BTC-USD", "ADA-USD"] and s,
                      timeout_s=2.0)
    assert time.monotonic() - written < 2.0
    assert status["config"]["version"] == 2
    assert status["config"]["last_reload"]["changed_sections"] == ["market"]
    assert "config version 2 applied: market" in daemon.log()


def test_a_replaced_file_is_noticed_like_an_editor_save(daemon: DaemonProcess):
    replacement = daemon.workdir / "config.toml.new"
    replacement.write_text(daemon.config_path.read_text().replace('level = "info"',
                                                                  'level = "debug"'))
    os.replace(replacement, daemon.config_path)
    wait_for(lambda: daemon.status()["config"]["version"] == 2, timeout_s=5)


def test_a_restart_key_is_reported_and_not_applied(daemon: DaemonProcess):
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text.replace('mode = "paper"', 'mode = "live"'))
    daemon.signal(signal.SIGHUP)
    status = wait_for(lambda: (s := daemon.status())["config"]["restart_required"] and s,
                      timeout_s=5)
    assert status["config"]["restart_required"] == ["daemon.mode"]
    assert status["daemon"]["mode"] == "paper"
    assert "config key daemon.mode changed; it takes effect after a restart" in daemon.log()


# ---- 200 corrupted configs against one running daemon ------------------------------------

NUMERIC_KEYS = [(section, name) for section, table in DEFAULT.items()
                for name, value in table.items()
                if isinstance(value, int | float) and not isinstance(value, bool)]
ALL_KEYS = [(section, name) for section, table in DEFAULT.items() for name in table]


def _out_of_range(section: str, name: str) -> tuple[bytes, str]:
    spec = cfg.spec_of(next(f for f in cfg.dataclasses.fields(cfg.SECTIONS[section])
                            if f.name == name))
    value = spec.min - 1 if spec.min is not None else spec.max + 1
    edited = {**DEFAULT, section: {**DEFAULT[section], name: value}}
    return tomli_w.dumps(edited).encode(), f"{section}.{name}"


def _wrong_type(section: str, name: str, value: object) -> tuple[bytes, str]:
    if type(value) is type(DEFAULT[section][name]):
        value = [[1]]
    edited = {**DEFAULT, section: {**DEFAULT[section], name: value}}
    return tomli_w.dumps(edited).encode(), f"{section}.{name}"


def _unknown_key(section: str, name: str) -> tuple[bytes, str]:
    edited = {**DEFAULT, section: {**DEFAULT[section], name: 1}}
    return tomli_w.dumps(edited).encode(), f"{section}.{name}"


def _truncated(cut: int) -> tuple[bytes, str | None]:
    data = (REPO / "config.toml").read_bytes()
    return data[:cut % len(data)], None


def _garbage(junk: bytes) -> tuple[bytes, str]:
    return b"\xff" + junk, cfg.FILE_KEY  # \xff never appears in UTF-8


corruptions = st.one_of(
    st.sampled_from(ALL_KEYS).flatmap(lambda key: st.one_of(
        st.just(_wrong_type(*key, "text")), st.just(_wrong_type(*key, 3.5)),
        st.just(_wrong_type(*key, [1, 2])), st.just(_wrong_type(*key, {"a": 1})),
        st.just(_wrong_type(*key, True)))),
    st.sampled_from([k for k in NUMERIC_KEYS]).map(lambda key: _out_of_range(*key)),
    st.tuples(st.sampled_from(list(DEFAULT)),
              st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
      .filter(lambda k: k[1] not in DEFAULT[k[0]]).map(lambda k: _unknown_key(*k)),
    st.integers(min_value=0, max_value=10**6).map(_truncated),
    st.binary(max_size=200).map(_garbage),
    st.just((b"", cfg.FILE_KEY)),
    st.just((None, cfg.FILE_KEY)),  # the file is deleted
)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory, sim_url: str):
    running = start_daemon(tmp_path_factory.mktemp("corrupt") / "daemon", sim_url)
    yield running
    assert running.stop() == 0, running.log()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corruption=corruptions)
def test_corrupted_configs_never_crash_the_daemon_and_name_the_key_path(
        shared_daemon: DaemonProcess, corruption: tuple[bytes | None, str | None]):
    data, key_path = corruption
    before = reloads_seen(shared_daemon.status())
    if data is None:
        shared_daemon.config_path.unlink(missing_ok=True)
    else:
        shared_daemon.config_path.write_bytes(data)
    shared_daemon.signal(signal.SIGHUP)
    status = wait_for(lambda: (s := shared_daemon.status()) and reloads_seen(s) > before and s,
                      timeout_s=10)
    last = status["config"]["last_reload"]
    assert status["daemon"]["state"] == "running"
    if key_path is None:  # a truncation may still be valid TOML, with fewer keys
        expected = cfg.parse(data)
        if isinstance(expected, list):
            assert last["outcome"] == "rejected"
            assert [tuple(e) for e in last["errors"]] == expected
    else:
        assert last["outcome"] == "rejected", (data, last)
        assert key_path in [path for path, _ in last["errors"]], (data, last)
        assert all(reason for _, reason in last["errors"])
    assert shared_daemon.proc.poll() is None


def test_the_daemon_still_serves_after_the_corruptions(shared_daemon: DaemonProcess,
                                                      sim_url: str):
    shared_daemon.config_path.write_text(shipped_config(sim_url))
    shared_daemon.signal(signal.SIGHUP)
    wait_for(lambda: shared_daemon.status()["config"]["last_reload"]["outcome"] != "rejected",
             timeout_s=10)


# ---- lifecycle -----------------------------------------------------------------------------

def test_sigterm_stops_in_order_with_exit_0_within_the_deadline(daemon: DaemonProcess):
    daemon.signal(signal.SIGTERM)
    started = time.monotonic()
    code = daemon.proc.wait(timeout=15)
    assert code == 0, daemon.log()
    assert time.monotonic() - started < 10.0  # daemon.shutdown_timeout_s of the shipped config
    log = daemon.log()
    assert log.index("SIGTERM: shutting down") < log.index("stopping (deadline 10.0 s)")
    assert log.index("stopping (deadline") < log.index("stopped cleanly")
    assert not daemon.socket.exists()


def test_sigint_stops_cleanly_too(daemon: DaemonProcess):
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=15) == 0, daemon.log()


def test_an_invalid_config_at_start_is_refused_with_every_error(tmp_path: Path):
    bad = (REPO / "config.toml").read_text().replace("top_n = 3", "top_n = 0")
    (tmp_path / "config.toml").write_text(bad + "\n[typo]\n")
    result = subprocess.run([sys.executable, "-m", "trader", "run", "-c", "config.toml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "config.toml: typo: unknown key" in result.stderr
    assert "config.toml: selector.top_n: must be >= 1, got 0" in result.stderr


def test_sd_notify_ready_watchdog_and_stopping_over_a_real_datagram_socket(tmp_path: Path,
                                                                           sim_url: str):
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(notify_path))
        sink.settimeout(60)
        running = start_daemon(tmp_path / "d", sim_url, wait_ready=False,
                               env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"})
        try:
            messages = [sink.recv(4096).decode()]
            while messages.count("WATCHDOG=1") < 3 or not messages[0].startswith("READY"):
                messages.append(sink.recv(4096).decode())
                if messages[-1].startswith("READY=1"):
                    messages = [messages[-1]]  # watchdog pings may come before READY
            assert messages[0].startswith("READY=1\nSTATUS=paper mode, 3 products, config v1")
            assert messages[1:] == ["WATCHDOG=1"] * 3
            running.signal(signal.SIGTERM)
            rest = []
            while not any("STOPPING=1" in m for m in rest):
                rest.append(sink.recv(4096).decode())
            assert rest[-1] == "STOPPING=1\nSTATUS=stopping"
            assert running.proc.wait(timeout=15) == 0
        finally:
            if running.proc.poll() is None:
                running.proc.kill()


# ---- the status socket ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def status_daemon(tmp_path_factory: pytest.TempPathFactory, sim_url: str):
    """One daemon for the tests that only read its status (none reloads or stops it)."""
    running = start_daemon(tmp_path_factory.mktemp("status") / "daemon", sim_url)
    yield running
    assert running.stop() == 0, running.log()


def test_status_socket_is_0600_and_serves_json_and_prometheus(status_daemon: DaemonProcess):
    assert stat.S_IMODE(status_daemon.socket.stat().st_mode) == 0o600
    code, content_type, body = http_get(status_daemon.socket, "/status")
    snapshot = orjson.loads(body)
    assert (code, content_type) == (200, "application/json")
    assert snapshot["daemon"]["mode"] == "paper"
    assert snapshot["daemon"]["pid"] == status_daemon.proc.pid
    assert snapshot["daemon"]["rss_bytes"] > 10 * 2**20
    assert snapshot["components"]["storage"] is None
    assert snapshot["components"]["feed"]["subscribed_products"] == 3
    code, content_type, body = http_get(status_daemon.socket, "/metrics")
    metrics = body.decode()
    assert code == 200 and content_type.startswith("text/plain")
    assert re.search(r"^trader_uptime_seconds \d+(\.\d+)?$", metrics, re.M)
    assert 'trader_component_running{component="storage"} 0.0' in metrics
    assert 'trader_component_running{component="feed"} 1.0' in metrics
    assert 'trader_component_running{component="config"} 1.0' in metrics
    assert re.search(r"^trader_config_version 1.0$", metrics, re.M)


def run_cli(*args: str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "24", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "trader", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_trader_status_once_renders_a_real_daemons_snapshot(status_daemon: DaemonProcess):
    result = run_cli("status", "--once", cwd=status_daemon.workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "trader 0.1.0  paper  running" in lines[0]
    assert "config v1" in lines[0]
    assert "not running" in result.stdout
    for product in ("BTC-USD", "ETH-USD", "SOL-USD"):
        assert product in result.stdout
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80


def test_trader_status_json_prints_the_raw_snapshot(status_daemon: DaemonProcess):
    result = run_cli("status", "--json", "--socket", str(status_daemon.socket), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["daemon"]["pid"] == status_daemon.proc.pid


def test_trader_status_says_clearly_when_no_daemon_runs(tmp_path: Path):
    result = run_cli("status", "--once", "--socket", str(tmp_path / "none.sock"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no daemon running at" in result.stdout


# ---- log formats ---------------------------------------------------------------------------

def test_under_journald_log_lines_are_plain_with_priority_and_no_timestamp(tmp_path: Path,
                                                                           sim_url: str):
    running = start_daemon(tmp_path / "d", sim_url, env={"JOURNAL_STREAM": "8:1234"})
    assert running.stop() == 0
    lines = running.log().splitlines()
    assert lines[0] == "<6>trader.daemon.app: trader 0.1.0 starting with config.toml"
    assert all(re.match(r"^<\d>trader\.[a-z.]+: ", line) for line in lines)


def test_json_log_format_writes_one_object_per_line(tmp_path: Path, sim_url: str):
    text = shipped_config(sim_url).replace('format = "auto"', 'format = "json"')
    running = start_daemon(tmp_path / "d", sim_url, config_text=text)
    assert running.stop() == 0
    entries = [orjson.loads(line) for line in running.log().splitlines()]
    assert entries[0]["msg"] == "trader 0.1.0 starting with config.toml"
    assert {e["level"] for e in entries} <= {"info", "warning", "error"}
    assert all(e["ts"].endswith("Z") and e["logger"].startswith("trader.") for e in entries)


def test_a_product_added_by_reload_is_subscribed_without_reconnecting(daemon: DaemonProcess):
    """The simulator replays BTC-USD, ETH-USD and LTC-USD; the shipped config lacks LTC-USD."""
    wait_for(lambda: daemon.status()["components"]["feed"]["counters"].get("trades", 0) > 0,
             timeout_s=30)
    text = daemon.config_path.read_text().replace('"SOL-USD"]', '"LTC-USD"]')
    daemon.config_path.write_text(text)

    def ltc_close():
        market = daemon.status()["components"]["market"]["products"]
        return "LTC-USD" in market and market["LTC-USD"]["close"]

    assert wait_for(ltc_close, timeout_s=30) > 0
    feed = daemon.status()["components"]["feed"]
    assert feed["counters"]["connections"] == 1 and feed["subscribed_products"] == 3


def test_a_strategy_that_does_not_compile_stops_the_start_with_file_and_line(tmp_path: Path,
                                                                             sim_url: str):
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "sma_cross.py").write_text((REPO / "strategies" / "sma_cross.py").read_text()
                                             .replace("def indicators(p):", "def indicators(p:"))
    text = shipped_config(sim_url).replace(f'strategies_dir = "{REPO / "strategies"}"',
                                           f'strategies_dir = "{strategies}"')
    (tmp_path / "config.toml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "trader", "run", "-c", "config.toml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert re.search(rf"{re.escape(str(strategies / 'sma_cross.py'))}:\d+: SyntaxError",
                     result.stderr), result.stderr


def test_a_broken_strategy_on_reload_keeps_the_previous_version_running(tmp_path: Path,
                                                                        sim_url: str):
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    source = (REPO / "strategies" / "sma_cross.py").read_text()
    (strategies / "sma_cross.py").write_text(source)
    text = shipped_config(sim_url).replace(f'strategies_dir = "{REPO / "strategies"}"',
                                           f'strategies_dir = "{strategies}"')
    running = start_daemon(tmp_path / "d", sim_url, config_text=text)
    try:
        (strategies / "sma_cross.py").write_text(source.replace("return score, HOLD",
                                                                "return undefined_name, HOLD"))
        running.signal(signal.SIGHUP)
        book = wait_for(lambda: (s := running.status()["components"]["strategies"])["errors"]
                        and s, timeout_s=60)
        [(where, reason)] = book["errors"]
        assert where.startswith(f"{strategies / 'sma_cross.py'}:") and "undefined_name" in reason
        assert book["running"] == "sma_cross (5m)"
        assert running.status()["daemon"]["state"] == "running"
    finally:
        assert running.stop() == 0
