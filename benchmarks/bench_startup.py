"""Daemon start to READY (sd_notify), with a cold and then a warm numba cache.

Run: .venv/bin/python -m benchmarks --only startup [--quick]
The daemon runs the shipped config (with sma_cross) against `trader sim` on loopback, so the
network is a local socket; READY comes after the kernels are loaded or compiled and the first
subscription is acknowledged. Cold: a fresh NUMBA_CACHE_DIR (everything compiles). Warm: the
same directory again, best of 3. Target: warm under 2 s. Baseline named: the cold start, in
the same run. After `trader compile`: another fresh NUMBA_CACHE_DIR, filled by `trader compile`
with the same config, then one start timed to READY (the first start of an install that
followed the README). Target: under 2 s; baseline: the same cold start. --quick skips the cold
start and `trader compile` (about 30 s of compiling each): one start with the project's own
numba cache to warm it, then one measured start with it, and no baseline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import REPO, Figure, report

from trader.simulator.run import aimed_at

READY_TIMEOUT_S = 300.0


def start_sim() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "trader", "sim", "--speed", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


def config_for(sim_url: str, workdir: Path) -> Path:
    text = aimed_at((REPO / "config.toml").read_text(), sim_url).replace(
        'strategies_dir = "strategies"', f'strategies_dir = "{REPO / "strategies"}"')
    path = workdir / "config.toml"
    path.write_text(text)
    return path


def time_to_ready(config: Path, cache_dir: str | None) -> float:
    """Seconds from spawning `trader run` to READY=1; cache_dir None: the default numba cache."""
    with tempfile.TemporaryDirectory() as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        notify, log = Path(tmp) / "notify.sock", Path(tmp) / "daemon.log"
        sink.bind(str(notify))
        sink.settimeout(1.0)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
        if cache_dir is not None:
            env["NUMBA_CACHE_DIR"] = cache_dir
        with open(log, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "trader", "run", "-c", str(config)],
                                    cwd=config.parent, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            while time.perf_counter() - started < READY_TIMEOUT_S:
                try:
                    if sink.recv(4096).startswith(b"READY=1"):
                        return time.perf_counter() - started
                except TimeoutError:
                    if proc.poll() is not None:
                        break
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"no READY from the daemon (exit {proc.poll()}): {tail}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def compile_into(config: Path, cache_dir: str) -> None:
    """`trader compile -c config` into cache_dir, as the README has an install do."""
    subprocess.run([sys.executable, "-m", "trader", "compile", "-c", str(config)],
                   cwd=config.parent, env={**os.environ, "NUMBA_CACHE_DIR": cache_dir},
                   check=True, stdout=subprocess.DEVNULL, timeout=READY_TIMEOUT_S)


def run(quick: bool) -> list[Figure]:
    sim, url = start_sim()
    cold = compiled = None
    try:
        with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as cache, \
                tempfile.TemporaryDirectory() as compile_cache:
            config = config_for(url, Path(workdir))
            if quick:
                time_to_ready(config, None)
                warm = time_to_ready(config, None)
            else:
                cold = time_to_ready(config, cache)
                warm = min(time_to_ready(config, cache) for _ in range(3))
                compile_into(config, compile_cache)
                compiled = time_to_ready(config, compile_cache)
    finally:
        sim.terminate()
        sim.wait()
    baseline = "" if quick else "cold cache (every kernel compiled)"
    figures = [Figure("daemon", "start to READY, warm numba cache"
                      + ("" if quick else ", best of 3"), warm, "s", ("<", 2.0),
                      baseline, cold, higher_is_better=False)]
    if compiled is not None:
        figures.append(Figure("daemon", "first start after `trader compile`: time to READY",
                              compiled, "s", ("<", 2.0), baseline, cold,
                              higher_is_better=False))
    return figures


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
