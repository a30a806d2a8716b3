"""The one reconnect loop of every websocket session (market data, user channel).

Run a session until it ends, then wait a capped full-jitter backoff (reset once a session
lasted `stable_after_s`) and run it again, until `stopping()` says so. Connection errors are
expected and counted; anything else is a bug and escapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp

from trader.backoff import Backoff

log = logging.getLogger(__name__)

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


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
