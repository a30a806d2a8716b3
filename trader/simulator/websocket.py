"""One websocket connection's life, shared by the simulator's market-data and user channels:
accept, count, send from one task while the handler reads, clean up whatever ends first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar

from aiohttp import web

MAX_CLIENT_MESSAGE_BYTES = 2**20
C = TypeVar("C")


async def serve_connection(request: web.Request, connections: set[Any],
                           counters: MutableMapping[str, int],
                           connect: Callable[[web.WebSocketResponse, asyncio.Transport | None], C],
                           receive: Callable[[C], Awaitable[None]],
                           send: Callable[[C], Coroutine[Any, Any, None]],
                           ) -> web.WebSocketResponse:
    """Run `receive` and `send` for a new connection (made by `connect(ws, transport)`)."""
    ws = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGE_BYTES)
    await ws.prepare(request)
    connection = connect(ws, request.transport)
    connections.add(connection)
    counters["connections"] += 1
    sender = asyncio.create_task(send(connection))
    try:
        await receive(connection)
    finally:
        connections.discard(connection)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws
