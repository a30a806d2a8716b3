"""Daemon start to READY (sd_notify), with a cold and then a warm numba cache.

Run: .venv/bin/python benchmarks/bench_startup.py
The daemon runs the shipped config (with sma_cross) against `trader sim` on loopback, so the
network is a local socket; READY comes after the kernels are loaded or compiled and the first
subscription is acknowledged. Cold: a fresh NUMBA_CACHE_DIR (everything compiles). Warm: the
same directory again. Baseline named: the cold start, in the same run.
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

from trader.simulator.run import aimed_at

REPO = Path(__file__).resolve().parents[1]


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


def time_to_ready(config: Path, cache_dir: str) -> float:
    with tempfile.TemporaryDirectory() as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        notify = Path(tmp) / "notify.sock"
        sink.bind(str(notify))
        sink.settimeout(300)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify), "NUMBA_CACHE_DIR": cache_dir}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "trader", "run", "-c", str(config)],
                                cwd=config.parent, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while not sink.recv(4096).startswith(b"READY=1"):
                pass
            return time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    sim, url = start_sim()
    try:
        with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryDirectory() as cache:
            config = config_for(url, Path(workdir))
            cold = time_to_ready(config, cache)
            warm = min(time_to_ready(config, cache) for _ in range(3))
    finally:
        sim.terminate()
        sim.wait()
    print(f"start to READY, cold numba cache: {cold:6.2f} s (compiles every kernel)")
    print(f"start to READY, warm numba cache: {warm:6.2f} s (best of 3; target < 2 s)")
    print(f"ratio cold / warm: {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
