"""The feed's frame parser: canonical `market_trades` and `heartbeats` frames through the
compiled scanner (`trader/kernels/frame_scan.py`), every other frame through
`messages.parse_frame(raw, trade_columns=True)`, with the same values either way.

The scanner reads the frame's bytes once and declines anything but the exact shape Coinbase
sends; then the Python path accepts or rejects the frame as it always did. It is its own module
so that what only needs `messages` (the REST client, `trader backfill`) does not load numba.
"""

from __future__ import annotations

from typing import Any, Final

from trader.coinbase import messages
from trader.coinbase.messages import AGGRESSOR, PRODUCT_BYTES, Frame, TradeColumns
from trader.kernels import frame_scan
from trader.types import Heartbeat

_new_tuple: Final = tuple.__new__  # a NamedTuple without its Python-level __new__
_new_object: Final = object.__new__
_TRADES_PREFIX: Final = b'{"channel":"market_trades",'
_HEARTBEATS_PREFIX: Final = b'{"channel":"heartbeats",'


def parse_frame(raw: bytes | str) -> Frame:
    """`messages.parse_frame(raw, trade_columns=True)`, the scanner first; raises FrameError."""
    frame = _scanned_frame(raw)
    return messages.parse_frame(raw, trade_columns=True) if frame is None else frame


_scan_trades: Final = frame_scan.scan_market_trades
_scan_heartbeat: Final = frame_scan.scan_heartbeat
_SCANNED_PREFIXES: Final = (_TRADES_PREFIX, _HEARTBEATS_PREFIX)
_SCANNED_PREFIXES_TEXT: Final = tuple(prefix.decode() for prefix in _SCANNED_PREFIXES)
_HEAD, _ROW = frame_scan.HEADER, frame_scan.TRADE_FIELDS
_ONE_TRADE: Final = _HEAD + _ROW  # the ints of a one-trade frame, unpacked in layout order
# indexed by the scanner's codes; the layout unpacked below is checked at import
_SCANNED_EVENT_TYPES: Final = ("update", "snapshot")
_SCANNED_AGGRESSOR: Final = (AGGRESSOR["BUY"], AGGRESSOR["SELL"])
if ((frame_scan.UPDATE, frame_scan.SNAPSHOT, frame_scan.BUY, frame_scan.SELL) != (0, 1, 0, 1)
        or (frame_scan.SEQUENCE_NUM, frame_scan.TIMESTAMP_NS, frame_scan.EVENT_TYPE,
            frame_scan.CURRENT_TIME_NS, frame_scan.HEARTBEAT_COUNTER, frame_scan.PRODUCT_START,
            frame_scan.PRODUCT_END, frame_scan.TRADE_ID, frame_scan.SIDE, frame_scan.TIME_NS,
            frame_scan.PRICE, frame_scan.SIZE) != (0, 1, 2, 2, 3, 0, 1, 2, 3, 4, 0, 1)):
    raise ImportError("trader.kernels.frame_scan's layout is not the one unpacked here")


class _Outputs:
    """The scanner's output arrays, reused by every scan, and fixed views of their heads
    (a one-trade frame's values: slicing per frame cost a tenth of its parse)."""

    __slots__ = ("floats", "header_ints", "ints", "one_trade_floats", "one_trade_ints")

    def __init__(self, trades: int) -> None:
        self.ints, self.floats = frame_scan.new_outputs(trades)
        self.one_trade_ints = self.ints[:_ONE_TRADE]
        self.header_ints = self.ints[:_HEAD]
        self.one_trade_floats = self.floats[:frame_scan.FLOAT_FIELDS]


_outputs = _Outputs(16)


def _scanned_frame(raw: bytes | str) -> Frame | None:
    """A canonical `market_trades` or `heartbeats` frame as the path below parses it, or None
    where the compiled scanner declines it (see trader/kernels/frame_scan.py)."""
    kind = type(raw)
    if kind is not bytes:
        if not (kind is str and raw.startswith(_SCANNED_PREFIXES_TEXT) and raw.isascii()):
            return None
        raw = raw.encode()  # a text frame of a session that decodes them
    if raw.startswith(_TRADES_PREFIX):
        return _scanned_trades(raw)
    if raw.startswith(_HEARTBEATS_PREFIX):
        return _scanned_heartbeat(raw)
    return None


def _scanned_trades(raw: bytes) -> Frame | None:
    global _outputs
    out = _outputs
    n = _scan_trades(raw, out.ints, out.floats)
    while n == frame_scan.GROW:
        _outputs = out = _Outputs(2 * len(out.floats))
        n = _scan_trades(raw, out.ints, out.floats)
    if n == 1:  # most frames: unpacked at once
        seq, stamp_ns, event, _, start, end, trade_id, side, time_ns = out.one_trade_ints.tolist()
        product_id = PRODUCT_BYTES.get(raw[start:end])
        if product_id is None:
            return None
        price, size = out.one_trade_floats.tolist()
        columns = ([product_id], [trade_id], [price], [size], [_SCANNED_AGGRESSOR[side]],
                   [time_ns])
    elif n < 0:
        return None
    else:
        values = out.ints[:_HEAD + _ROW * n].tolist()
        seq, stamp_ns, event = values[:3]
        columns = _scanned_columns(raw, values, out.floats[:2 * n].tolist(), n)
        if columns is None:
            return None
    return _new_tuple(Frame, ("market_trades", seq, stamp_ns, _SCANNED_EVENT_TYPES[event],
                              (_new_tuple(TradeColumns, columns),), False))


def _scanned_columns(raw: bytes, values: list[int], pairs: list[float],
                     n: int) -> tuple[list[Any], ...] | None:
    """The `TradeColumns` lists of n scanned trades; None if a product id is not a known one."""
    trades = values[_HEAD:]
    starts, ends = trades[frame_scan.PRODUCT_START::_ROW], trades[frame_scan.PRODUCT_END::_ROW]
    if n and values[frame_scan.SAME_PRODUCT]:
        product_ids = [PRODUCT_BYTES.get(raw[starts[0]:ends[0]])] * n
    else:
        product_ids = [PRODUCT_BYTES.get(raw[start:end])
                       for start, end in zip(starts, ends, strict=True)]
    if None in product_ids:
        return None
    sides = [_SCANNED_AGGRESSOR[side] for side in trades[frame_scan.SIDE::_ROW]]
    return (product_ids, trades[frame_scan.TRADE_ID::_ROW], pairs[frame_scan.PRICE::2],
            pairs[frame_scan.SIZE::2], sides, trades[frame_scan.TIME_NS::_ROW])


def _scanned_heartbeat(raw: bytes) -> Frame | None:
    if _scan_heartbeat(raw, _outputs.ints) != 1:
        return None
    seq, stamp_ns, current_ns, counter = _outputs.header_ints.tolist()
    return _new_tuple(Frame, ("heartbeats", seq, stamp_ns, "",
                              (_new_heartbeat(current_ns, counter),), False))


_set_current_time, _set_counter = (getattr(Heartbeat, name).__set__
                                   for name in Heartbeat.__slots__)


def _new_heartbeat(current_time_ns: int, heartbeat_counter: int) -> Heartbeat:
    """`Heartbeat(current_time_ns, heartbeat_counter)` in half the time of its __init__ (as
    `_slot_constructor`)."""
    heartbeat = _new_object(Heartbeat)
    _set_current_time(heartbeat, current_time_ns)
    _set_counter(heartbeat, heartbeat_counter)
    return heartbeat
