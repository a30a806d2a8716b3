"""Order latency: from the frame that closes a bar to the order request written to the socket.

Run: .venv/bin/python -m benchmarks --only order_latency [--quick]

Everything real, in one process on uvloop: the daemon's own wiring (`trader.daemon.app.Daemon`
in live mode, built from a config file, never `run()`), fed frame bytes in the Coinbase wire format
through `MarketFeed.on_raw_frame`, the method the websocket reader calls for every frame:
parse -> Engine -> Market (held trades folded, the minute closed for 50 products, windows
pushed) -> Selector (top 50 by quote volume over 60 bars) -> StrategyRunner with a benchmark
strategy (sma + ema; ENTER_LONG where the bar's volume carries a marker) -> Trading (risk,
money, uuid5 id, registry) -> LiveExecution.submit -> its sender task: the journal intent
(`fdatasync` on the real disk, in a temp dir) -> PrivateRest.create_order (a fresh ES256 JWT
from coinbase-advanced-py) -> aiohttp on a kept-alive connection. The exchange is the
simulator's order side, `trader sim --key-file` in a child process, so its work after the
write does not compete for this loop; the daemon's user channel runs against it too.

t0: just before the closing frame's bytes enter `on_raw_frame`. t1: right after the request's
bytes went to the transport: `StreamWriter._writelines`/`_write` are wrapped, and uvloop's
`transport.write` tries the send(2) at once, so the bytes are in the kernel's socket buffer.
aiohttp's trace signals would time earlier: on Python 3.11 the headers are buffered and go out
with the body in a task of their own one loop pass later; `on_request_headers_sent` fires
before anything is written and `on_request_chunk_sent` just before that write.

Each bar: one market_trades frame per product inside the minute (untimed; the product whose
turn it is, bar % 50, trades a marked size), an idle pause (the loop and the disk are quiet
before a close, as in the daemon), then the closing frame, timed: a heartbeat past the
minute's end + close_grace_ms on even bars, a market_trades frame of another product past it
on odd ones. Reset between bars: once the order is OPEN at the exchange, `cancel_all()` and
wait until the registry and the live book hold no working order, so the next product can
enter (one position per product, max_open_positions 3). The private pacer (30/s) is checked
free before each close, so it never sleeps inside the measured span; the bench raises its
rate so waiting for it does not dominate the run time (its work on the path, a lock and a
clock read, is unchanged).

First, untimed: a machine probe (a JWT and a journal-sized write + fdatasync, back to back and
after the idle pause: on a shared VM, work that follows a quiet spell runs several times
slower, and a bar close always follows one); kernels, indicators and the strategy compiled or
loaded from cache; 80 warm-up bars (the selector ranks from bar 60, so about 20 orders). Then
the measured phases, 600 closes each (--quick: 60):
1. headline: only t0 and t1 probed, each close after 20 ms of quiet;
2. the same with no pause before the close (the loop idle only while the exchange answers);
3. breakdown: stamps at the stage edges too (instance wrappers, about 1 us each);
4. the named baseline: `PrivateRest.create_order` alone on the same session and connection
   (same client order id each time: the simulator answers with the existing order), from the
   call to the write: sending an order with no market data, strategy, trading core, queue hop
   or journal in front of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import uvloop
from aiohttp.http_writer import StreamWriter
from figures import Figure, report

from trader import config as cfg
from trader import kernels
from trader.coinbase import auth
from trader.coinbase.rest import Pacer, PublicRest
from trader.daemon.app import Daemon
from trader.execution.live import LiveExecution
from trader.signals import indicators
from trader.simulator import wire
from trader.simulator.run import bundled_sources, spawn
from trader.strategy import LoadedStrategy, load_strategy
from trader.trading.registry import client_order_id
from trader.types import OrderIntent, OrderKind, OrderType, Side, TimeInForce

MINUTE_NS = 60 * 10**9
GRACE_MS = 1500
MARK_SIZE = 1000.0  # the entering product's volume in its minute; everyone else trades 1
WARMUP_BARS = 80
ORDER_PATH = b"POST /api/v3/brokerage/orders "
TARGET_P50_US, TARGET_P99_US = 300.0, 2000.0
PRODUCTS = 50
BARS, QUICK_BARS = 600, 60  # measured closes per phase
IDLE_MS = 20.0  # quiet before each closing frame

MARKER = '''
from trader.strategy import (CLOSE, ENTER_LONG, HOLD, NAN, VOLUME, Param, columns, ema,
                             njit, param_index, sma)

INTERVAL = "1m"
PARAMS = {"n": Param(20, low=2, high=200), "marker": Param(500.0, low=0.0)}
P = param_index(PARAMS)


def indicators(p):
    return {"avg": sma(p[P.n]), "trend": ema(p[P.n])}


C = columns(indicators, PARAMS)


@njit(cache=True)
def decide(now, prev, bars, p):
    close = bars[-1, CLOSE]
    score = max(-1.0, min(1.0, 100.0 * (close - now[C.avg]) / close))
    if bars[-1, VOLUME] >= p[P.marker]:  # the bench marks one product per bar
        return 1.0, ENTER_LONG, NAN, NAN
    return score, HOLD, NAN, NAN
'''


# ---- the exchange and the daemon ----------------------------------------------------------

def start_simulator(workdir: Path, products: list[str]) -> tuple[subprocess.Popen, str]:
    """`trader sim` with the order side open to a fresh key, each product on a bundled day."""
    files = list(bundled_sources().values())
    data = [arg for i, p in enumerate(products) for arg in ("--data", f"{p}={files[i % 3]}")]
    return spawn([sys.executable, "-m", "trader", "sim", "--key-file", str(workdir / "key.json"),
                  "--balance", "USD=100000000", *data])


def config_text(workdir: Path, url: str, products: list[str]) -> str:
    ws = url.replace("http://", "ws://")
    return f"""
