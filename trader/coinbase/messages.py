"""Coinbase Advanced Trade websocket wire format: market-data frames in, subscribe frames out.

Coinbase field names stop here. `parse_frame` turns one raw frame into a `Frame` of domain
values, or raises `FrameError` with a label from `REASONS`. Channels the daemon does not consume
come back as ignored frames (envelope only), never as errors: `sequence_num` is one counter per
connection across all channels, so the feed needs their envelope for gap detection.

Wire facts relied on: every price and size is a decimal string; times are RFC3339 in UTC with
0-9 fractional digits (Go trims trailing zeros); `market_trades` `side` is the maker's side,
flipped here to the aggressor's; heartbeats carry Go `time.String()` text, not RFC3339.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, NamedTuple

import orjson

from trader.coinbase.wire_time import parse_go_time_ns, parse_rfc3339_ns
from trader.errors import FrameError
from trader.types import Heartbeat, Quote, Side, Trade

REASONS: Final = (
    "bad_json",  # not JSON (truncated, binary garbage, not UTF-8)
    "bad_type",  # a field or the frame itself has the wrong JSON type
    "missing_field",
    "bad_number",  # a price/size/id that is not a finite number in range
    "bad_time",  # a timestamp that is not the expected format or not a real instant
    "bad_value",  # a string outside its set (trade side) or an empty id
    "unknown_channel",
)
# Received names: subscribing to "level2" delivers frames on "l2_data".
IGNORED_CHANNELS: Final = frozenset(
    {"l2_data", "candles", "status", "user", "futures_balance_summary"}
)
SUBSCRIBE_CHANNELS: Final = frozenset(
    {"heartbeats", "market_trades", "ticker", "ticker_batch", "level2", "candles", "status",
     "user", "futures_balance_summary"}
)


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """The connection's cumulative subscriptions: subscribe-side channel name -> product ids."""

    channels: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ServerError:
    """A `{"type": "error"}` frame (e.g. "authentication failure"): a subscribe failed."""

    message: str


class TradeColumns(NamedTuple):
    """One `market_trades` frame's trades as parallel lists, oldest first (the wire's reverse).

    Entry i of every list is one trade, with exactly the values and checks of `Trade`. What
    the feed reads: no object per trade, and the lists go to the candle fold as they are.
    """

    product_ids: list[str]
    trade_ids: list[int]
    prices: list[float]
    sizes: list[float]
    sides: list[Side]
    times_ns: list[int]


Value = Trade | TradeColumns | Quote | Heartbeat | Subscriptions | ServerError
# a channel's parser: (the frame's events, its timestamp ns) -> its values
_Parser = Callable[[list[Any], int], Iterable[Value]]


class Frame(NamedTuple):
    """One websocket frame: its envelope and the values parsed from its events.

    `sequence_num` and `timestamp_ns` (server send time) are None only for error frames, which
    have no envelope. `event_type` ("snapshot", "update", or "" for heartbeats, subscriptions and
    errors) is the first event's. `ignored` frames are channels the daemon does not consume.
    A `market_trades` frame parsed with `trade_columns` has one `TradeColumns` as its values.
    """

    channel: str
    sequence_num: int | None
    timestamp_ns: int | None
    event_type: str
    values: tuple[Value, ...]
    ignored: bool = False


_INF: Final = float("inf")
_ENVELOPE: Final = frozenset({"channel", "sequence_num", "timestamp", "events"})


