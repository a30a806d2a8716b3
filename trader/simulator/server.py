"""The simulator's aiohttp server: Coinbase market-data websocket and public REST on loopback.

Exchange time runs `speed` times faster than the wall clock from `start_s`. Every simulated
second the clock task emits, in time order, each product's trades of that second
(`market_trades`, newest first), a `ticker` per product that traded, and one `heartbeats`
frame. Each connection numbers its frames with its own `sequence_num`, from 0.
Faults are drawn per frame from a seeded generator, so a run is reproducible.
The private side (orders, accounts, the user channel: orders_api.py) is fed every replayed
trade, to fill resting orders, and every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from trader.simulator import wire
from trader.simulator.orders_api import PrivateApi, PrivateConfig
from trader.simulator.tape import Tape
from trader.simulator.websocket import serve_connection

log = logging.getLogger(__name__)

SUBSCRIBE_DEADLINE_S = 5.0
SNAPSHOT_TRADES = 100
CANDLES_PER_REQUEST = 350
MARKET_CHANNELS = ("heartbeats", "market_trades", "ticker")


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault rates: per data frame, except stalls (per simulated second)."""

    seed: int = 0
    drop_rate: float = 0.0  # close the connection instead of sending
    gap_rate: float = 0.0  # lose the frame; its sequence number is skipped
    malformed_rate: float = 0.0  # send broken JSON in its place
    oversized_rate: float = 0.0  # send a frame of `oversized_bytes` in its place
    oversized_bytes: int = 12 * 2**20
    stall_rate: float = 0.0  # pause a connection's sending for `stall_s` wall seconds
    stall_s: float = 0.0
    rest_error_rate: float = 0.0  # per public REST request: answer 503 instead


@dataclass
class FaultCounts:
    drops: int = 0
    gaps: int = 0
    malformed: int = 0
    oversized: int = 0
    stalls: int = 0


