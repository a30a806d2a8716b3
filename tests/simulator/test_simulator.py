"""The simulator speaks the Coinbase protocol: checked with a plain aiohttp client and json."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.helpers import eventually
from trader.kernels.series import CandleArrays
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import read_candle_file

DATA = Path(__file__).resolve().parents[1] / "data"
START_S = 1522886400  # 2018-04-05 00:00 UTC: all three files have this day
PRODUCTS = ("BTC-USD", "ETH-USD", "LTC-USD")
NO_FAULTS = Faults()


def load(hours: float) -> dict[str, CandleArrays]:
    end_s = START_S + int(hours * 3600)
    return {p: read_candle_file(DATA / f"coinbase_{p}_1m.csv.gz").between(START_S, end_s)
            for p in PRODUCTS}


async def started(hours: float = 1, speed: float = 600, faults: Faults = NO_FAULTS,
                  public_rps: float = 10.0) -> tuple[Simulator, str]:
    candles = load(hours)
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    sim = Simulator(tapes, candles, START_S, speed=speed, faults=faults, public_rps=public_rps)
    return sim, await sim.start()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    simulator, url = await started()
    yield simulator, url
    await simulator.close()


async def subscribe_all(ws: aiohttp.ClientWebSocketResponse, products=PRODUCTS) -> None:
    for channel in ("heartbeats", "market_trades", "ticker"):
        await ws.send_str(json.dumps({"type": "subscribe", "channel": channel,
                                      "product_ids": [] if channel == "heartbeats"
                                      else list(products)}))


async def collect(url: str, until_s: int, products=PRODUCTS) -> list[dict]:
    """Every frame of one connection until the exchange time passes `until_s`."""
    frames = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/") as ws:
        await subscribe_all(ws, products)
        async for message in ws:
            frame = json.loads(message.data)
            frames.append(frame)
            if frame.get("channel") == "heartbeats" and _epoch_s(frame["timestamp"]) >= until_s:
                return frames
    raise AssertionError("connection closed early")


def _epoch_s(stamp: str) -> float:
    return datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()


async def test_frames_carry_a_per_connection_sequence_and_fold_back_into_the_candles(sim):
    _simulator, url = sim
    frames = await collect(url, START_S + 20 * 60)
    assert [f["sequence_num"] for f in frames] == list(range(len(frames)))
    assert "client_id" not in frames[0] and "type" not in frames[0]
    counters = [f["events"][0]["heartbeat_counter"] for f in frames
                if f["channel"] == "heartbeats"]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    trades = {}
    for frame in frames:
        if frame["channel"] == "market_trades":
            for event in frame["events"]:
                for trade in event["trades"]:
                    trades[(trade["product_id"], trade["trade_id"])] = trade
    candles = load(1)
    for product in PRODUCTS:
        rebuilt = fold_minutes([t for (p, _), t in trades.items() if p == product])
        expected = candles[product].between(START_S, START_S + 19 * 60)
        assert sorted(rebuilt)[: len(expected)] == [
            (int(expected.time_s[i]), *(float(a[i]) for a in expected.columns()[1:5]))
            for i in range(len(expected))]


def fold_minutes(trades: list[dict]) -> list[tuple]:
    """1-minute OHLC from wire trades, the plain way (volume left out: compared elsewhere)."""
    by_minute: dict[int, list[tuple[float, float]]] = {}
    for trade in sorted(trades, key=lambda t: int(t["trade_id"])):
        minute = int(_epoch_s(trade["time"])) // 60 * 60
        by_minute.setdefault(minute, []).append((_epoch_s(trade["time"]), float(trade["price"])))
    rows = []
    for minute, prints in by_minute.items():
        prices = [p for _, p in sorted(prints)]
        rows.append((minute, prices[0], max(prices), min(prices), prices[-1]))
    return rows


async def test_market_trades_snapshot_is_newest_first_and_then_updates_follow(sim):
    simulator, url = sim
    await eventually(lambda: simulator.now_ns() >= (START_S + 300) * 10**9, timeout_s=10)
    frames = await collect(url, simulator.now_ns() // 10**9 + 120, products=("BTC-USD",))
    trade_frames = [f["events"][0] for f in frames if f["channel"] == "market_trades"]
    assert trade_frames[0]["type"] == "snapshot"
    ids = [int(t["trade_id"]) for t in trade_frames[0]["trades"]]
    assert ids == sorted(ids, reverse=True) and len(ids) <= 100
    assert {e["type"] for e in trade_frames[1:]} == {"update"}
    acks = [f for f in frames if f["channel"] == "subscriptions"]
    assert acks[-1]["events"][0]["subscriptions"] == {
        "heartbeats": ["heartbeats"], "market_trades": ["BTC-USD"], "ticker": ["BTC-USD"]}


async def test_a_connection_without_a_subscribe_is_closed_after_5_s(sim):
    _simulator, url = sim
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/") as ws:
        message = await asyncio.wait_for(ws.receive(), timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008


async def test_an_unknown_channel_gets_an_error_frame(sim):
    _simulator, url = sim
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/") as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "heartbeat"}))
        assert json.loads((await ws.receive()).data) == {"type": "error",
                                                         "message": "failure to subscribe"}


async def get_candles(session, url, product, start, end, granularity="ONE_MINUTE"):
    path = f"{url}/api/v3/brokerage/market/products/{product}/candles"
    params = {"start": str(start), "end": str(end), "granularity": granularity}
    async with session.get(path, params=params) as response:
        return response.status, await response.json()


async def test_rest_candles_serve_closed_buckets_newest_first_and_fold_higher_intervals():
    simulator, url = await started(speed=20_000)
    try:
        await eventually(lambda: simulator.now_ns() >= (START_S + 3660) * 10**9, timeout_s=10)
        async with aiohttp.ClientSession() as session:
            status, body = await get_candles(session, url, "ETH-USD", START_S, START_S + 3600)
            assert status == 200
            starts = [int(c["start"]) for c in body["candles"]]
            assert starts == sorted(starts, reverse=True)
            expected = load(1)["ETH-USD"]
            assert starts[::-1] == expected.time_s.tolist()
            newest = body["candles"][0]
            assert float(newest["close"]) == expected.close[-1]
            assert float(newest["volume"]) == expected.volume[-1]
            status, body = await get_candles(session, url, "ETH-USD", START_S, START_S + 3600,
                                             "FIVE_MINUTE")
            first = body["candles"][-1]
            five = expected.between(START_S, START_S + 300)
            assert (float(first["open"]), float(first["high"]), float(first["low"]),
                    float(first["close"])) == (five.open[0], five.high.max(), five.low.min(),
                                               five.close[-1])
            assert np.isclose(float(first["volume"]), five.volume.sum(), rtol=1e-12)
    finally:
        await simulator.close()


async def test_rest_refuses_too_many_candles_unknown_products_and_excess_rate():
    simulator, url = await started(public_rps=3)
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await get_candles(session, url, "BTC-USD", START_S,
                                             START_S + 351 * 60)
            assert status == 400 and body["error"] == "INVALID_ARGUMENT"
            status, body = await get_candles(session, url, "NOPE-USD", START_S, START_S + 60)
            assert status == 404 and body["error"] == "NOT_FOUND"
            statuses = [(await get_candles(session, url, "BTC-USD", START_S, START_S + 60))[0]
                        for _ in range(6)]
            assert 429 in statuses
            assert simulator.counters["rate_limited"] >= 1
    finally:
        await simulator.close()


async def test_faults_show_as_sequence_gaps_bad_frames_and_drops():
    faults = Faults(seed=7, gap_rate=0.02, malformed_rate=0.02, drop_rate=0.002)
    simulator, url = await started(hours=6, speed=3000, faults=faults)
    try:
        sequence_jumps, bad, closed = 0, 0, 0
        async with aiohttp.ClientSession() as session:
            while closed < 2:
                async with session.ws_connect(url + "/") as ws:
                    await subscribe_all(ws)
                    last = -1
                    async for message in ws:
                        try:
                            frame = json.loads(message.data)
                            seq = frame["sequence_num"]
                        except (ValueError, KeyError):
                            bad += 1
                            continue
                        sequence_jumps += seq > last + 1
                        last = seq
                    closed += 1
        assert sequence_jumps >= 1 and bad >= 1
        counts = simulator.fault_counts
        assert counts.drops >= 2 and counts.gaps >= 1 and counts.malformed >= 1
    finally:
        await simulator.close()


async def test_the_daemons_parser_reads_every_simulator_frame(sim):
    from trader.coinbase.messages import parse_frame
    from trader.types import Side, Trade

    _simulator, url = sim
    frames = await collect(url, START_S + 5 * 60)
    parsed = [parse_frame(json.dumps(f)) for f in frames]
    assert [p.sequence_num for p in parsed] == [f["sequence_num"] for f in frames]
    trades = [v for p in parsed for v in p.values if isinstance(v, Trade)]
    wire = [t for f in frames if f["channel"] == "market_trades"
            for e in f["events"] for t in e["trades"]]
    assert len(trades) == len(wire) > 0
    for ours, theirs in zip(trades, wire, strict=True):
        assert ours.price == float(theirs["price"]) and ours.trade_id == int(theirs["trade_id"])
        # the wire carries the maker's side; an uptick means a buyer lifted a resting ask
        assert ours.side == (Side.BUY if theirs["side"] == "SELL" else Side.SELL)
