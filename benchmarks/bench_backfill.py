"""A simulated 1-minute backfill of one product: how close to the configured pace it runs.

Run: .venv/bin/python benchmarks/bench_backfill.py [--days N | --full] [--file]
The simulator (a child process) serves the bundled BTC-USD day tiled over the span; the real
`trader backfill` CLI (another child) fetches it into a throwaway PostgreSQL (or with --file
into a gzip CSV file) at each configured rate. Each run reports requests/s achieved against the
configured rate (the baseline: a perfectly paced client takes requests / rate seconds), wall
time, 429s and the backfill process's CPU time. Every run's result is checked bit for bit
against the simulator's candles, and a second run over the complete span must make no candle
requests. --full is the 5-year span: 2,628,000 candles in 8,760 requests of 300; at 10
requests/s that is about 15 minutes, so the default is a 60-day span, which extrapolates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pg import PostgresServer, find_bin_dir
from trader.simulator.run import build_tiled, bundled_sources, serve, spawn
from trader.store.history import load_candles, read_candle_file

PRODUCT = "BTC-USD"
SINCE_S = 1_522_886_400  # 2018-04-05 00:00 UTC, the bundled day
FULL_DAYS = 1825  # 5 x 365 days: 2,628,000 minutes
# (configured pace, the simulator's limit): Coinbase's own 10/s at 10/s; 50/s under a limit
# it never reaches, so only our pacing can hold it back; then no pacing worth the name.
RUNS = ((10.0, 10.0), (50.0, 100.0), (1000.0, 100_000.0))
SUMMARY = re.compile(r"([\d,]+) requests \(([\d,]+) retried, ([\d,]+) rate limited\) "
                     r"in ([\d.]+) s")


@dataclass
class Result:
    rate: float
    sim_rps: float
    requests: int
    retried: int
    rate_limited: int
    inner_s: float  # as the CLI measured it: from the first request to the last store
    wall_s: float  # the whole process: start, connect, migrate, fetch, exit
    cpu_s: float
    rerun_s: float
    rerun_requests: int


def serve_simulator(days: int, public_rps: float) -> None:
    """Child process: the tiled simulator until killed; prints its URL."""
    import uvloop

    simulator = build_tiled({PRODUCT: bundled_sources()[PRODUCT]}, days, public_rps)
    uvloop.run(serve(simulator, "127.0.0.1", 0))


def start_simulator(days: int, public_rps: float) -> tuple[subprocess.Popen, str]:
    return spawn([sys.executable, __file__, "--serve", str(days), str(public_rps)])


def backfill(folder: Path, *args: str) -> tuple[float, float, str]:
    """Run the CLI: (wall s, CPU s of the child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trader", "backfill", *args], cwd=folder,
                          capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"backfill failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s, done.stdout


def one_run(folder: Path, days: int, rate: float, sim_rps: float, dsn: str | None) -> Result:
    sim, url = start_simulator(days, sim_rps)
    try:
        config = folder / f"config_{rate:g}.toml"
        config.write_text(f'[coinbase]\nrest_url = "{url}"\n[storage]\ndsn = "{dsn or ""}"\n')
        until = str(SINCE_S + days * 86_400)  # fixed: the simulator's clock moves on
        args = [PRODUCT, "--since", str(SINCE_S), "--until", until, "-c", str(config),
                "--rate", f"{rate:g}"]
        if dsn is None:
            args += ["--out", str(folder / f"btc_{rate:g}.csv.gz")]
        wall_s, cpu_s, out = backfill(folder, *args)
        requests, retried, limited, inner_s = parse_summary(out)
        rerun_s, _, again = backfill(folder, *args)
        rerun_requests = parse_summary(again)[0] - 1  # the server time request
    finally:
        sim.kill()
        sim.wait()
    return Result(rate, sim_rps, requests, retried, limited, inner_s, wall_s, cpu_s, rerun_s,
                  rerun_requests)


def parse_summary(stdout: str) -> tuple[int, int, int, float]:
    found = SUMMARY.search(stdout)
    if found is None:
        raise SystemExit(f"no summary in the output:\n{stdout}")
    return (*(int(found[i].replace(",", "")) for i in (1, 2, 3)), float(found[4]))


def expected_candles(days: int):
    base = read_candle_file(bundled_sources()[PRODUCT])
    reps = np.arange(days, dtype=np.int64) * 86_400
    time_s = (base.time_s[None, :] + reps[:, None]).ravel()
    return time_s, [np.tile(c, days) for c in base.columns()[1:]]


async def check_database(dsn: str, days: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        got = await load_candles(conn, PRODUCT, 60)
    finally:
        await conn.close()
    return check(got, days)


def check(got, days: int) -> int:
    time_s, columns = expected_candles(days)
    assert np.array_equal(got.time_s, time_s), "times differ"
    for ours, theirs in zip(got.columns()[1:], columns, strict=True):
        assert ours.tobytes() == theirs.tobytes(), "values differ"
    return len(got)


def report(result: Result, days: int, rows: int) -> None:
    paced_s = result.requests / result.rate  # the baseline: a client exactly at the pace
    achieved = result.requests / result.inner_s
    full_requests = FULL_DAYS * 1440 // 300
    print(f"pace {result.rate:g}/s (simulator limit {result.sim_rps:g}/s): {rows:,} candles, "
          f"{result.requests:,} requests ({result.rate_limited} answered 429, "
          f"{result.retried} retried)")
    print(f"  achieved {achieved:.2f} requests/s = {achieved / result.rate:.3f} of the pace; "
          f"fetch {result.inner_s:.1f} s vs {paced_s:.1f} s perfectly paced "
          f"(ratio {result.inner_s / paced_s:.3f}); process wall {result.wall_s:.1f} s, "
          f"CPU {result.cpu_s:.1f} s ({result.cpu_s / result.wall_s:.0%} of one core)")
    print(f"  second run over the complete span: {result.rerun_s:.2f} s, "
          f"{result.rerun_requests} candle requests")
    if days != FULL_DAYS:
        print(f"  5 years ({full_requests:,} requests) at this rate: "
              f"~{full_requests / achieved / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--full", action="store_true", help=f"{FULL_DAYS} days (5 years)")
    parser.add_argument("--file", action="store_true", help="into a file, not PostgreSQL")
    parser.add_argument("--rates", default=",".join(f"{r:g}:{s:g}" for r, s in RUNS),
                        help="pace:simulator_limit pairs, comma-separated")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_simulator(int(args.serve[0]), float(args.serve[1]))
        return
    days = FULL_DAYS if args.full else args.days
    runs = [tuple(map(float, pair.split(":"))) for pair in args.rates.split(",")]
    print(f"{platform.machine()} {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores; {days} days of {PRODUCT} 1m "
          f"into {'a file' if args.file else 'PostgreSQL'}")
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        folder = Path(tmp)
        server = None if args.file else PostgresServer(find_bin_dir() or Path("/nonexistent"))
        try:
            if server is not None:
                server.start()
            for rate, sim_rps in runs:
                dsn = None
                if server is not None:
                    name = f"bench_{int(rate)}"
                    server.psql(f"CREATE DATABASE {name}")
                    dsn = server.dsn_of(name)
                result = one_run(folder, days, rate, sim_rps, dsn)
                rows = (asyncio.run(check_database(dsn, days)) if dsn else
                        check(read_candle_file(folder / f"btc_{rate:g}.csv.gz"), days))
                report(result, days, rows)
        finally:
            if server is not None:
                server.close()


if __name__ == "__main__":
    main()
