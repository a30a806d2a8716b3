"""The market-data websocket session: connect, subscribe, read, check, reconnect.

One connection carries heartbeats, market_trades and ticker for every configured product.
Each connection's `sequence_num` must rise by one per frame; a jump, a reconnect or a silent
feed means prints may be missing, and the sink is told which stretch of exchange time is
suspect (`on_gap`) so those minutes are repaired from REST. Trades already seen (a snapshot
after a reconnect repeats up to 100) are dropped by trade id. Malformed frames are counted by
reason and skipped.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

import aiohttp

from trader.backoff import Backoff
from trader.coinbase import messages
from trader.coinbase.reconnect import read_frames, reconnecting
from trader.config import CoinbaseConfig, MarketConfig
from trader.errors import FrameError
from trader.types import Heartbeat, Quote

log = logging.getLogger(__name__)

CHANNELS = ("heartbeats", "market_trades", "ticker")
PRODUCTS_PER_SUBSCRIBE = 100
MAX_MSG_SIZE = 16 * 2**20  # a level2 snapshot of BTC-USD alone is 5 MB
GAP_MARGIN_NS = 1_000_000_000  # prints of a lost frame may predate the last frame's stamp


class FeedSink(Protocol):
    """Where the feed delivers what it read; every call is synchronous."""

    def on_trade_columns(self, product_ids: Sequence[str], times_ns: Sequence[int],
                         prices: Sequence[float], sizes: Sequence[float]) -> None:
        """One frame's fresh trades as columns, oldest first (`TradeColumns` fields)."""

    def on_quote(self, quote: Quote) -> None: ...

    def on_heartbeat(self, heartbeat: Heartbeat) -> None: ...

    def on_gap(self, from_ns: int, to_ns: int) -> None: ...


class FrameTimer(Protocol):
    """Told when a frame arrives and when all it caused synchronously is done."""

    def received(self) -> None: ...

    def done(self) -> None: ...


