"""The one reconnect loop and frame reader of every websocket session (market data, user
channel).

Run a session until it ends, then wait a capped full-jitter backoff (reset once a session
lasted `stable_after_s`) and run it again, until `stopping()` says so. Connection errors are
expected and counted; anything else is a bug and escapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.http_websocket import WSMessageTextBytes

from trader.backoff import Backoff

log = logging.getLogger(__name__)

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)
YIELD_EVERY = 64  # frames read before letting other tasks run


async def reconnecting(session: Callable[[], Awaitable[None]], *, name: str, backoff: Backoff,
                       stable_after_s: float, stopping: Callable[[], bool],
                       monotonic: Callable[[], float], counters: Counter[str],
                       ended: Callable[[], None],
                       expected: tuple[type[BaseException], ...] = EXPECTED_ERRORS) -> None:
    """Loop `session()`; `ended()` runs after each one, whatever its outcome."""
    while not stopping():
        started = monotonic()
        try:
            await session()
        except expected as exc:
            counters["connect_errors"] += 1
            log.warning("%s: %s: %s", name, type(exc).__name__, exc)
        finally:
            ended()
        if stopping():
            break
        if monotonic() - started >= stable_after_s:
            backoff.reset()
        delay = backoff.next_s()
        log.info("%s: reconnecting in %.2f s", name, delay)
        await asyncio.sleep(delay)


async def read_frames(ws: aiohttp.ClientWebSocketResponse[bool],
                      on_frame: Callable[[Any], bool | None],
                      *, name: str, stale_after_s: float, counters: Counter[str],
                      stopping: Callable[[], bool]) -> None:
    """Hand each data frame to `on_frame` until the socket closes, stays silent for
    `stale_after_s`, or `on_frame` returns False; the session then ends (and reconnects)."""
    since_yield = 0
    while True:
        try:
            message = await ws.receive(timeout=stale_after_s)
        except TimeoutError:
            counters["stale_reconnects"] += 1
            log.warning("%s silent for %.1f s; reconnecting", name, stale_after_s)
            return
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            if not stopping():
                _log_close(ws, message, name, counters)
            return
        if on_frame(message.data) is False:
            return
        since_yield += 1
        if since_yield >= YIELD_EVERY:
            since_yield = 0
            await asyncio.sleep(0)


def _log_close(ws: aiohttp.ClientWebSocketResponse[bool],
               message: aiohttp.WSMessage | WSMessageTextBytes, name: str,
               counters: Counter[str]) -> None:
    counters["disconnects"] += 1
    if message.type == aiohttp.WSMsgType.ERROR:
        log.warning("%s error: %s", name, ws.exception())
    else:
        log.warning("%s closed (%s, code %s)", name, message.type.name, ws.close_code)