def decode(raw: bytes | str) -> dict[str, Any]:
    """orjson-decode one frame that must be a JSON object."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError("bad_json", str(exc)[:120]) from None
    if type(msg) is not dict:
        raise FrameError("bad_type", f"frame is a {type(msg).__name__}, not an object")
    return msg


def parse_frame(raw: bytes | str, trade_columns: bool = False) -> Frame:
    """Parse one websocket frame; raises FrameError (reason in REASONS) if it is malformed.

    With `trade_columns`, a `market_trades` frame's values are one `TradeColumns` (oldest
    first) instead of `Trade` values (wire order); the checks are the same.
    """
    msg = decode(raw)
    if not _ENVELOPE <= msg.keys() and msg.get("type") == "error":
        return Frame("error", None, None, "", (ServerError(str(msg.get("message") or "")),))
    channel, seq, stamp, events = _checked_envelope(msg)
    timestamp_ns = parse_rfc3339_ns(stamp)
    event_type = _event_type(events)
    parse = (_COLUMN_PARSERS if trade_columns else _PARSERS).get(channel)
    if parse is None:
        if channel in IGNORED_CHANNELS:
            return Frame(channel, seq, timestamp_ns, event_type, (), True)
        raise FrameError("unknown_channel", channel[:60])
    return Frame(channel, seq, timestamp_ns, event_type, tuple(parse(events, timestamp_ns)))


def _checked_envelope(msg: dict[str, Any]) -> tuple[str, int, str, list[Any]]:
    """The envelope fields, or the FrameError that says what is wrong with them."""
    channel = _field(msg, "channel", str)
    seq = _field(msg, "sequence_num", int)
    if seq < 0:
        raise FrameError("bad_number", f"sequence_num {seq}")
    return channel, seq, _field(msg, "timestamp", str), _field(msg, "events", list)


def parse_market_trades(msg: dict[str, Any]) -> list[Trade]:
    """Trades of a decoded `market_trades` frame, in wire order (newest first)."""
    return _trade_events(_field(msg, "events", list), 0)


def parse_ticker(msg: dict[str, Any]) -> list[Quote]:
    """Quotes of a decoded `ticker` or `ticker_batch` frame, stamped with the frame's time."""
    events = _field(msg, "events", list)
    timestamp_ns = _time_field(msg, "timestamp")
    return _ticker_events(events, timestamp_ns, msg.get("channel") != "ticker_batch")


def subscribe_message(channel: str, product_ids: Iterable[str] = (),
                      jwt: str | None = None) -> bytes:
    """A subscribe frame for one channel (Coinbase takes one channel per frame)."""
    return _control("subscribe", channel, product_ids, jwt)


def unsubscribe_message(channel: str, product_ids: Iterable[str] = (),
                        jwt: str | None = None) -> bytes:
    """An unsubscribe frame; empty `product_ids` drops the whole channel."""
    return _control("unsubscribe", channel, product_ids, jwt)


def _control(kind: str, channel: str, product_ids: Iterable[str], jwt: str | None) -> bytes:
    if channel not in SUBSCRIBE_CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if isinstance(product_ids, str):
        raise TypeError("product_ids must be an iterable of ids, not one string")
    ids = list(product_ids)
    if not all(type(p) is str and p for p in ids):
        raise ValueError(f"product ids must be non-empty strings: {ids!r}")
    body: dict[str, Any] = {"type": kind, "product_ids": ids, "channel": channel}
    if jwt is not None:
        body["jwt"] = jwt
    return orjson.dumps(body)


# ---- field access with stable reasons -------------------------------------------------------


def _field(obj: Any, key: str, kind: type) -> Any:
    try:
        value = obj[key]
    except KeyError:
        raise FrameError("missing_field", key) from None
    except TypeError:
        raise FrameError("bad_type", f"a {type(obj).__name__} where {key!r} was due") from None
    if type(value) is not kind:  # `is`, so a JSON true is not taken for an int
        raise FrameError("bad_type", f"{key} is a {type(value).__name__}, not {kind.__name__}")
    return value


def _number(obj: Any, key: str, positive: bool = False) -> float:
    text = _field(obj, key, str)
    try:
        value = float(text)
    except ValueError:
        raise FrameError("bad_number", f"{key}={text[:40]!r}") from None
    if not (-_INF < value < _INF) or (positive and value <= 0.0):
        raise FrameError("bad_number", f"{key}={text[:40]!r}")
    return value


def _time_field(obj: Any, key: str) -> int:
    return parse_rfc3339_ns(_field(obj, key, str))


def _product_id(obj: Any) -> str:
    product_id = _field(obj, "product_id", str)
    if not product_id:
        raise FrameError("bad_value", "empty product_id")
    return product_id


def _event_type(events: list[Any]) -> str:
    if not events:
        return ""
    first = events[0]
    if type(first) is not dict:
        raise FrameError("bad_type", f"event is a {type(first).__name__}")
    kind = first.get("type", "")
    if type(kind) is not str:
        raise FrameError("bad_type", f"event type is a {type(kind).__name__}")
    return kind