class MarketFeed:
    """Runs the websocket session for the configured products until cancelled."""

    name = "feed"

    def __init__(self, ws_url: str, products: Iterable[str], sink: FeedSink,
                 stale_after_s: float, *, rng: random.Random | None = None,
                 backoff_base_s: float = 0.25, backoff_cap_s: float = 30.0,
                 stable_after_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 frame_timer: FrameTimer | None = None) -> None:
        self.ws_url = ws_url
        self.frame_timer = frame_timer  # e.g. frame-to-order latency
        self.products: tuple[str, ...] = tuple(products)
        self.stale_after_s = stale_after_s
        self._sink = sink
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self._stable_after_s = stable_after_s
        self._monotonic = monotonic
        self._control: asyncio.Queue[bytes] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse[Literal[False]] | None = None
        self._last_seq = -1
        self._last_time_ns: int | None = None  # exchange time of the last good frame
        self._reconnected = False
        self._high_trade_id: dict[str, int] = {}
        self._last_frame_at: float | None = None
        self.counters = collections.Counter[str]()
        self.bad_frames = collections.Counter[str]()
        self._rates = _Rates(monotonic)
        self.subscribed = asyncio.Event()  # set by the first subscriptions ack
        self._stopping = False

    # ---- configuration ----------------------------------------------------------------------

    def apply_market(self, section: MarketConfig) -> None:
        """A reloaded `[market]`: its products subscribed and unsubscribed on the open socket."""
        self.set_products(section.products)

    def apply_coinbase(self, section: CoinbaseConfig) -> None:
        """A reloaded `[coinbase]`: how long a silent feed is trusted."""
        self.stale_after_s = section.stale_after_s

    def set_products(self, products: Iterable[str]) -> None:
        """Subscribe to new products and unsubscribe from dropped ones, on the open socket."""
        new = tuple(products)
        added = [p for p in new if p not in self.products]
        removed = [p for p in self.products if p not in new]
        self.products = new
        if self._ws is None:
            return  # the next connection subscribes to the new list
        for channel in ("market_trades", "ticker"):
            for chunk in _chunks(added):
                self._control.put_nowait(messages.subscribe_message(channel, chunk))
            for chunk in _chunks(removed):
                self._control.put_nowait(messages.unsubscribe_message(channel, chunk))
        for product in removed:
            self._high_trade_id.pop(product, None)

    # ---- the session loop -------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop intake: close the socket and do not reconnect (shutdown)."""
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await reconnecting(lambda: self._session(session), name="market feed",
                               backoff=self._backoff, stable_after_s=self._stable_after_s,
                               stopping=lambda: self._stopping, monotonic=self._monotonic,
                               counters=self.counters, ended=self._ended)

    def _ended(self) -> None:
        self._ws = None
        self._reconnected = True  # the next session's first minutes need repair

    async def _session(self, session: aiohttp.ClientSession) -> None:
        # decode_text=False: orjson reads the bytes (aiohttp's decoding would be a second UTF-8
        # pass), and a frame of invalid UTF-8 stays a counted bad_json, not a dropped socket
        async with session.ws_connect(self.ws_url, max_msg_size=MAX_MSG_SIZE,
                                      autoclose=True, autoping=True, decode_text=False) as ws:
            self._ws = ws
            self._last_seq = -1
            self.counters["connections"] += 1
            self._drain_control()  # the fresh subscribe below covers any pending change
            for frame in self._subscribe_frames():
                await ws.send_bytes(frame)
            sender = asyncio.create_task(self._send_control(ws), name="feed-control")
            try:
                await read_frames(ws, self.on_raw_frame, name="market feed",
                                  stale_after_s=self.stale_after_s, counters=self.counters,
                                  stopping=lambda: self._stopping)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    def _subscribe_frames(self) -> list[bytes]:
        frames = [messages.subscribe_message("heartbeats")]
        for channel in ("market_trades", "ticker"):
            frames += [messages.subscribe_message(channel, chunk)
                       for chunk in _chunks(self.products)]
        return frames

    async def _send_control(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
        while True:
            await ws.send_bytes(await self._control.get())

    def _drain_control(self) -> None:
        while not self._control.empty():
            self._control.get_nowait()

    # ---- one frame --------------------------------------------------------------------------

    def on_raw_frame(self, raw: bytes | str) -> None:
        """Check and deliver one frame (synchronous: nothing awaits from frame to sink)."""
        self._last_frame_at = self._monotonic()
        if self.frame_timer is None:
            return self._on_frame(raw)
        self.frame_timer.received()
        try:
            self._on_frame(raw)
        finally:
            self.frame_timer.done()

    def _on_frame(self, raw: bytes | str) -> None:
        self.counters["frames"] += 1
        try:
            channel, seq, timestamp_ns, _, values, ignored = messages.parse_frame(
                raw, trade_columns=True)
        except FrameError as exc:
            self.bad_frames[exc.reason] += 1
            return
        if seq is None:  # an error frame: a subscribe failed
            self.counters["server_errors"] += 1
            error = values[0]
            assert isinstance(error, messages.ServerError)
            log.error("market feed: server error: %s", error.message)
            return
        assert timestamp_ns is not None  # None only on error frames
        if not self._in_sequence(seq, timestamp_ns):
            return
        if ignored:
            return
        if channel == "market_trades":
            trades = values[0]  # one TradeColumns: parsed with trade_columns
            assert isinstance(trades, messages.TradeColumns)
            self._deliver_trades(trades)
        else:
            self._deliver(channel, values)

    def _in_sequence(self, sequence_num: int, timestamp_ns: int) -> bool:
        if sequence_num <= self._last_seq:
            self.counters["stale_frames"] += 1
            return False
        gap = sequence_num > self._last_seq + 1 and self._last_seq >= 0
        if gap:
            self.counters["sequence_gaps"] += 1
        if (gap or self._reconnected) and self._last_time_ns is not None:
            self._sink.on_gap(self._last_time_ns - GAP_MARGIN_NS, timestamp_ns)
        self._reconnected = False
        self._last_seq = sequence_num
        self._last_time_ns = timestamp_ns
        return True

    def _deliver(self, channel: str, values: tuple[Any, ...]) -> None:
        if channel == "heartbeats":
            for heartbeat in values:
                self._sink.on_heartbeat(heartbeat)
        elif channel == "ticker":
            for quote in values:
                self._sink.on_quote(quote)
        elif channel == "subscriptions":
            self.subscribed.set()

    def _deliver_trades(self, trades: messages.TradeColumns) -> None:
        """Trades not seen before, oldest first; a jump in a product's trade ids is a gap."""
        ids, trade_ids, prices, sizes, _, times_ns = trades
        high = self._high_trade_id
        for i, product_id, trade_id in zip(itertools.count(), ids, trade_ids):
            last = high.get(product_id)
            if last is not None and trade_id != last + 1:
                self._deliver_unusual_trades(trades, i)
                return
            high[product_id] = trade_id
        if ids:
            self.counters["trades"] += len(ids)
            self._sink.on_trade_columns(ids, times_ns, prices, sizes)

    def _deliver_unusual_trades(self, trades: messages.TradeColumns, start: int) -> None:
        """`_deliver_trades` from the first trade (at `start`) whose id is not the next one."""
        ids, trade_ids, prices, sizes, _, times_ns = trades
        high = self._high_trade_id
        keep = list(range(start))
        for i in range(start, len(ids)):
            last = high.get(ids[i])
            if last is not None and trade_ids[i] <= last:
                self.counters["repeated_trades"] += 1
                continue
            if last is not None and trade_ids[i] > last + 1:
                self.counters["trade_id_gaps"] += 1
                self._sink.on_gap(times_ns[i] - GAP_MARGIN_NS, times_ns[i])
            high[ids[i]] = trade_ids[i]
            keep.append(i)
        self.counters["trades"] += len(keep)
        if keep:
            self._sink.on_trade_columns([ids[i] for i in keep], [times_ns[i] for i in keep],
                                        [prices[i] for i in keep], [sizes[i] for i in keep])

    # ---- status -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        frames_per_s, trades_per_s = self._rates.sample(self.counters["frames"],
                                                        self.counters["trades"])
        age = None if self._last_frame_at is None else self._monotonic() - self._last_frame_at
        return {
            "connected": self._ws is not None,
            "subscribed_products": len(self.products),
            "counters": {
                "frames_per_s": round(frames_per_s, 1), "trades_per_s": round(trades_per_s, 1),
                "last_frame_age_s": None if age is None else round(age, 3),
                **dict(self.counters),
                "bad_frames": sum(self.bad_frames.values()),
                **{f"bad_frames_{reason}": n for reason, n in self.bad_frames.items()},
            },
        }


class _Rates:
    """Frames and trades per second over the last ten seconds of snapshots."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._samples = collections.deque([(monotonic(), 0, 0)])  # (time, frames, trades)

    def sample(self, frames: int, trades: int) -> tuple[float, float]:
        now = self._monotonic()
        self._samples.append((now, frames, trades))
        while len(self._samples) > 2 and now - self._samples[0][0] > 10:
            self._samples.popleft()
        then, old_frames, old_trades = self._samples[0]
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        return (frames - old_frames) / span, (trades - old_trades) / span


def _chunks(items: Iterable[str]) -> list[list[str]]:
    items = list(items)
    return [items[i:i + PRODUCTS_PER_SUBSCRIBE]
            for i in range(0, len(items), PRODUCTS_PER_SUBSCRIBE)]
