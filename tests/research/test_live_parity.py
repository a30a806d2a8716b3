"""Parity with live: a paper daemon trades two hours of real minutes against the simulator
(three products, half of the REST requests for history failing), writing to PostgreSQL; then the
backtest runs on the candles the daemon stored. Its signals are the daemon's `signals` rows,
and its trades are the daemon's paper fills, bar for bar.

The daemon runs on the exchange time its feed has reached (the replay is 120x real time), as
a live daemon runs on a wall clock that is exchange time. Differences the fill model states (README,
"The fill model") are checked as such: a market order fills at the touch in paper and at the
next bar's open in the backtest, in the same bar.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import tomli_w

from tests.helpers import eventually
from tests.simulator.test_simulator import PRODUCTS, START_S
from trader import config as cfg
from trader.daemon.app import Daemon
from trader.engine import Engine
from trader.research.options import BacktestOptions
from trader.research.run import BacktestRequest, run
from trader.signals.loader import load_strategies
from trader.simulator.server import Faults, Simulator
from trader.simulator.tape import tape_from_candles
from trader.store.history import read_candle_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SPEED = 120.0
WARMUP_MIN = 40  # minutes of history before the replay starts
HOURS = 2
TICK = 0.01  # the simulator's price increment and half-spread


def daemon_config(tmp_path: Path, sim_url: str, dsn: str) -> dict[str, Any]:
    return {
        "daemon": {"mode": "paper", "state_dir": str(tmp_path / "state"),
                   "strategies_dir": str(REPO / "strategies")},
        "log": {"format": "plain"},
        "coinbase": {"ws_url": sim_url.replace("http", "ws") + "/",
                     "user_ws_url": sim_url.replace("http", "ws") + "/",
                     "rest_url": sim_url, "public_rest_rps": 10.0},
        "market": {"products": list(PRODUCTS), "intervals": ["1m", "5m"],
                   "warmup_bars": WARMUP_MIN},
        "selector": {"top_n": 2, "metric": "volatility", "window_bars": 20},
        "storage": {"dsn": dsn, "flush_interval_ms": 200},
        # a reprice at each bar close: the bar model's timing (README, "The fill model")
        "execution": {"limit_timeout_s": 60.0, "max_reprices": 2, "fallback": "market"},
        "risk": {"max_position_usd": 50.0, "max_open_positions": 2, "max_exposure_usd": 100.0,
                 "stop_loss_pct": 0.4, "take_profit_pct": 0.6, "max_consecutive_losses": 4,
                 "cooldown_s": 600.0},
        "strategies": {"sma_cross": {"interval": "1m", "params": {"fast": 3, "slow": 9}}},
    }


class FeedTime:
    """The exchange time the daemon's feed has reached: its clock in a replay (a stall of
    the feed stops it, as it stops the replayed market)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def __call__(self) -> int:
        return self.engine.exchange_ns if self.engine is not None else 0


async def run_daemon(config: cfg.Config, config_path: Path, end_s: int) -> Daemon:
    strategies = load_strategies(Path(config.daemon.strategies_dir), config.strategies)
    assert isinstance(strategies, dict), strategies
    clock = FeedTime()
    daemon = Daemon(config_path, config, {}, strategies, clock=clock)
    clock.engine = daemon.parts.engine
    task = asyncio.create_task(daemon.run())
    try:
        market = daemon.parts.market
        await eventually(lambda: (market.last_emitted_s or 0) >= end_s - 60,
                         timeout_s=HOURS * 3600 / SPEED + 120)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=60) == 0
    return daemon


async def test_the_backtest_decides_and_fills_as_the_paper_daemon_did(database: str,
                                                                       tmp_path: Path):
    start_s = START_S - WARMUP_MIN * 60
    end_s = START_S + HOURS * 3600
    candles = {p: read_candle_file(DATA / f"coinbase_{p}_1m.csv.gz").between(start_s, end_s)
               for p in PRODUCTS}
    tapes = {p: tape_from_candles(p, c) for p, c in candles.items()}
    # lossless faults: a print lost to a gap, or held back by a stall until the daemon's
    # orders of that moment are accepted behind it, would fill paper later than the bar
    # (README, "The fill model"); these change only how the daemon gets its candles
    faults = Faults(seed=7, rest_error_rate=0.5)
    simulator = Simulator(tapes, candles, START_S, speed=SPEED, faults=faults, public_rps=50)
    url = await simulator.start()
    config_path = tmp_path / "config.toml"
    config_path.write_text(tomli_w.dumps(daemon_config(tmp_path, url, database)))
    config = cfg.parse(config_path.read_bytes())
    assert isinstance(config, cfg.Config), config
    try:
        daemon = await run_daemon(config, config_path, end_s)
    finally:
        await simulator.close()
    assert simulator.counters["rest_requests"] > len(PRODUCTS)  # history fetched, retried
    live_from = daemon.parts.market.live_from_s
    last = daemon.parts.market.last_emitted_s
    assert live_from is not None and last is not None

    request = BacktestRequest("sma_cross", config, BacktestOptions.from_paper(config.paper),
                              products=PRODUCTS, since_s=live_from, until_s=last + 60,
                              path="engine")
    result = await asyncio.to_thread(run, request)
    stored_signals, fills = await stored(database, live_from, last + 60)

    ours = [(s.time, s.product, s.action) for s in result.signals]
    assert ours == stored_signals and len(ours) > 20
    daemon_trades = round_trips(fills)
    assert len(daemon_trades) >= 5, "too few trades to compare"
    assert_same_trades(daemon_trades, result, candles)


