"""`trader backfill` for real: a subprocess against the simulator's REST and PostgreSQL.

The simulator serves the bundled candles of 2018-04-05 (LTC-USD misses a minute: a bucket
Coinbase would omit), every one of them closed. Runs are killed with SIGKILL mid-way and run
again; the end state must be exactly the simulator's candles, bit for bit.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from tests.helpers import eventually
from trader.cli import main
from trader.kernels.series import CandleArrays
from trader.simulator.run import TiledCandles, build_tiled, bundled_sources
from trader.simulator.server import Faults, Simulator
from trader.store import schema
from trader.store.backfill.candle_store import merge_ranges, runs_of
from trader.store.backfill.run import batches_of, missing_ranges, parse_time_s
from trader.store.history import load_candles, read_candle_file

DAY_S = 86_400
SINCE_S = 1_522_886_400  # 2018-04-05 00:00 UTC, the bundled day
PRODUCTS = ("BTC-USD", "ETH-USD", "LTC-USD")
PAGES_PER_PRODUCT = 5  # 1,440 minutes in pages of 300

SimFactory = Callable[..., Awaitable[tuple[Simulator, str]]]


@pytest.fixture
async def simulator() -> AsyncIterator[SimFactory]:
    started: list[Simulator] = []

    async def start(days: int = 1, public_rps: float = 50.0,
                    faults: Faults | None = None) -> tuple[Simulator, str]:
        sim = build_tiled(bundled_sources(), days, public_rps, faults)
        url = await sim.start()
        started.append(sim)
        return sim, url

    yield start
    for sim in started:
        await sim.close()


def write_config(folder: Path, sim_url: str, dsn: str = "") -> Path:
    path = folder / "config.toml"
    path.write_text(f'[coinbase]\nrest_url = "{sim_url}"\n[storage]\ndsn = "{dsn}"\n')
    return path


def _log(folder: Path) -> int:
    return os.open(folder / "backfill.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def spawn(folder: Path, *args: str) -> asyncio.subprocess.Process:
    log = _log(folder)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trader", "backfill", *args, cwd=folder, stdout=log,
            stderr=log, stdin=asyncio.subprocess.DEVNULL)
    finally:
        os.close(log)


async def finished(folder: Path, *args: str, timeout_s: float = 60.0) -> int:
    proc = await spawn(folder, *args)
    return await asyncio.wait_for(proc.wait(), timeout_s)


async def killed_mid_run(folder: Path, started: Callable[[], Awaitable[bool]],
                         *args: str) -> None:
    """Start a backfill, SIGKILL it once `started()` holds, check it had not finished."""
    proc = await spawn(folder, *args)
    await eventually(started, timeout_s=60)
    proc.kill()
    assert await proc.wait() == -9, (folder / "backfill.log").read_text()


def assert_same(got: CandleArrays, expected: CandleArrays) -> None:
    for ours, theirs in zip(got.columns(), expected.columns(), strict=True):
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()


def span_args(days: int = 1) -> list[str]:
    return ["--since", "2018-04-05", "--until", str(SINCE_S + days * DAY_S)]


# ---- against the database -------------------------------------------------------------------

async def test_a_killed_database_backfill_resumes_to_exactly_the_exchange_candles(
        simulator, database, tmp_path):
    sim, url = await simulator()
    config = write_config(tmp_path, url, database)
    conn = await asyncpg.connect(database)
    try:
        await schema.migrate(conn)
        args = [*PRODUCTS, *span_args(), "-c", str(config), "--rate", "5", "--batch-pages", "1"]
        partial = 0
        for _ in range(2):  # killed twice, each time after it stored something more

            async def more_rows(before: int = partial) -> bool:
                return await conn.fetchval("SELECT count(*) FROM candles") > before

            await killed_mid_run(tmp_path, more_rows, *args)
            await assert_rows_match_their_ranges(conn, sim)
            partial = await conn.fetchval("SELECT count(*) FROM candles")
        assert await finished(tmp_path, *args) == 0, (tmp_path / "backfill.log").read_text()
        total = 0
        for product_id in PRODUCTS:
            expected = sim.candles[product_id].between(SINCE_S, SINCE_S + DAY_S)
            assert_same(await load_candles(conn, product_id, 60), expected)
            total += len(expected)
        assert partial < total
        assert await conn.fetchval("SELECT count(*) FROM candles") == total  # no duplicates
        requests = sim.counters["rest_requests"]
        assert await finished(tmp_path, *args) == 0
        assert sim.counters["rest_requests"] == requests  # complete: not one candle request
    finally:
        await conn.close()


async def assert_rows_match_their_ranges(conn: asyncpg.Connection, sim: Simulator) -> None:
    """After a kill: no row outside a recorded range, and every recorded range complete."""
    orphans = await conn.fetchval(
        "SELECT count(*) FROM candles c WHERE NOT EXISTS (SELECT 1 FROM backfill_ranges r "
        "WHERE r.product_id = c.product_id AND r.interval_s = c.interval_s "
        "AND c.time >= r.start_time AND c.time < r.end_time)")
    assert orphans == 0
    for product_id, start_s, end_s in await conn.fetch(
            "SELECT product_id, extract(epoch FROM start_time)::bigint, "
            "extract(epoch FROM end_time)::bigint FROM backfill_ranges"):
        assert_same(await load_candles(conn, product_id, 60, start_s, end_s),
                    sim.candles[product_id].between(start_s, end_s))


async def test_an_empty_range_is_recorded_and_not_asked_again(simulator, database, tmp_path):
    sim, url = await simulator()
    config = write_config(tmp_path, url, database)
    args = ["BTC-USD", "--since", str(SINCE_S - DAY_S), "--until", str(SINCE_S),
            "-c", str(config)]  # the day before the data: the exchange has no candles
    assert await finished(tmp_path, *args) == 0
    assert sim.counters["rest_requests"] == PAGES_PER_PRODUCT
    assert await finished(tmp_path, *args) == 0
    assert sim.counters["rest_requests"] == PAGES_PER_PRODUCT
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM candles") == 0
        assert await conn.fetchval("SELECT count(*) FROM backfill_ranges") == 1
    finally:
        await conn.close()


async def test_candles_already_held_are_not_fetched_again(simulator, database, tmp_path):
    sim, url = await simulator()
    config = write_config(tmp_path, url, database)
    first_hours = ["BTC-USD", "--since", "2018-04-05", "--until", "2018-04-05T10:00",
                   "-c", str(config)]
    assert await finished(tmp_path, *first_hours) == 0
    assert sim.counters["rest_requests"] == 2  # 600 minutes
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("DELETE FROM backfill_ranges")  # as if a daemon wrote the rows
        assert await finished(tmp_path, "BTC-USD", *span_args(), "-c", str(config)) == 0
        assert sim.counters["rest_requests"] == 2 + 3  # 840 minutes left
        assert_same(await load_candles(conn, "BTC-USD", 60),
                    sim.candles["BTC-USD"].between(SINCE_S, SINCE_S + DAY_S))
    finally:
        await conn.close()


async def test_rate_limits_and_server_errors_are_retried(simulator, database, tmp_path):
    sim, url = await simulator(public_rps=4, faults=Faults(seed=3, rest_error_rate=0.15))
    config = write_config(tmp_path, url, database)
    args = [*PRODUCTS, *span_args(), "-c", str(config), "--rate", "6", "--batch-pages", "1"]
    assert await finished(tmp_path, *args, timeout_s=120) == 0, (
        tmp_path / "backfill.log").read_text()
    assert sim.counters["rate_limited"] > 0 and sim.counters["server_errors"] > 0
    conn = await asyncpg.connect(database)
    try:
        for product_id in PRODUCTS:
            assert_same(await load_candles(conn, product_id, 60),
                        sim.candles[product_id].between(SINCE_S, SINCE_S + DAY_S))
    finally:
        await conn.close()


# ---- into files -----------------------------------------------------------------------------

async def test_a_killed_file_backfill_resumes_to_exactly_the_exchange_candles(
        simulator, tmp_path):
    sim, url = await simulator()
    config = write_config(tmp_path, url)
    out = tmp_path / "{product}_1m.csv.gz"
    args = [*PRODUCTS, *span_args(), "-c", str(config), "--out", str(out), "--rate", "5",
            "--batch-pages", "1"]
    for _ in range(2):  # killed twice, each time after it stored something more
        parts = set(tmp_path.glob("*.parts/*.csv.gz"))

        async def more_parts(before: set[Path] = parts) -> bool:
            return bool(set(tmp_path.glob("*.parts/*.csv.gz")) - before)

        await killed_mid_run(tmp_path, more_parts, *args)
        assert_parts_match_their_names(tmp_path, sim)
    assert not any(tmp_path.glob("*_1m.csv.gz"))  # no final file before the end
    assert await finished(tmp_path, *args) == 0, (tmp_path / "backfill.log").read_text()
    for product_id in PRODUCTS:
        path = tmp_path / f"{product_id}_1m.csv.gz"
        assert_same(read_candle_file(path),
                    sim.candles[product_id].between(SINCE_S, SINCE_S + DAY_S))
        assert not path.with_name(path.name + ".parts").exists()
        ranges = path.with_name(path.name + ".ranges").read_text()
        assert ranges == f"60 {SINCE_S} {SINCE_S + DAY_S}\n"
    requests = sim.counters["rest_requests"]
    assert await finished(tmp_path, *args) == 0
    assert sim.counters["rest_requests"] == requests


def assert_parts_match_their_names(folder: Path, sim: Simulator) -> None:
    for part in folder.glob("*.parts/*.csv.gz"):
        product_id = part.parent.name.removesuffix("_1m.csv.gz.parts")
        _, start_s, end_s = map(int, part.name.removesuffix(".csv.gz").split("_"))
        assert_same(read_candle_file(part), sim.candles[product_id].between(start_s, end_s))


async def test_a_file_grows_by_its_holes_only(simulator, tmp_path):
    sim, url = await simulator(days=3)
    config = write_config(tmp_path, url)
    out = tmp_path / "btc.csv.gz"
    common = ["BTC-USD", "-c", str(config), "--out", str(out)]
    assert await finished(tmp_path, *common, "--since", "2018-04-06", "--until",
                          "2018-04-07") == 0
    assert sim.counters["rest_requests"] == PAGES_PER_PRODUCT
    assert await finished(tmp_path, *common, "--since", "2018-04-05") == 0  # to the end
    assert sim.counters["rest_requests"] == 3 * PAGES_PER_PRODUCT
    assert_same(read_candle_file(out), sim.candles["BTC-USD"].between(0, 2**40))


# ---- arguments and errors -------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["BTC-USD", "--since", "2018-04-05"], "nowhere to write"),
    (["BTC-USD", "--since", "2018-04-05", "--out", "x.csv.gz", "--interval", "7m"],
     "no 7m candles"),
    (["BTC-USD", "--since", "2018-04-05", "--out", "x.csv.gz", "--interval", "4x"],
     "interval"),
    (["BTC-USD", "ETH-USD", "--since", "2018-04-05", "--out", "x.csv.gz"], "{product}"),
    (["BTC-USD", "--since", "2018-04-05", "--until", "2018-04-04", "--out", "x.csv.gz"],
     "after --since"),
])
def test_bad_arguments_exit_2_with_a_message(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["backfill", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["BTC-USD", "--since", "yesterday", "--out", "x.csv.gz"],
    ["BTC-USD", "--since", "2018-04-05", "--rate", "0", "--out", "x.csv.gz"],
    ["--since", "2018-04-05", "--out", "x.csv.gz"],
])
def test_malformed_arguments_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["backfill", *args])
    assert exited.value.code == 2


def test_a_broken_config_exits_2_with_the_key(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text('[coinbase]\npublic_rest_rps = "fast"\n')
    assert main(["backfill", "BTC-USD", "--since", "2018-04-05", "-c", str(config)]) == 2
    assert "coinbase.public_rest_rps" in capsys.readouterr().err


def test_an_unreachable_database_exits_1(tmp_path, capsys):
    config = write_config(tmp_path, "http://127.0.0.1:9", "postgresql://u@127.0.0.1:9/db")
    assert main(["backfill", "BTC-USD", "--since", "2018-04-05", "-c", str(config)]) == 1
    assert "error" in capsys.readouterr().err


async def test_an_unknown_product_exits_1_without_retries(simulator, tmp_path):
    sim, url = await simulator()
    config = write_config(tmp_path, url)
    assert await finished(tmp_path, "NOPE-USD", *span_args(), "-c", str(config), "--out",
                          str(tmp_path / "x.csv.gz")) == 1
    assert "HTTP 404" in (tmp_path / "backfill.log").read_text()
    assert sim.counters["rest_requests"] == 1


# ---- the parts ------------------------------------------------------------------------------

def test_holes_are_what_no_held_range_covers():
    assert merge_ranges([(5, 6), (0, 2), (2, 3), (4, 5), (7, 7)]) == [(0, 3), (4, 6)]
    assert missing_ranges((0, 10), [(2, 3), (5, 12), (-5, 1)]) == [(1, 2), (3, 5)]
    assert missing_ranges((0, 10), []) == [(0, 10)]
    assert missing_ranges((0, 10), [(0, 10)]) == []


def test_runs_and_batches():
    times = np.array([0, 60, 120, 300, 360, 600], dtype=np.int64)
    assert runs_of(times, 60) == [(0, 180), (300, 420), (600, 660)]
    assert runs_of(times[:0], 60) == []
    assert batches_of([(0, 60 * 700), (10**6, 10**6 + 60)], 60, 1) == [
        (0, 18_000), (18_000, 36_000), (36_000, 42_000), (10**6, 10**6 + 60)]


def test_dates_are_utc_unless_they_say_otherwise():
    assert parse_time_s("2018-04-05") == SINCE_S
    assert parse_time_s("2018-04-05T01:00") == SINCE_S + 3600
    assert parse_time_s("2018-04-05T02:00+01:00") == SINCE_S + 3600
    assert parse_time_s("2018-04-05T01:00Z") == SINCE_S + 3600
    assert parse_time_s(str(SINCE_S)) == SINCE_S
    with pytest.raises(ValueError):
        parse_time_s("05/04/2018")


def test_tiled_candles_repeat_the_file_day_after_day():
    base = read_candle_file(bundled_sources()["LTC-USD"])
    tiled = TiledCandles(base, SINCE_S + 3 * DAY_S)
    across = tiled.between(SINCE_S + DAY_S - 600, SINCE_S + DAY_S + 600)
    assert across.time_s.tolist() == [*base.time_s[-10:], *(base.time_s[:10] + DAY_S)]
    assert_same(tiled.between(SINCE_S + 2 * DAY_S, SINCE_S + 5 * DAY_S),
                CandleArrays(base.time_s + 2 * DAY_S, *base.columns()[1:]))
    assert len(tiled.between(0, SINCE_S)) == 0
