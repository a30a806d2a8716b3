"""Daemon memory with 500 products x 3 intervals x 1,000-bar windows over a simulated run.

Run: .venv/bin/python -m benchmarks --only rss [--quick]
A simulator (in this process) replays the bundled real candles under 500 product ids (each
id replays one of the three files); a `trader run` subprocess subscribes to all 500 with
1m/5m/1h windows of 1,000 bars and the shipped sma_cross. RSS is sampled every 2 s from
/proc once the daemon is READY, for 30 minutes of exchange time at 60x (--quick: 3). Target:
under 200 MB (190.7 MiB) and flat. Baseline named: the same daemon with 3 products, in the
same run. Also reported: how much of the RSS at the end is numba's LLVM library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import REPO, Figure, report

from trader.simulator.run import aimed_at, bundled_sources
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import read_candle_file

SPEED = 60.0
MINUTES, QUICK_MINUTES = 30.0, 3.0
TARGET_MIB = 200e6 / 2**20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def breakdown_mib(pid: int) -> dict[str, float]:
    """Where the RSS is: private anonymous memory, file-backed pages, and of these the LLVM
    library numba loads its cached kernels with."""
    figures = {"llvmlite": 0.0}
    mapping = ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):
                mapping = fields[-1]
            elif fields[0] == "Rss:" and "libllvmlite" in mapping:
                figures["llvmlite"] += int(fields[1]) / 1024
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:")):
                figures[line[3:7].lower()] = int(line.split()[1]) / 1024
    return figures


def simulator(products: int) -> Simulator:
    files = [read_candle_file(path) for path in bundled_sources().values()]
    candles = {f"P{i:03d}-USD": files[i % len(files)] for i in range(products)}
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    start_s = int(files[0].time_s[0])
    return Simulator(tapes, candles, start_s, speed=SPEED, faults=Faults(), public_rps=1000)


def config(sim_url: str, products: list[str], workdir: Path) -> Path:
    text = aimed_at((REPO / "config.toml").read_text(), sim_url)
    listed = ", ".join(f'"{p}"' for p in products)
    for old, new in (('products = ["BTC-USD", "ETH-USD", "SOL-USD"]', f"products = [{listed}]"),
                     ("public_rest_rps = 8.0", "public_rest_rps = 10.0"),
                     ("warmup_bars = 300", "warmup_bars = 0"),
                     ('strategies_dir = "strategies"',
                      f'strategies_dir = "{REPO / "strategies"}"')):
        text = text.replace(old, new)
    path = workdir / "config.toml"
    path.write_text(text)
    return path


async def measure(products: int, minutes: float) -> tuple[list[float], dict[str, float]]:
    # The simulator logs a traceback when a send meets the daemon's closed socket at SIGTERM.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    sim = simulator(products)
    url = await sim.start()
    with tempfile.TemporaryDirectory() as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        workdir = Path(tmp)
        sink.bind(str(workdir / "notify.sock"))
        sink.setblocking(False)
        path = config(url, list(sim.tapes), workdir)
        env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trader", "run", "-c", str(path), cwd=workdir, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(300):
                while not (await loop.sock_recv(sink, 4096)).startswith(b"READY=1"):
                    pass
            samples = []
            ends = time.monotonic() + minutes * 60 / SPEED
            while time.monotonic() < ends:
                samples.append(rss_mib(proc.pid))
                await asyncio.sleep(2)
            return samples, breakdown_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
            await sim.close()


def run(quick: bool) -> list[Figure]:
    minutes = QUICK_MINUTES if quick else MINUTES
    small, _ = asyncio.run(measure(3, minutes))
    large, parts = asyncio.run(measure(500, minutes))
    what = f"daemon RSS, 500 products x 1m/5m/1h windows of 1,000 bars, {minutes:g} min at 60x"
    return [
        Figure("daemon", f"{what}, max", max(large), "MiB", ("<", TARGET_MIB),
               "the same daemon, 3 products", max(small), higher_is_better=False),
        Figure("daemon", "the same, growth from READY to the end", large[-1] - large[0], "MiB",
               higher_is_better=False),
        Figure("daemon", "the same, of it libllvmlite.so (numba's LLVM) at the end",
               parts["llvmlite"], "MiB", higher_is_better=False),
    ]


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
