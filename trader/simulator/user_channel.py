"""The `user` websocket channel: our orders' cumulative state, as Coinbase's user host sends it.

Served at `/ws/user` (the stand-in for wss://advanced-trade-ws-user.coinbase.com), which takes
the `user` and `heartbeats` channels. A `user` subscribe needs a valid JWT (any subscribe that
carries a JWT has it checked); a bad one gets `{"type":"error","message":"authentication
failure"}` and the connection stays open without the subscription. On success the connection
gets the open orders as `snapshot` events of at most 50 orders (the first frame with fewer ends
the snapshot), the cumulative `subscriptions` frame, then one `update` per order change. Each
connection numbers its frames from 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from trader.simulator import order_wire, wire
from trader.simulator.auth import JwtVerifier, Unauthorized
from trader.simulator.exchange import Exchange, Order
from trader.simulator.order_faults import FaultDice
from trader.simulator.websocket import serve_connection

log = logging.getLogger(__name__)

SUBSCRIBE_DEADLINE_S = 5.0
SNAPSHOT_FRAME_ORDERS = 50
CHANNELS = ("user", "heartbeats")


@dataclass(eq=False)  # identity-hashed: connections live in a set
class UserConnection:
    ws: web.WebSocketResponse
    transport: Any
    products: set[str] | None = None  # None: no user subscription; empty: every product
    heartbeats: bool = False
    sequence_num: int = 0
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=100_000))

    def wants(self, order: Order) -> bool:
        return self.products is not None and (
            not self.products or order.request.product_id in self.products)


class UserChannel:
    """Serves `/ws/user`; hears every order change from the exchange."""

    def __init__(self, exchange: Exchange, verifier: JwtVerifier, dice: FaultDice,
                 clock: Callable[[], int]) -> None:
        self.exchange = exchange
        self.connections: set[UserConnection] = set()
        self.counters: Counter[str] = Counter()
        self._verifier = verifier
        self._dice = dice
        self._clock = clock
        exchange.listen(self._on_order)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The websocket handler."""
        return await serve_connection(request, self.connections, self.counters, UserConnection,
                                      self._receive_loop, self._send_loop)

    def heartbeat(self, time_ns: int, event: dict[str, Any]) -> None:
        """The simulator's heartbeat of this second, for connections subscribed to it."""
        for connection in self.connections:
            if connection.heartbeats:
                self._enqueue(connection, ("heartbeats", time_ns, [event]))

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.ws.close()

    async def drop_all(self) -> int:
        """Cut every connection now (a control for tests); how many there were."""
        connections = list(self.connections)
        for connection in connections:
            self.counters["drops"] += 1
            await self._drop(connection)
        return len(connections)

    # ---- receiving --------------------------------------------------------------------------

    async def _receive_loop(self, connection: UserConnection) -> None:
        ws = connection.ws
        try:
            async with asyncio.timeout(SUBSCRIBE_DEADLINE_S):
                message = await ws.receive()
        except TimeoutError:
            await ws.close(code=1008, message=b"subscribe within 5 s")
            return
        while message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self._on_client_message(connection, message.data)
            message = await ws.receive()

    def _on_client_message(self, connection: UserConnection, data: str | bytes) -> None:
        try:
            request = orjson.loads(data)
            kind, channel = request["type"], request["channel"]
            products = {str(p) for p in request.get("product_ids") or []}
            token = request.get("jwt")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self._error(connection, "failure to subscribe")
        if kind not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            return self._error(connection, "failure to subscribe")
        if kind == "subscribe" and (token is not None or channel == "user"):
            try:
                self._verifier.verify_ws(token if isinstance(token, str) else "")
            except Unauthorized as exc:
                log.info("simulator: user channel subscribe refused: %s", exc.reason)
                self.counters["auth_failures"] += 1
                return self._error(connection, "authentication failure")
        if channel == "heartbeats":
            connection.heartbeats = kind == "subscribe"
        elif kind == "subscribe":
            connection.products = (connection.products or set()) | products
            self._snapshot(connection)
        else:
            remaining = (connection.products or set()) - products
            connection.products = remaining if products and remaining else None
        self._ack(connection)

    def _snapshot(self, connection: UserConnection) -> None:
        orders = [o for o in self.exchange.open_orders() if connection.wants(o)]
        now_ns = self._clock()
        for start in range(0, len(orders) + 1, SNAPSHOT_FRAME_ORDERS):
            chunk = orders[start:start + SNAPSHOT_FRAME_ORDERS]
            self._enqueue(connection, ("user", now_ns, [order_wire.user_event("snapshot", chunk)]))

    def _ack(self, connection: UserConnection) -> None:
        subscriptions: dict[str, list[str]] = {}
        if connection.products is not None:
            subscriptions["user"] = sorted(connection.products)
        if connection.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        event = wire.subscriptions_event(subscriptions)
        self._enqueue(connection, ("subscriptions", self._clock(), [event]))

    def _error(self, connection: UserConnection, message: str) -> None:
        self._enqueue(connection, ("raw", wire.error_frame(message)))

    # ---- sending ----------------------------------------------------------------------------

    def _on_order(self, order: Order) -> None:
        event = None
        for connection in self.connections:
            if connection.wants(order):
                event = event or order_wire.user_event("update", [order])
                self._enqueue(connection, ("user", self._clock(), [event]))

    def _enqueue(self, connection: UserConnection, item: tuple) -> None:
        try:
            connection.queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("simulator: a user-channel client is too slow; closing its connection")
            asyncio.get_running_loop().create_task(connection.ws.close())

    async def _send_loop(self, connection: UserConnection) -> None:
        ws = connection.ws
        while not ws.closed:
            item = await connection.queue.get()
            if item[0] == "raw":
                await ws.send_str(item[1].decode())
                continue
            channel, time_ns, events = item
            if channel == "user" and self._dice.roll("user_drop"):
                self.counters["drops"] += 1
                await self._drop(connection)
                return
            frame = wire.envelope(channel, connection.sequence_num, time_ns, events)
            connection.sequence_num += 1
            await ws.send_str(frame.decode())

    async def _drop(self, connection: UserConnection) -> None:
        """Cut the connection: with a close frame or, as often, an abrupt reset."""
        if self._dice.choice((0, 1)) or connection.transport is None:
            await connection.ws.close(code=1011, message=b"simulated drop")
        else:
            connection.transport.abort()
