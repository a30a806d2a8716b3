"""The authenticated `user` channel session: our orders' cumulative state as it changes.

One connection to `coinbase.user_ws_url` subscribes to `heartbeats` (which keeps a quiet
connection open) and `user` (every product), each subscribe with a fresh JWT, right after
connecting (Coinbase drops a connection without a subscribe within 5 s). Order updates go to
the `on_updates` callback as they arrive, the snapshot of open orders first.

`connected` is True from the first `user` frame or subscription ack until the connection ends.
Every time it turns True, and whenever the connection's `sequence_num` skips, `on_resync` is
called: updates sent while nobody listened are lost for good, so the owner catches up over
REST. An error frame (an "authentication failure": a bad key, or a clock far off) means the
subscription is not active; it is counted, reported through `on_error`, and the session is
dropped and retried with capped full-jitter backoff, as is a dropped or silent connection.
Tokens are never logged.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from trader.backoff import Backoff
from trader.coinbase import auth, messages, orders
from trader.coinbase.feed import MAX_MSG_SIZE
from trader.coinbase.reconnect import EXPECTED_ERRORS, read_frames, reconnecting
from trader.errors import FrameError
from trader.types import OrderUpdate

log = logging.getLogger(__name__)

Updates = Callable[[list[OrderUpdate]], None]


def _nothing(*_args: Any) -> None:
    return None


class UserFeed:
    """Runs the user-channel session until cancelled (see the module docstring)."""

    name = "user_feed"

    def __init__(self, ws_url: str, credentials: auth.Credentials, on_updates: Updates,
                 stale_after_s: float, *, on_resync: Callable[[], None] = _nothing,
                 on_error: Callable[[str, str], None] = _nothing,
                 rng: random.Random | None = None, backoff_base_s: float = 0.25,
                 backoff_cap_s: float = 30.0, stable_after_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ws_url = ws_url
        self.stale_after_s = stale_after_s
        self._credentials = credentials
        self._on_updates = on_updates
        self._on_resync = on_resync
        self._on_error = on_error
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self._stable_after_s = stable_after_s
        self._monotonic = monotonic
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._last_seq = -1
        self._last_frame_at: float | None = None
        self._stopping = False
        self.connected = False
        self.counters = collections.Counter[str]()
        self.bad_frames = collections.Counter[str]()

    async def drain(self) -> None:
        """Close the socket and do not reconnect (shutdown)."""
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await reconnecting(lambda: self._session(session), name="user channel",
                               backoff=self._backoff, stable_after_s=self._stable_after_s,
                               stopping=lambda: self._stopping, monotonic=self._monotonic,
                               counters=self.counters, ended=self._ended,
                               expected=(*EXPECTED_ERRORS, auth.AuthError))

    def _ended(self) -> None:
        self._ws = None
        self._set_connected(False)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.ws_url, max_msg_size=MAX_MSG_SIZE,
                                      autoclose=True, autoping=True) as ws:
            self._ws = ws
            self._last_seq = -1
            self.counters["connections"] += 1
            for channel in ("heartbeats", "user"):  # a fresh token for each subscribe
                token = auth.ws_jwt(self._credentials)
                await ws.send_bytes(messages.subscribe_message(channel, (), jwt=token))
            await read_frames(ws, self.on_raw_frame, name="user channel",
                              stale_after_s=self.stale_after_s, counters=self.counters,
                              stopping=lambda: self._stopping)

    # ---- one frame --------------------------------------------------------------------------

    def on_raw_frame(self, raw: bytes | str) -> bool:
        """Take one frame; False when the session must be dropped (an error frame)."""
        self._last_frame_at = self._monotonic()
        self.counters["frames"] += 1
        try:
            msg = messages.decode(raw)
        except FrameError as exc:
            self.bad_frames[exc.reason] += 1
            return True
        if msg.get("type") == "error":
            self._server_error(str(msg.get("message") or ""))
            return False
        if not self._in_sequence(msg.get("sequence_num")):
            return True
        channel = msg.get("channel")
        if channel == "user":
            self._user_frame(msg)
        elif channel == "subscriptions" and _subscribed_to_user(msg):
            self._set_connected(True)
        elif channel == "heartbeats":
            self.counters["heartbeats"] += 1
        return True

    def _user_frame(self, msg: dict[str, Any]) -> None:
        try:
            _kind, updates = orders.parse_user_frame(msg)
        except FrameError as exc:
            self.bad_frames[exc.reason] += 1
            return
        self._set_connected(True)
        self.counters["updates"] += len(updates)
        if updates:
            self._on_updates(updates)

    def _in_sequence(self, sequence_num: Any) -> bool:
        if not isinstance(sequence_num, int):
            return True  # no envelope to check: the parse decides
        if sequence_num <= self._last_seq:
            self.counters["stale_frames"] += 1
            return False
        if self._last_seq >= 0 and sequence_num > self._last_seq + 1:
            self.counters["sequence_gaps"] += 1
            self._on_resync()  # a lost frame may have been an order update
        self._last_seq = sequence_num
        return True

    def _server_error(self, message: str) -> None:
        kind = "user_auth" if "authentication" in message else "user_subscribe"
        self.counters[kind + "_failures"] += 1
        log.error("user channel: server error %r; reconnecting with backoff%s", message[:100],
                  " (check the API key and the system clock)" if kind == "user_auth" else "")
        self._on_error(kind, message[:100])

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("user channel subscribed")
            self._on_resync()

    def snapshot(self) -> dict[str, Any]:
        age = None if self._last_frame_at is None else self._monotonic() - self._last_frame_at
        return {"connected": self.connected,
                "last_frame_age_s": None if age is None else round(age, 3),
                "counters": {**self.counters, "bad_frames": sum(self.bad_frames.values())}}


def _subscribed_to_user(msg: dict[str, Any]) -> bool:
    for event in msg.get("events") or []:
        if isinstance(event, dict) and "user" in (event.get("subscriptions") or {}):
            return True
    return False