async def stored(dsn: str, since_s: int, until_s: int) -> tuple[list, list]:
    conn = await asyncpg.connect(dsn)
    try:
        signals = await conn.fetch(
            "SELECT extract(epoch FROM time)::bigint AS t, product_id, action FROM signals "
            "WHERE time >= to_timestamp($1) AND time < to_timestamp($2) "
            "ORDER BY time, product_id", since_s, until_s)
        fills = await conn.fetch(
            "SELECT product_id, side, price, size, liquidity, "
            "extract(epoch FROM time)::float8 AS t FROM fills ORDER BY time, trade_id")
    finally:
        await conn.close()
    return [(r["t"], r["product_id"], r["action"]) for r in signals], list(fills)


def round_trips(fills: list) -> list[dict[str, Any]]:
    """The daemon's fills as round trips per product: entry and exit bars, fills, liquidity."""
    trips: list[dict[str, Any]] = []
    open_trips: dict[str, dict[str, Any]] = {}
    held: dict[str, Decimal] = {}
    for f in fills:
        product, size = f["product_id"], Decimal(f["size"])
        bar = int(f["t"]) // 60 * 60
        trip = open_trips.setdefault(product, {"product": product, "entry_bar": bar,
                                               "buys": [], "sells": []})
        if f["side"] == "BUY":
            trip["buys"].append((Decimal(f["price"]), size, f["liquidity"], bar))
            held[product] = held.get(product, Decimal(0)) + size
        else:
            trip["sells"].append((Decimal(f["price"]), size, f["liquidity"], bar))
            held[product] -= size
            if held[product] == 0:
                trip["exit_bar"] = bar
                trips.append(open_trips.pop(product))
    return sorted(trips, key=lambda t: (t["exit_bar"], t["product"]))


def assert_same_trades(daemon_trades: list[dict[str, Any]], result: Any,
                       candles: dict[str, Any]) -> None:
    ours = sorted(result.trades, key=lambda t: (t.exit_time, t.product))
    assert [(t["product"], t["entry_bar"], t["exit_bar"]) for t in daemon_trades] == [
        (t.product, t.entry_time, t.exit_time) for t in ours]
    for trip, trade in zip(daemon_trades, ours, strict=True):
        assert len(trip["buys"]) == 1 and len(trip["sells"]) == 1, trip  # whole fills
        (buy, size, buy_liquidity, _), (sell, _, sell_liquidity, _) = (trip["buys"][0],
                                                                       trip["sells"][0])
        assert np.isclose(float(size), trade.size, rtol=1e-12)
        expect_price(trade.entry_price, buy, buy_liquidity, "BUY", trade.entry_time, candles,
                     trade.product)
        expect_price(trade.exit_price, sell, sell_liquidity, "SELL", trade.exit_time, candles,
                     trade.product)


def expect_price(ours: float, paper: Decimal, liquidity: str, side: str, bar_s: int,
                 candles: dict[str, Any], product: str) -> None:
    """A maker fill is at the same limit price; a taker fill is at the touch in paper (one tick
    off the last print, plus slippage) and at the bar's open plus slippage here."""
    if liquidity.upper() == "MAKER":
        assert Decimal(str(ours)) == paper
        return
    series = candles[product]
    i = int(np.searchsorted(series.time_s, bar_s))
    slip = 0.0005 if side == "BUY" else -0.0005
    # the touch when paper accepted the order: the last print (the close), or the bar's first
    # print when the daemon was working through a backlog of frames (after a feed stall)
    touched = float(paper) / (1 + slip) - (TICK if side == "BUY" else -TICK)
    assert np.isclose(touched, [series.close[i - 1], series.open[i]], rtol=1e-12, atol=0).any()
    assert np.isclose(ours, float(series.open[i]) * (1 + slip), rtol=1e-12, atol=0)

