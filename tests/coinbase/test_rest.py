"""Public REST: real sample bodies parsed exactly; the client paced and retried against servers."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from tests.helpers import eventually
from tests.simulator.test_simulator import START_S, load, started
from trader.coinbase.rest import Pacer, PublicRest, RestError
from trader.coinbase.rest_bodies import concat_candles, parse_candles, parse_products
from trader.errors import FrameError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "coinbase_samples"


def sample(name: str):
    return json.loads((SAMPLES / name).read_text())


def test_candles_sample_parses_oldest_first_with_exact_values():
    candles = parse_candles(sample("rest_candles_response.json"))
    assert np.all(np.diff(candles.time_s) > 0)
    newest = len(candles) - 1
    assert candles.time_s[newest] == 1786309500
    assert (candles.open[newest], candles.high[newest], candles.low[newest],
            candles.close[newest], candles.volume[newest]) == (
        65091.0, 65091.0, 65083.56, 65083.66, 1.03912606)


def test_products_sample_parses_increments_as_exact_decimals():
    products = {p.product_id: p for p in parse_products(
        sample("rest_list_public_products_response.json"))}
    btc = products["BTC-USD"]
    assert (btc.base_increment, btc.price_increment, btc.quote_min_size, btc.base_max_size) == (
        Decimal("0.00000001"), Decimal("0.01"), Decimal("1"), Decimal("3400"))
    assert btc.status == "online" and not btc.trading_disabled and btc.price == 65086.18


@pytest.mark.parametrize("body", [
    {}, {"candles": "x"}, {"candles": [{"start": "1"}]},
    {"candles": [{"start": "x", "open": "1", "high": "1", "low": "1", "close": "1",
                  "volume": "1"}]},
    {"candles": [{"start": "1", "open": "nan", "high": "1", "low": "1", "close": "1",
                  "volume": "1"}]},
])
def test_a_malformed_candles_body_is_a_frame_error(body):
    with pytest.raises(FrameError):
        parse_candles(body)


def test_pages_concatenate_without_repeats():
    body = sample("rest_candles_response.json")
    one = parse_candles(body)
    both = concat_candles([one, one])
    assert both.time_s.tolist() == one.time_s.tolist()


async def test_candles_over_many_pages_equal_the_replayed_file():
    simulator, url = await started(hours=6, speed=100_000)
    try:
        await eventually(lambda: simulator.now_ns() >= (START_S + 6 * 3600 + 60) * 10**9,
                         timeout_s=10)
        async with aiohttp.ClientSession() as session:
            rest = PublicRest(session, url, Pacer(50))
            got = await rest.candles("BTC-USD", START_S, START_S + 6 * 3600, 60)
        expected = load(6)["BTC-USD"]
        for ours, theirs in zip(got.columns(), expected.columns(), strict=True):
            assert ours.tolist() == theirs.tolist()
        assert rest.counters["requests"] == 2  # 360 minutes in pages of 300
    finally:
        await simulator.close()


async def test_rate_limited_requests_are_retried_until_they_pass():
    simulator, url = await started(public_rps=2)
    try:
        async with aiohttp.ClientSession() as session:
            rest = PublicRest(session, url, Pacer(20), rng=random.Random(1))
            results = await asyncio.gather(*(rest.products() for _ in range(5)))
        assert all(len(r) == 3 for r in results)
        assert rest.counters["rate_limited"] >= 1
    finally:
        await simulator.close()


async def test_unknown_product_fails_at_once_without_retries():
    simulator, url = await started()
    try:
        async with aiohttp.ClientSession() as session:
            rest = PublicRest(session, url, Pacer(50))
            with pytest.raises(RestError) as caught:
                await rest.candles("NOPE-USD", START_S, START_S + 60, 60)
        assert caught.value.status == 404 and rest.counters["retries"] == 0
    finally:
        await simulator.close()


async def test_server_errors_are_retried_with_backoff_then_give_up():
    hits = []

    async def flaky(request: web.Request) -> web.Response:
        hits.append(request.path)
        if len(hits) <= 2:
            return web.Response(status=503, text="busy")
        return web.json_response({"products": []})

    app = web.Application()
    app.router.add_get("/api/v3/brokerage/market/products", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            rest = PublicRest(session, f"http://127.0.0.1:{port}", Pacer(100),
                              backoff_max_s=0.05)
            assert await rest.products() == []
            assert len(hits) == 3 and rest.counters["retries"] == 2
            give_up = PublicRest(session, "http://127.0.0.1:1", Pacer(100), max_attempts=2,
                                 backoff_max_s=0.01)
            with pytest.raises(RestError, match="gave up after 2 attempts"):
                await give_up.products()
    finally:
        await runner.cleanup()


async def test_pacer_spaces_requests():
    pacer = Pacer(50)
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    for _ in range(6):
        await pacer.wait()
    assert loop.time() - started_s >= 5 / 50 * 0.9