# ---- channel parsers: (events, frame timestamp ns) -> values ---------------------------------

AGGRESSOR: Final = {"BUY": Side.SELL, "SELL": Side.BUY}  # wire side is the maker's


def _trade_events(events: list[Any], timestamp_ns: int) -> list[Trade]:
    return [Trade(*_trade_fields(t)) for e in events for t in _field(e, "trades", list)]


def _trade_columns(events: list[Any], timestamp_ns: int) -> tuple[TradeColumns]:
    """A `market_trades` frame's trades as one `TradeColumns`, oldest first."""
    # in wire order, so a malformed frame fails as in `_trade_events`
    rows = [_trade_fields(t) for e in events for t in _field(e, "trades", list)]
    if not rows:
        return (TradeColumns([], [], [], [], [], []),)
    rows.reverse()
    return (TradeColumns(*map(list, zip(*rows, strict=True))),)


def _trade_fields(t: Any) -> tuple[str, int, float, float, Side, int]:
    """One wire trade's checked `Trade` fields, in `Trade`'s order."""
    product_id = _product_id(t)
    trade_id_text = _field(t, "trade_id", str)
    try:
        trade_id = int(trade_id_text, 10)
    except ValueError:
        raise FrameError("bad_number", f"trade_id={trade_id_text[:40]!r}") from None
    side = AGGRESSOR.get(_field(t, "side", str))
    if side is None:
        raise FrameError("bad_value", f"side={t['side'][:20]!r}")
    return (product_id, trade_id, _number(t, "price", positive=True),
            _number(t, "size", positive=True), side, _time_field(t, "time"))


def _ticker_events(events: list[Any], timestamp_ns: int, has_book: bool = True) -> list[Quote]:
    return [_quote(t, timestamp_ns, has_book) for e in events for t in _field(e, "tickers", list)]


def _quote(t: Any, timestamp_ns: int, has_book: bool) -> Quote:
    book = (
        (_number(t, "best_bid"), _number(t, "best_ask"),
         _number(t, "best_bid_quantity"), _number(t, "best_ask_quantity"))
        if has_book else (None, None, None, None)
    )
    best_bid, best_ask, best_bid_size, best_ask_size = book
    return Quote(_product_id(t), _number(t, "price"), best_bid, best_ask, best_bid_size,
                 best_ask_size, _number(t, "volume_24_h"), _number(t, "low_24_h"),
                 _number(t, "high_24_h"), _number(t, "price_percent_chg_24_h"), timestamp_ns)


def _heartbeat_events(events: list[Any], timestamp_ns: int) -> list[Heartbeat]:
    return [_heartbeat(e) for e in events]


def _heartbeat(event: Any) -> Heartbeat:
    current_ns = parse_go_time_ns(_field(event, "current_time", str))
    try:
        counter = event["heartbeat_counter"]
    except KeyError:
        raise FrameError("missing_field", "heartbeat_counter") from None
    # an integer in production, a decimal string in the docs' examples
    if type(counter) is str and counter.isascii() and counter.isdigit():
        counter = int(counter)
    if type(counter) is not int:
        raise FrameError("bad_number", f"heartbeat_counter={str(counter)[:40]!r}")
    return Heartbeat(current_ns, counter)


def _subscription_events(events: list[Any], timestamp_ns: int) -> list[Subscriptions]:
    out = []
    for event in events:
        channels: dict[str, tuple[str, ...]] = {}
        for name, ids in _field(event, "subscriptions", dict).items():
            if type(ids) is not list or not all(type(i) is str for i in ids):
                raise FrameError("bad_type", f"subscriptions[{name[:40]!r}]")
            channels[name] = tuple(ids)
        out.append(Subscriptions(channels))
    return out


_PARSERS: Final[dict[str, _Parser]] = {
    "market_trades": _trade_events,
    "ticker": _ticker_events,
    "ticker_batch": partial(_ticker_events, has_book=False),
    "heartbeats": _heartbeat_events,
    "subscriptions": _subscription_events,
}
_COLUMN_PARSERS: Final[dict[str, _Parser]] = {**_PARSERS, "market_trades": _trade_columns}
