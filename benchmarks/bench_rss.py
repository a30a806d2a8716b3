"""Daemon memory with 500 products x 3 intervals x 1,000-bar windows over a simulated run.

Run: .venv/bin/python benchmarks/bench_rss.py [--minutes 30]
A simulator (in this process) replays the bundled real candles under 500 product ids (each
id replays one of the three files); a `trader run` subprocess subscribes to all 500 with
1m/5m/1h windows of 1,000 bars and the shipped sma_cross. RSS is sampled every 2 s from
/proc once the daemon is READY, for `--minutes` of exchange time at 60x. Target: under
200 MB and flat. Baseline named: the same daemon with 3 products, in the same run. At the
end it prints where the RSS is (anonymous, file-backed, numba's LLVM library).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trader.simulator.run import aimed_at, bundled_sources
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import read_candle_file

REPO = Path(__file__).resolve().parents[1]
SPEED = 60.0


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0, help="exchange minutes")
    args = parser.parse_args()
    small, small_parts = asyncio.run(measure(3, args.minutes))
    large, large_parts = asyncio.run(measure(500, args.minutes))
    for label, samples, parts in (("3 products (baseline)", small, small_parts),
                                  ("500 products", large, large_parts)):
        print(f"{label}: RSS at READY {samples[0]:.1f} MiB, max {max(samples):.1f} MiB, "
              f"end {samples[-1]:.1f} MiB over {args.minutes:g} exchange minutes "
              f"({len(samples)} samples)")
        print(f"  at the end: anonymous {parts['anon']:.1f} MiB, file-backed {parts['file']:.1f} "
              f"MiB (libllvmlite.so {parts['llvmlite']:.1f} MiB)")
    print(f"ratio 500 / 3 products (max RSS): {max(large) / max(small):.2f}x; target < 200 MB")


if __name__ == "__main__":
    main()