[daemon]
mode = "live"
state_dir = "{workdir / 'state'}"
strategies_dir = "{workdir / 'strategies'}"
[coinbase]
ws_url = "{ws}/"
user_ws_url = "{ws}/ws/user"
rest_url = "{url}"
key_file = "{workdir / 'key.json'}"
private_rest_rps = 30.0
[market]
products = [{', '.join(f'"{p}"' for p in products)}]
close_grace_ms = {GRACE_MS}
warmup_bars = 0
[selector]
top_n = {len(products)}
[strategies.marker]
interval = "1m"
"""


def build_daemon(workdir: Path, url: str, products: list[str]) -> Daemon:
    (workdir / "strategies").mkdir()
    (workdir / "strategies" / "marker.py").write_text(MARKER)
    path = workdir / "config.toml"
    path.write_text(config_text(workdir, url, products))
    config = cfg.parse(path.read_bytes())
    if not isinstance(config, cfg.Config):
        raise RuntimeError(f"config: {config}")
    loaded = load_strategy(workdir / "strategies" / "marker.py", "marker",
                           config.strategies["marker"])
    if not isinstance(loaded, LoadedStrategy):
        raise RuntimeError(f"strategy: {loaded}")
    return Daemon(path, config, {}, {"marker": loaded})


# ---- frames -------------------------------------------------------------------------------

class Tape:
    """Wire frames of one market-data connection: consecutive sequence numbers, consecutive
    trade ids per product, exchange time one minute per bar."""

    def __init__(self, products: list[str], prices: dict[str, float], start_ns: int) -> None:
        self.products, self.prices, self.start_ns = products, prices, start_ns
        self.seq = 0
        self.trade_ids = dict.fromkeys(products, 1_000)

    def _frame(self, channel: str, time_ns: int, events: list[Any]) -> bytes:
        raw = wire.envelope(channel, self.seq, time_ns, events)
        self.seq += 1
        return raw

    def heartbeat(self, time_ns: int) -> bytes:
        return self._frame("heartbeats", time_ns, [wire.heartbeat_event(time_ns, self.seq, 1.0)])

    def trade(self, product: str, time_ns: int, size: float) -> bytes:
        self.trade_ids[product] += 1
        print_ = wire.trade(product, self.trade_ids[product], self.prices[product], size,
                            time_ns, True)
        return self._frame("market_trades", time_ns, [wire.trade_event("update", [print_])])

    def tickers(self, time_ns: int, bids: dict[str, float]) -> list[bytes]:
        return [self._frame("ticker", time_ns, [wire.ticker_event("update", p, bid + 0.01,
                                                                  0.01, 1e6)])
                for p, bid in bids.items()]

    def minute_start_ns(self, bar: int) -> int:
        return self.start_ns + bar * MINUTE_NS

    def inside(self, bar: int) -> list[bytes]:
        """One trade frame per product inside the bar's minute; the marked one trades big."""
        start, n = self.minute_start_ns(bar), len(self.products)
        return [self.trade(p, start + 2 * 10**9 + i * (55 * 10**9 // n),
                           MARK_SIZE if i == bar % n else 1.0)
                for i, p in enumerate(self.products)]

    def closer(self, bar: int) -> bytes:
        """The frame that closes the bar: a heartbeat (even bars) or a trade (odd bars)."""
        past = self.minute_start_ns(bar + 1) + GRACE_MS * 1_000_000 + 5_000_000
        if bar % 2 == 0:
            return self.heartbeat(past)
        n = len(self.products)
        return self.trade(self.products[(bar + n // 2) % n], past, 1.0)


# ---- probes -------------------------------------------------------------------------------

STAGES = ("t0", "strat0", "strat1", "submit", "journal0", "journal1", "auth0", "auth1",
          "write0", "t1")


class Probe:
    """perf_counter_ns stamps of one measured bar close; t1 comes from the wrapped writer."""

    def __init__(self) -> None:
        self.stamps: dict[str, int] = {}
        self.armed = False
        self.written = asyncio.Event()

    def arm(self) -> None:
        self.stamps = {}
        self.written.clear()
        self.armed = True

    def stamp(self, name: str) -> None:
        if self.armed and name not in self.stamps:
            self.stamps[name] = time.perf_counter_ns()

    def is_order(self, first: Any) -> bool:
        return self.armed and bytes(first[:len(ORDER_PATH)]) == ORDER_PATH

    def before_write(self) -> None:
        self.stamps["write0"] = time.perf_counter_ns()

    def after_write(self) -> None:
        self.stamps["t1"] = time.perf_counter_ns()
        self.armed = False
        self.written.set()


def patch_writer(probe: Probe) -> Callable[[], None]:
    """Stamp t1 right after the bytes of POST /orders were handed to the transport; returns
    the function that puts aiohttp's writer back."""
    writelines, write = StreamWriter._writelines, StreamWriter._write

    def _writelines(self: StreamWriter, chunks: Any) -> None:
        chunks = tuple(chunks)
        if not probe.is_order(chunks[0]):
            return writelines(self, chunks)
        probe.before_write()
        writelines(self, chunks)
        probe.after_write()

    def _write(self: StreamWriter, chunk: Any) -> None:
        if not probe.is_order(chunk):
            return write(self, chunk)
        probe.before_write()
        write(self, chunk)
        probe.after_write()

    def restore() -> None:
        StreamWriter._writelines, StreamWriter._write = writelines, write

    StreamWriter._writelines = _writelines  # type: ignore[method-assign]
    StreamWriter._write = _write  # type: ignore[method-assign]
    return restore


def wrap(obj: Any, name: str, before: str, after: str | None, probe: Probe) -> None:
    """An instance attribute shadowing obj.name that stamps around the call."""
    inner: Callable[..., Any] = getattr(obj, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        probe.stamp(before)
        try:
            return inner(*args, **kwargs)
        finally:
            if after is not None:
                probe.stamp(after)

    setattr(obj, name, wrapped)


def instrument(daemon: Daemon, live: LiveExecution, probe: Probe, on: bool) -> None:
    """Stage probes on (breakdown phase) or off (headline and floor)."""
    targets = [(daemon.parts.runner, "on_bar_close", "strat0", "strat1"),
               (live, "submit", "submit", None),
               (live.book, "journal_intent", "journal0", "journal1")]
    for obj, name, before, after in targets:
        if name in vars(obj):
            delattr(obj, name)
        if on:
            wrap(obj, name, before, after, probe)
    client = live.client()  # it holds the bound method it was built with
    client._authorize = live._authorize
    if on:
        wrap(client, "_authorize", "auth0", "auth1", probe)


# ---- the run ------------------------------------------------------------------------------

def machine_probe(workdir: Path, url: str, idle_s: float, count: int = 100) -> dict[str, Any]:
    """Median us of two fixed pieces of the path (a JWT; a journal-sized write + fdatasync
    in the same directory), back to back and each after `idle_s` of sleep: how much this
    machine slows the work that follows a quiet spell."""
    creds = auth.load_credentials(str(workdir / "key.json"))
    assert creds is not None
    fd = os.open(workdir / "probe.journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = b'{"t":"intent","cid":"' + b"0" * 36 + b'","intent":{' + b"x" * 420 + b"}}\n"

    def sync() -> None:
        os.write(fd, line)
        os.fdatasync(fd)

    pieces = {"JWT": lambda: auth.rest_jwt(creds, "POST", f"{url}/api/v3/brokerage/orders"),
              "write + fdatasync": sync}
    out = {}
    try:
        for name, fn in pieces.items():
            for _ in range(10):
                fn()
            took = {"back to back": [], "after quiet": []}
            for pause in ("back to back", "after quiet"):
                for _ in range(count):
                    if pause == "after quiet":
                        time.sleep(idle_s)
                    start = time.perf_counter_ns()
                    fn()
                    took[pause].append(time.perf_counter_ns() - start)
            out[name] = {k: float(np.median(v)) / 1e3 for k, v in took.items()}
    finally:
        os.close(fd)
    return out


async def until(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the exchange (is the simulator up?)")
        await asyncio.sleep(0.001)


async def pacer_free(pacer: Pacer) -> None:
    delay = pacer._next_s - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay + 0.0005)


class Bench:
    def __init__(self, daemon: Daemon, tape: Tape, probe: Probe, idle_s: float) -> None:
        self.daemon, self.tape, self.probe, self.idle_s = daemon, tape, probe, idle_s
        self.live: LiveExecution = daemon.parts.execution
        self.bar = 0

    def release_repairs(self) -> None:
        """The partial first minute waits for REST in the daemon; keep it as built."""
        market = self.daemon.parts.market
        for span in market.repairs_needed():
            market.apply_repair(span, None)

    async def settle(self) -> None:
        """Wait for the bar's order at the exchange, cancel it, and until nothing works."""
        trading, live = self.daemon.parts.trading, self.live
        await until(lambda: all(o.order_id for o in live.book.working()))
        trading.cancel_all()
        await until(lambda: not trading.registry.open_orders() and live._outbox.empty()
                    and live._cancels.empty() and not live.book.working())

    async def one_bar(self, timed: bool) -> dict[str, int] | None:
        feed = self.daemon.parts.market_feed
        for raw in self.tape.inside(self.bar):
            feed.on_raw_frame(raw)
        closer = self.tape.closer(self.bar)
        await asyncio.sleep(self.idle_s)
        await pacer_free(self.live.pacer)
        intents = self.daemon.parts.trading.counters["intents_entry"]
        self.probe.arm()
        self.probe.stamps["t0"] = time.perf_counter_ns()
        feed.on_raw_frame(closer)
        self.bar += 1
        if self.daemon.parts.trading.counters["intents_entry"] == intents:  # warm-up: no rank yet
            self.probe.armed = False
            self.release_repairs()
            if timed:
                raise RuntimeError(f"bar {self.bar}: no order (refused: "
                                 f"{dict(self.daemon.parts.trading.last_refusal)})")
            return None
        async with asyncio.timeout(5):
            await self.probe.written.wait()
        stamps = dict(self.probe.stamps, heartbeat=(self.bar - 1) % 2 == 0)
        await self.settle()
        return stamps

    async def phase(self, bars: int, timed: bool = True) -> list[dict[str, int]]:
        out = []
        for _ in range(bars):
            stamps = await self.one_bar(timed)
            if stamps is not None:
                out.append(stamps)
        return out

    async def floor(self, count: int) -> list[int]:
        """PrivateRest.create_order alone, from the call to the write (named baseline)."""
        rest = self.live.client()
        bar_ns = self.tape.start_ns - MINUTE_NS
        product = self.tape.products[0]
        intent = OrderIntent(
            "floor", product, Side.BUY, OrderKind.ENTRY, OrderType.LIMIT, Decimal("0.001"),
            None, Decimal(f"{self.tape.prices[product] / 2:.2f}"), True, TimeInForce.GTC,
            bar_ns, 0, client_order_id("floor/entry", product, bar_ns, 0), "floor")
        took = []
        for _ in range(count):
            await asyncio.sleep(self.idle_s)
            await pacer_free(self.live.pacer)
            self.probe.arm()
            start = time.perf_counter_ns()
            await rest.create_order(intent)
            took.append(self.probe.stamps["t1"] - start)
        return took


async def measure(url: str, workdir: Path, products: list[str], bars: int,
                  idle_s: float) -> dict[str, Any]:
    probe = Probe()
    restore = patch_writer(probe)
    try:
        return await measure_patched(url, workdir, products, bars, idle_s, probe)
    finally:
        restore()


async def measure_patched(url: str, workdir: Path, products: list[str], bars: int,
                          idle_s: float, probe: Probe) -> dict[str, Any]:
    machine = machine_probe(workdir, url, idle_s)
    daemon = build_daemon(workdir, url, products)
    kernels.warmup()
    indicators.warmup()
    daemon.parts.runner.warmup()
    live: LiveExecution = daemon.parts.execution
    task = asyncio.create_task(live.run(), name="live")
    try:
        await until(live.ready, timeout_s=30)
        async with aiohttp.ClientSession() as session:
            listed = await PublicRest(session, url, Pacer(10.0)).products()
        daemon.parts.trading.set_products(listed)
        live.pacer.rate_per_s = 1000.0  # see the module docstring
        prices = {p.product_id: float(p.price) for p in listed}
        minute_ns = time.time_ns() // MINUTE_NS * MINUTE_NS
        tape = Tape(products, prices, minute_ns)
        bench = Bench(daemon, tape, probe, idle_s)
        feed = daemon.parts.market_feed
        feed.on_raw_frame(tape.heartbeat(minute_ns + 500_000_000))  # starts the market clock
        for raw in tape.tickers(minute_ns + 600_000_000,
                                {p: round(prices[p] / 2, 2) for p in products}):
            feed.on_raw_frame(raw)  # bids at half the price: the orders rest, never fill
        await bench.phase(WARMUP_BARS, timed=False)
        instrument(daemon, live, probe, on=False)
        headline = await bench.phase(bars)
        bench.idle_s = 0.0
        hot = await bench.phase(bars)
        bench.idle_s = idle_s
        instrument(daemon, live, probe, on=True)
        breakdown = await bench.phase(bars)
        instrument(daemon, live, probe, on=False)
        live_log = logging.getLogger("trader.execution.live")
        level = live_log.level
        live_log.setLevel(logging.ERROR)  # the baseline's orders skip the journal on purpose
        try:
            floor = await bench.floor(bars)
        finally:
            live_log.setLevel(level)
        assert not feed.bad_frames and not daemon.parts.market.queue, (feed.bad_frames,)
        return {"machine": machine, "headline": headline, "hot": hot, "breakdown": breakdown,
                "floor": floor,
                "trading": dict(daemon.parts.trading.counters), "live": dict(live.counters),
                "journal_records": live.journal.records_written}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ---- figures ------------------------------------------------------------------------------

STAGE_NAMES = ("parse + market close (fold, close, windows, selector)",
               "strategies (2 indicators stepped + decide)",
               "trading core (signal -> risk -> intent -> registry)",
               "rest of the frame + queue and task hops to the sender",
               "journal intent (encode, write, fdatasync)",
               "order body + pacer",
               "JWT (ES256, coinbase-advanced-py)",
               "aiohttp: request -> transport.write (+ 1 task hop)",
               "transport.write (uvloop: send(2) on loopback)")


def figures_of(result: dict[str, Any], products: int, idle_ms: float) -> list[Figure]:
    head = np.array([s["t1"] - s["t0"] for s in result["headline"]]) / 1e3
    hot = np.array([s["t1"] - s["t0"] for s in result["hot"]]) / 1e3
    floor = np.array(result["floor"]) / 1e3
    edges = np.array([[s[k] for k in STAGES] for s in result["breakdown"]], dtype=np.int64)
    spans = np.diff(edges, axis=1) / 1e3
    what = f"closing frame -> order request written, {products} products, {len(head)} closes"
    alone = "PrivateRest.create_order alone"
    out = [
        Figure("trading", f"{what} after {idle_ms:g} ms of quiet, p50", float(np.median(head)),
               "µs", ("<", TARGET_P50_US), alone, float(np.median(floor)),
               higher_is_better=False),
        Figure("trading", "the same, p99", float(np.percentile(head, 99)), "µs",
               ("<", TARGET_P99_US), alone, float(np.percentile(floor, 99)),
               higher_is_better=False),
        Figure("trading", "the same with no pause before the close, p50",
               float(np.median(hot)), "µs", None, alone, float(np.median(floor)),
               higher_is_better=False),
    ]
    out += [Figure("trading", f"stage p50 (breakdown run): {name}",
                   float(np.median(spans[:, i])), "µs", higher_is_better=False)
            for i, name in enumerate(STAGE_NAMES)]
    out += [Figure("trading", f"this machine: {name} after {idle_ms:g} ms asleep (median)",
                   v["after quiet"], "µs", None, "back to back", v["back to back"],
                   higher_is_better=False)
            for name, v in result["machine"].items()]
    return out


def run(quick: bool) -> list[Figure]:
    bars = QUICK_BARS if quick else BARS
    products = [f"P{i:02d}-USD" for i in range(PRODUCTS)]
    with tempfile.TemporaryDirectory(prefix="bench-order-latency-") as tmp:
        workdir = Path(tmp)
        proc, url = start_simulator(workdir, products)
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(measure(url, workdir, products, bars, IDLE_MS / 1e3))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return figures_of(result, PRODUCTS, IDLE_MS)


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
