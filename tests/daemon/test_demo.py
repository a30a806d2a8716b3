"""`trader demo` offline: candles, ranks and feed health move in the status view."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import http_get, wait_for


def test_demo_shows_candles_ranks_and_feed_health():
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "dumb"}
    result = subprocess.run([sys.executable, "-m", "trader", "demo", "--duration", "20"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"feed ok [\d.,]+/s", out)
    assert re.search(r"last bar\s+04-05 \d\d:\d\dZ", out)
    frames_per_s = float(re.search(r"frames/s\s+([\d.,]+)", out)[1].replace(",", ""))
    assert frames_per_s > 0
    emitted = int(re.search(r"emitted\s+([\d,]+)", out)[1].replace(",", ""))
    assert emitted > 10
    table = product_table(out)
    assert sorted(int(row["rank"]) for row in table.values()) == [1, 2, 3], out
    assert set(table) == {"BTC-USD", "ETH-USD", "LTC-USD"}
    assert all(float(row["price"].replace(",", "")) > 0 for row in table.values())


def product_table(screen: str) -> dict[str, dict[str, str]]:
    """The products table of a status frame: product id -> {column: cell}."""
    lines = screen.splitlines()
    at = 1 + next(i for i, line in enumerate(lines) if line.startswith("Products"))
    header = re.split(r"\s{2,}", lines[at].strip())
    rows = {}
    for line in lines[at + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_sighup_to_demo_stops_its_daemon_and_simulator_and_removes_its_folder(tmp_path):
    demo, children = start_demo(tmp_path)
    try:
        daemon = next(pid for pid, _ in children if "run" in cmdline(pid))
        workdir = Path(os.readlink(f"/proc/{daemon}/cwd"))
        demo.send_signal(signal.SIGHUP)
        wait_for(lambda: not any(alive(child) for child in children), timeout_s=5)
        assert demo.wait(timeout=5) == 128 + signal.SIGHUP, (tmp_path / "demo.err").read_text()
        assert not workdir.exists()
    finally:
        end(demo, children)


def test_killed_demo_takes_its_children_down(tmp_path):
    demo, children = start_demo(tmp_path)
    try:
        demo.kill()
        demo.wait(timeout=5)
        wait_for(lambda: not any(alive(child) for child in children), timeout_s=5)
    finally:
        end(demo, children)


Proc = tuple[int, int]  # pid, start time: a pid reused by another process is not this one


def start_demo(tmp_path: Path) -> tuple[subprocess.Popen, list[Proc]]:
    """`trader demo` with its daemon serving; the demo and its descendants (sim, daemon)."""
    with open(tmp_path / "demo.out", "wb") as out, open(tmp_path / "demo.err", "wb") as err:
        demo = subprocess.Popen([sys.executable, "-m", "trader", "demo", "--duration", "300"],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        daemon = wait_for(lambda: _demo_daemon(demo), timeout_s=90)
        workdir = Path(os.readlink(f"/proc/{daemon}/cwd"))
        # running: a daemon still starting up holds a stop until its first subscription
        wait_for(lambda: _running(workdir / "state" / "status.sock") or _check(demo),
                 timeout_s=90)
        children = descendants(demo.pid)
        commands = [cmdline(pid) for pid, _ in children]
        assert any("sim" in c for c in commands) and any("run" in c for c in commands), commands
        return demo, children
    except BaseException:
        end(demo, descendants(demo.pid))
        raise


def _demo_daemon(demo: subprocess.Popen) -> int | None:
    _check(demo)
    return next((pid for pid, _ in descendants(demo.pid) if "run" in cmdline(pid)), None)


def _running(socket: Path) -> bool:
    try:
        code, _, body = http_get(socket, "/status")
    except OSError:
        return False
    return code == 200 and orjson.loads(body)["daemon"]["state"] == "running"


def _check(demo: subprocess.Popen) -> bool:
    assert demo.poll() is None, f"demo exited with {demo.returncode}"
    return False


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) from /proc/<pid>/stat, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def descendants(root: int) -> list[Proc]:
    """Every process below `root`, by scanning /proc (no /proc/<pid>/task/*/children here)."""
    below: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) is not None:
            below.setdefault(info[1], []).append((int(entry.name), info[2]))
    found, todo = [], [root]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def alive(proc: Proc) -> bool:
    """Still running: neither gone nor a zombie (an orphan's reaper may be slow or absent)."""
    info = stat(proc[0])
    return info is not None and info[2] == proc[1] and info[0] not in "ZXx"


def end(demo: subprocess.Popen, children: list[Proc]) -> None:
    """Clean up whatever a failed test left: the demo, then its children still running."""
    if demo.poll() is None:
        demo.kill()
        demo.wait()
    for child in children:
        if alive(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child[0], signal.SIGKILL)