@dataclass(eq=False)  # identity-hashed: connections live in a set
class Connection:
    """One websocket client: its subscriptions, its sequence counter and its send queue."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    sequence_num: int = 0
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=100_000))

    def wants(self, channel: str, product_id: str | None = None) -> bool:
        products = self.subscriptions.get(channel)
        return products is not None and (product_id is None or product_id in products)


class Simulator:
    """Replays tapes over the Coinbase wire protocol; see the module docstring."""

    def __init__(self, tapes: dict[str, Tape], candles: dict[str, Any], start_s: int,
                 speed: float = 1.0, faults: Faults = Faults(), public_rps: float = 10.0,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 private: PrivateConfig | None = None) -> None:
        self.tapes = tapes
        self.candles = candles  # product id -> CandleArrays of 1-minute candles
        self.start_ns = start_s * 1_000_000_000
        self.speed = speed
        self.faults = faults
        self.fault_counts = FaultCounts()
        self.connections: set[Connection] = set()
        self.counters = {"connections": 0, "frames": 0, "rest_requests": 0, "rate_limited": 0,
                         "server_errors": 0}
        self._rng = random.Random(faults.seed)
        self._monotonic_ns = monotonic_ns
        self._wall0_ns = monotonic_ns()
        self._next_second = start_s + 1
        self._heartbeat_counter = 0
        self._bucket = _TokenBucket(public_rps, monotonic_ns)
        self._runner: web.AppRunner | None = None
        self._clock_task: asyncio.Task | None = None
        products = [self._product_body(p) for p, tape in tapes.items() if len(tape)]
        self.private = PrivateApi(private or PrivateConfig(), products, self.now_ns)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: a free port); returns the base URL, e.g. http://127.0.0.1:N."""
        app = web.Application()
        app.router.add_get("/", self._websocket)
        prefix = "/api/v3/brokerage"
        app.router.add_get(f"{prefix}/time", self._time)
        app.router.add_get(f"{prefix}/market/products", self._products)
        app.router.add_get(f"{prefix}/market/products/{{product_id}}", self._product)
        app.router.add_get(f"{prefix}/market/products/{{product_id}}/candles", self._candles)
        self.private.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        bound = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()
        self._wall0_ns = self._monotonic_ns()
        self._clock_task = asyncio.create_task(self._run_clock(), name="sim-clock")
        return f"http://{host}:{bound}"

    async def close(self) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
        for connection in list(self.connections):
            await connection.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def now_ns(self) -> int:
        """Exchange time now."""
        elapsed = self._monotonic_ns() - self._wall0_ns
        return self.start_ns + int(elapsed * self.speed)

    # ---- the clock: one batch of frames per simulated second --------------------------------

    async def _run_clock(self) -> None:
        tick_s = min(0.05, max(0.001, 1.0 / self.speed))
        while True:
            now_s = self.now_ns() // 1_000_000_000
            while self._next_second <= now_s:
                self._emit_second(self._next_second)
                self._next_second += 1
            await asyncio.sleep(tick_s)

    def _emit_second(self, second: int) -> None:
        start_ns, end_ns = (second - 1) * 1_000_000_000, second * 1_000_000_000
        for tape in self.tapes.values():
            lo, hi = tape.span(start_ns, end_ns)
            if hi > lo:
                self._publish_trades(tape, lo, hi)
        self._heartbeat_counter += 1
        uptime_s = (self._monotonic_ns() - self._wall0_ns) / 1e9
        event = wire.heartbeat_event(end_ns, self._heartbeat_counter, uptime_s)
        for connection in self.connections:
            if connection.wants("heartbeats"):
                self._enqueue(connection, "heartbeats", end_ns, [event])
        self.private.user.heartbeat(end_ns, event)
        if self.faults.stall_rate and self._rng.random() < self.faults.stall_rate:
            self._stall_one()

    def _publish_trades(self, tape: Tape, lo: int, hi: int) -> None:
        trades = [self._trade(tape, i) for i in range(hi - 1, lo - 1, -1)]  # newest first
        time_ns = int(tape.time_ns[hi - 1])
        ticker = wire.ticker_event("update", tape.product_id, float(tape.price[hi - 1]), 0.01,
                                   float(tape.size[lo:hi].sum()))
        for connection in self.connections:
            if connection.wants("market_trades", tape.product_id):
                self._enqueue(connection, "market_trades", time_ns,
                              [wire.trade_event("update", trades)])
            if connection.wants("ticker", tape.product_id):
                self._enqueue(connection, "ticker", time_ns, [ticker])
        self.private.exchange.on_trades(tape.product_id, tape.time_ns[lo:hi],
                                        tape.price[lo:hi], tape.size[lo:hi])

    def _trade(self, tape: Tape, i: int) -> dict[str, str]:
        return wire.trade(tape.product_id, tape.trade_id(i), float(tape.price[i]),
                          float(tape.size[i]), int(tape.time_ns[i]), bool(tape.side[i]))

    def _stall_one(self) -> None:
        if self.connections:
            connection = self._rng.choice(sorted(self.connections, key=id))
            self.fault_counts.stalls += 1
            connection.queue.put_nowait(("stall", self.faults.stall_s))

    def _enqueue(self, connection: Connection, channel: str, time_ns: int,
                 events: list[Any]) -> None:
        try:
            connection.queue.put_nowait((channel, time_ns, events))
        except asyncio.QueueFull:
            log.warning("simulator: a client is too slow; closing its connection")
            asyncio.get_running_loop().create_task(connection.ws.close())

    # ---- websocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        return await serve_connection(request, self.connections, self.counters, Connection,
                                      self._receive_loop, self._send_loop)

    async def _receive_loop(self, connection: Connection) -> None:
        ws = connection.ws
        try:
            async with asyncio.timeout(SUBSCRIBE_DEADLINE_S):
                first = await ws.receive()
        except TimeoutError:
            await ws.close(code=1008, message=b"subscribe within 5 s")
            return
        message = first
        while message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self._on_client_message(connection, message.data)
            message = await ws.receive()

    def _on_client_message(self, connection: Connection, data: str | bytes) -> None:
        try:
            request = orjson.loads(data)
            kind, channel = request["type"], request["channel"]
            products = [str(p) for p in request.get("product_ids") or []]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            connection.queue.put_nowait(("raw", wire.error_frame("failure to subscribe")))
            return
        if kind not in ("subscribe", "unsubscribe") or channel not in MARKET_CHANNELS:
            connection.queue.put_nowait(("raw", wire.error_frame("failure to subscribe")))
            return
        if kind == "subscribe":
            self._subscribe(connection, channel, products)
        else:
            remaining = connection.subscriptions.get(channel, set()) - set(products)
            if products and remaining:
                connection.subscriptions[channel] = remaining
            else:
                connection.subscriptions.pop(channel, None)
        acks = {name: sorted(p) if name != "heartbeats" else ["heartbeats"]
                for name, p in connection.subscriptions.items()}
        self._enqueue(connection, "subscriptions", self.now_ns(),
                      [wire.subscriptions_event(acks)])

    def _subscribe(self, connection: Connection, channel: str, products: list[str]) -> None:
        known = [p for p in products if p in self.tapes]
        connection.subscriptions.setdefault(channel, set()).update(known)
        now_ns = self.now_ns()
        for product_id in known:
            tape = self.tapes[product_id]
            _, hi = tape.span(0, (self._next_second - 1) * 1_000_000_000)
            if hi == 0:
                continue
            if channel == "market_trades":
                oldest = max(0, hi - SNAPSHOT_TRADES)
                recent = [self._trade(tape, i) for i in range(hi - 1, oldest - 1, -1)]
                self._enqueue(connection, channel, now_ns, [wire.trade_event("snapshot", recent)])
            elif channel == "ticker":
                event = wire.ticker_event("snapshot", product_id, float(tape.price[hi - 1]),
                                          0.01, 0.0)
                self._enqueue(connection, channel, now_ns, [event])

    async def _send_loop(self, connection: Connection) -> None:
        ws = connection.ws
        while not ws.closed:
            item = await connection.queue.get()
            if item[0] == "stall":
                await asyncio.sleep(item[1])
            elif item[0] == "raw":
                await ws.send_str(item[1].decode())
            elif await self._send_frame(connection, *item) is False:
                return

    async def _send_frame(self, connection: Connection, channel: str, time_ns: int,
                          events: list[Any]) -> bool:
        """Send one data frame, or the fault drawn for it; False when the connection ends."""
        faults, rng, counts = self.faults, self._rng, self.fault_counts
        sequence_num = connection.sequence_num
        connection.sequence_num += 1
        if channel != "subscriptions":
            if faults.drop_rate and rng.random() < faults.drop_rate:
                counts.drops += 1
                await _drop(connection, rng)
                return False
            if faults.gap_rate and rng.random() < faults.gap_rate:
                counts.gaps += 1
                return True
            if faults.malformed_rate and rng.random() < faults.malformed_rate:
                counts.malformed += 1
                frame = wire.envelope(channel, sequence_num, time_ns, events)
                await connection.ws.send_str(_break(frame, rng))
                return True
            if faults.oversized_rate and rng.random() < faults.oversized_rate:
                counts.oversized += 1
                padding = [{"padding": "x" * faults.oversized_bytes}]
                await connection.ws.send_str(
                    wire.envelope("l2_data", sequence_num, time_ns, padding).decode())
                return True
        frame = wire.envelope(channel, sequence_num, time_ns, events)
        await connection.ws.send_str(frame.decode())
        self.counters["frames"] += 1
        return True

    # ---- public REST ------------------------------------------------------------------------

    def _limited(self) -> web.Response | None:
        self.counters["rest_requests"] += 1
        if self._bucket.take():
            return None
        self.counters["rate_limited"] += 1
        return web.Response(status=429, body=wire.RATE_LIMITED, content_type="application/json")

    def _limited_or_failing(self) -> web.Response | None:
        if (limited := self._limited()) is not None:
            return limited
        rate = self.faults.rest_error_rate
        if not rate or self._rng.random() >= rate:
            return None
        self.counters["server_errors"] += 1
        return web.Response(status=503, content_type="application/json",
                            body=wire.rest_error("UNAVAILABLE", "simulated outage"))

    async def _time(self, request: web.Request) -> web.Response:
        now_ns = self.now_ns()
        body = {"iso": wire.rfc3339(now_ns, 3), "epochSeconds": str(now_ns // 10**9),
                "epochMillis": str(now_ns // 10**6)}
        return web.json_response(body, dumps=lambda b: orjson.dumps(b).decode())

    async def _products(self, request: web.Request) -> web.Response:
        if (limited := self._limited()) is not None:
            return limited
        products = [self._product_body(p) for p in self.tapes]
        body = {"products": products, "num_products": len(products)}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _product(self, request: web.Request) -> web.Response:
        if (limited := self._limited()) is not None:
            return limited
        product_id = request.match_info["product_id"]
        if product_id not in self.tapes:
            return _not_found(product_id)
        body = orjson.dumps(self._product_body(product_id))
        return web.Response(body=body, content_type="application/json")

    def _product_body(self, product_id: str) -> dict[str, Any]:
        tape = self.tapes[product_id]
        _, hi = tape.span(0, self.now_ns())
        return wire.product(product_id, float(tape.price[max(hi - 1, 0)]))

    async def _candles(self, request: web.Request) -> web.Response:
        if (limited := self._limited_or_failing()) is not None:
            return limited
        product_id = request.match_info["product_id"]
        if product_id not in self.candles:
            return _not_found(product_id)
        try:
            start_s, end_s, granularity_s = _candle_query(request.query)
        except ValueError as exc:
            return web.Response(status=400, content_type="application/json",
                                body=wire.rest_error("INVALID_ARGUMENT", str(exc)))
        closed_before_s = self.now_ns() // 1_000_000_000
        rows = _fold_candles(self.candles[product_id], start_s, min(end_s, closed_before_s),
                             granularity_s)
        body = orjson.dumps({"candles": [wire.candle(*row) for row in reversed(rows)]})
        return web.Response(body=body, content_type="application/json")


class _TokenBucket:
    def __init__(self, rate_per_s: float, monotonic_ns: Callable[[], int]) -> None:
        self._rate = rate_per_s
        self._tokens = rate_per_s
        self._clock = monotonic_ns
        self._last = monotonic_ns()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) / 1e9 * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def _candle_query(query: Any) -> tuple[int, int, int]:
    try:
        start_s, end_s = int(query["start"]), int(query["end"])
        granularity_s = wire.GRANULARITIES[query["granularity"]]
    except (KeyError, ValueError):
        raise ValueError("start, end (unix seconds) and granularity are required") from None
    if end_s <= start_s:
        raise ValueError("end must be after start")
    if (end_s - start_s) // granularity_s > CANDLES_PER_REQUEST:
        raise ValueError("number of candles requested should be less than 350")
    return start_s, end_s, granularity_s


def _fold_candles(candles: Any, start_s: int, end_s: int,
                  granularity_s: int) -> list[tuple[int, float, float, float, float, float]]:
    """Buckets of `granularity_s` from 1-minute candles: complete buckets with trades only."""
    first = -(-start_s // granularity_s) * granularity_s
    last = (end_s // granularity_s) * granularity_s  # buckets must end by end_s
    window = candles.between(first, last)
    rows: list[tuple[int, float, float, float, float, float]] = []
    for i in range(len(window)):
        bucket = int(window.time_s[i]) // granularity_s * granularity_s
        o, h, lo, c, v = (float(a[i]) for a in (window.open, window.high, window.low,
                                                 window.close, window.volume))
        if rows and rows[-1][0] == bucket:
            b = rows[-1]
            rows[-1] = (bucket, b[1], max(b[2], h), min(b[3], lo), c, b[5] + v)
        else:
            rows.append((bucket, o, h, lo, c, v))
    return rows


def _not_found(product_id: str) -> web.Response:
    return web.Response(status=404, content_type="application/json",
                        body=wire.rest_error("NOT_FOUND", f"Product {product_id} not supported"))


def _break(frame: bytes, rng: random.Random) -> str:
    """A frame damaged the ways a broken proxy or a bug would: cut short or with bad values."""
    text = frame.decode()
    choice = rng.randrange(3)
    if choice == 0:
        return text[: rng.randrange(1, max(2, len(text) - 1))]
    if choice == 1:
        return text.replace('"price":"', '"price":"x', 1).replace('"sequence_num"', '"seq"', 1)
    return "\x00" + text[1:]


async def _drop(connection: Connection, rng: random.Random) -> None:
    """End a connection: half the time with a close frame, half with an abrupt reset."""
    if rng.random() < 0.5 or connection.transport is None:
        await connection.ws.close(code=1011, message=b"simulated drop")
    else:
        connection.transport.abort()
