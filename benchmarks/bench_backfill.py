"""A simulated 1-minute backfill of one product: how close to the configured pace it runs.

Run: .venv/bin/python -m benchmarks --only backfill [--quick]
The simulator (a child process) serves the bundled BTC-USD day tiled over the span; the real
`trader backfill` CLI (another child) fetches it into a throwaway PostgreSQL (and once into a
gzip CSV file) at each configured rate. Each run reports requests/s achieved against the
configured rate (the baseline: a perfectly paced client takes requests / rate seconds); the
target is the configured limit, reached within 5 % (into PostgreSQL; into a file the time
includes merging the part files into one). Every run's result is checked bit for bit
against the simulator's candles, and a second run over the complete span must make no candle
request. The span is 60 days (86,400 candles, 289 requests; --quick: 10 days, too few requests
for the target); 5 years at 10 requests/s is 15 minutes of waiting, so the 60-day figure is
extrapolated to it.
"""

from __future__ import annotations

import asyncio
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
from figures import REPO, Figure, report

sys.path.insert(0, str(REPO))

from tests.pg import INSTALL_HINT, PostgresServer, find_bin_dir
from trader.simulator.run import build_tiled, bundled_sources, serve, spawn
from trader.store.history import load_candles, read_candle_file

HERE = Path(__file__).resolve().parent
PRODUCT = "BTC-USD"
SINCE_S = 1_522_886_400  # 2018-04-05 00:00 UTC, the bundled day
FULL_DAYS = 1825  # 5 x 365 days: 2,628,000 minutes
DAYS, QUICK_DAYS = 60, 10
PACE_SHARE = 0.95  # the target: at least this share of the configured pace
# (configured pace, the simulator's limit, into a file): Coinbase's own 10/s at 10/s; 50/s
# under a limit it never reaches, so only our pacing can hold it back; then no pacing worth
# the name; and 50/s into a file.
RUNS = ((10.0, 10.0, False), (50.0, 100.0, False), (1000.0, 100_000.0, False),
        (50.0, 100.0, True))
QUICK_RUNS = ((50.0, 100.0, False), (1000.0, 100_000.0, False))
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
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_backfill; "
            f"bench_backfill.serve_simulator({days}, {public_rps})")
    return spawn([sys.executable, "-c", code])


def backfill(folder: Path, *args: str) -> tuple[float, float, str]:
    """Run the CLI: (wall s, CPU s of the child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trader", "backfill", *args], cwd=folder,
                          capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"backfill failed ({done.returncode}): {done.stderr[-2000:]}")
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
        raise RuntimeError(f"no summary in the output: {stdout}")
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


def figures_of(result: Result, days: int, to_file: bool, quick: bool) -> list[Figure]:
    achieved = result.requests / result.inner_s
    where = "a file" if to_file else "PostgreSQL"
    what = (f"backfill, {days} days of 1m ({result.requests:,} requests) into {where}, "
            f"pace {result.rate:g}/s (simulator limit {result.sim_rps:g}/s)")
    if result.rate_limited or result.rerun_requests:
        raise RuntimeError(f"{what}: {result.rate_limited} answered 429, "
                           f"{result.rerun_requests} candle requests on the second run")
    if result.rate >= 1000:
        return [Figure("history", f"backfill, {days} days into {where}, no pacing to speak of "
                       f"(pace {result.rate:g}/s): what the loopback pair reaches", achieved,
                       "requests/s")]
    # quick: too few requests to tell; a file: the final merge of the part files counts too
    target = None if quick or to_file else (">=", PACE_SHARE * result.rate)
    out = [Figure("history", what, achieved, "requests/s", target,
                  "a client exactly at the pace", result.rate),
           Figure("history", "the same, CPU of the backfill process",
                  100 * result.cpu_s / result.wall_s, "% of a core", higher_is_better=False),
           Figure("history", "the same, second run over the complete span",
                  result.rerun_s, "s", higher_is_better=False)]
    if result.rate == 10.0 and days != FULL_DAYS:
        full_requests = FULL_DAYS * 1440 // 300
        out.append(Figure("history", "the same, extrapolated to 5 years (2,628,000 candles)",
                          full_requests / achieved / 60, "min", higher_is_better=False))
    return out


def run(quick: bool) -> list[Figure]:
    days, runs = (QUICK_DAYS, QUICK_RUNS) if quick else (DAYS, RUNS)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(INSTALL_HINT)
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        folder = Path(tmp)
        server = PostgresServer(bin_dir)
        try:
            server.start()
            for rate, sim_rps, to_file in runs:
                dsn = None
                if not to_file:
                    name = f"bench_{int(rate)}"
                    server.psql(f"CREATE DATABASE {name}")
                    dsn = server.dsn_of(name)
                result = one_run(folder, days, rate, sim_rps, dsn)
                if dsn:
                    asyncio.run(check_database(dsn, days))
                else:
                    check(read_candle_file(folder / f"btc_{rate:g}.csv.gz"), days)
                out += figures_of(result, days, to_file, quick)
        finally:
            server.close()
    return out


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
