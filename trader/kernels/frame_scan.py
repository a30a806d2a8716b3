"""A strict byte scanner for Coinbase `market_trades` and `heartbeats` websocket frames.

It takes only the canonical shapes that Coinbase and the simulator send, byte for byte:

    {"channel":"market_trades",["client_id":"",]"timestamp":"<time>","sequence_num":<count>,
     "events":[{"type":"update"|"snapshot","trades":[<trade>,<trade>,...]}]}
    <trade> = {"product_id":"<id>","trade_id":"<digits>","price":"<decimal>",
               "size":"<decimal>","time":"<time>","side":"BUY"|"SELL"}
    {"channel":"heartbeats",["client_id":"",]"timestamp":"<time>","sequence_num":<count>,
     "events":[{"current_time":"<go time>","heartbeat_counter":<count>}]}

and returns MISS for anything else (whitespace, escapes, other keys or key order, more than
one event, exponents, too many digits, ...). It decides nothing: the caller parses a missed
frame the slow way, which accepts or rejects it as before. So every rule here only has to
accept a subset of what the slow path accepts, with exactly its values:

- <time>: "YYYY-MM-DDTHH:MM:SS" then "Z" or "." and 1-9 digits and "Z"; a real date of the
  years 1970-2261 (epoch ns fit an int64); exact epoch ns.
- <decimal>: digits with at most one "." inside, at most 18 significant digits and 22
  fraction digits, not zero; its value rounded once, ties to even, as Python's `float(text)`
  (see `decimal`).
- <go time>: "YYYY-MM-DD HH:MM:SS.<1-9 digits> +0000 UTC", then optionally Go's monotonic
  reading " m=+<digits and dots>" (which the slow path does not read either).
- trade id: 1-18 ASCII digits; <count>: a JSON integer >= 0 of at most 18 digits.
- <id>: non-empty printable ASCII without '"' or backslash, returned as a byte span.

Outputs, preallocated by the caller and reused (grown when the scan returns GROW):
- `ints` int64: HEADER values [SEQUENCE_NUM, TIMESTAMP_NS, EVENT_TYPE, SAME_PRODUCT], then
  TRADE_FIELDS values per trade, oldest first (the wire's reverse): PRODUCT_START,
  PRODUCT_END, TRADE_ID, SIDE, TIME_NS. SAME_PRODUCT is 1 if every trade has the first
  trade's product id bytes. SIDE is the wire (maker) side: BUY or SELL.
- `floats` float64: FLOAT_FIELDS values per trade, oldest first: PRICE, SIZE.
- A heartbeats frame fills only the header: [SEQUENCE_NUM, TIMESTAMP_NS, CURRENT_TIME_NS,
  HEARTBEAT_COUNTER].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SEQUENCE_NUM, TIMESTAMP_NS, EVENT_TYPE, SAME_PRODUCT = 0, 1, 2, 3
CURRENT_TIME_NS, HEARTBEAT_COUNTER = 2, 3  # the header of a heartbeats frame
HEADER = 4
PRODUCT_START, PRODUCT_END, TRADE_ID, SIDE, TIME_NS = 0, 1, 2, 3, 4
TRADE_FIELDS = 5
PRICE, SIZE = 0, 1
FLOAT_FIELDS = 2
UPDATE, SNAPSHOT = 0, 1  # EVENT_TYPE
BUY, SELL = 0, 1  # SIDE, as on the wire
MISS, GROW = -1, -2  # scan results besides a count


def _literal(text: str) -> tuple[int, ...]:
    return tuple(text.encode("ascii"))


_HEAD = _literal('{"channel":"market_trades",')
_CLIENT_ID = _literal('"client_id":"",')
_TIMESTAMP = _literal('"timestamp":"')
_SEQUENCE_NUM = _literal('","sequence_num":')
_EVENTS = _literal(',"events":[')
_TYPE = _literal('{"type":"')
_UPDATE = _literal("update")
_SNAPSHOT = _literal("snapshot")
_TRADES = _literal('","trades":[')
_PRODUCT_ID = _literal('{"product_id":"')
_TRADE_ID = _literal('","trade_id":"')
_PRICE = _literal('","price":"')
_SIZE = _literal('","size":"')
_TIME = _literal('","time":"')
_SIDE = _literal('","side":"')
_BUY = _literal('BUY"}')
_SELL = _literal('SELL"}')
_TAIL = _literal("]}]}")
_HEARTBEATS_HEAD = _literal('{"channel":"heartbeats",')
_CURRENT_TIME = _literal('{"current_time":"')
_UTC = _literal(" +0000 UTC")
_MONOTONIC = _literal(" m=+")
_COUNTER = _literal('","heartbeat_counter":')
_HEARTBEAT_TAIL = _literal("}]}")
_SCALE = tuple(10 ** (9 - n) for n in range(10))  # ns per unit of n fraction digits
_POW10 = tuple(10.0**k for k in range(23))  # each exact: 10**22 < 2**53 * 2**22
_POW5 = tuple(5**k for k in range(23))  # 5**22 < 2**52
_POW5_BITS = tuple((5**k).bit_length() for k in range(23))
_EXACT_DOUBLE_LIMIT = 2**53
_MAX_SIGNIFICANT = 18  # so a mantissa is below 10**18 < 2**60
_MIN_YEAR, _MAX_YEAR = 1970, 2261
_DIGIT_0, _DOT, _QUOTE, _BACKSLASH = 48, 46, 34, 92
_DASH, _COLON, _T, _Z, _COMMA, _CLOSE_BRACKET, _SPACE = 45, 58, 84, 90, 44, 93, 32
_NS_PER_S = 1_000_000_000


@njit(cache=True)
def _match(buf: bytes, pos: int, literal: tuple[int, ...]) -> int:
    """The position after `literal` if it is at pos, else -1 (also for pos -1)."""
    if pos < 0 or pos + len(literal) > len(buf):
        return -1
    for i in range(len(literal)):
        if buf[pos + i] != literal[i]:
            return -1
    return pos + len(literal)


@njit(cache=True)
def _digit(buf: bytes, pos: int) -> int:
    """The digit at pos (in bounds), or -1."""
    d = int(buf[pos]) - _DIGIT_0
    return d if 0 <= d <= 9 else -1


@njit(cache=True)
def _fixed_digits(buf: bytes, pos: int, n: int) -> int:
    """The value of exactly n digits at pos (in bounds), or -1."""
    value = 0
    for i in range(pos, pos + n):
        d = _digit(buf, i)
        if d < 0:
            return -1
        value = value * 10 + d
    return value


@njit(cache=True)
def _digit_run(buf: bytes, pos: int, max_digits: int) -> tuple[int, int]:
    """(end, value) of 1..max_digits digits at pos; end is -1 for none or too many."""
    if pos < 0:
        return -1, 0
    value, end = 0, pos
    while end < len(buf) and _digit(buf, end) >= 0:
        if end - pos == max_digits:
            return -1, 0
        value = value * 10 + _digit(buf, end)
        end += 1
    return (end, value) if end > pos else (-1, 0)


@njit(cache=True)
def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (year >= 0)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


@njit(cache=True)
def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month == 4 or month == 6 or month == 9 or month == 11 else 31


@njit(cache=True)
def _second_ns(buf: bytes, pos: int, separator: int) -> int:
    """Epoch ns of "YYYY-MM-DD?HH:MM:SS" (? the separator) at pos (19 bytes in bounds), or -1."""
    if (buf[pos + 4] != _DASH or buf[pos + 7] != _DASH or buf[pos + 10] != separator
            or buf[pos + 13] != _COLON or buf[pos + 16] != _COLON):
        return -1
    year, month = _fixed_digits(buf, pos, 4), _fixed_digits(buf, pos + 5, 2)
    day, hour = _fixed_digits(buf, pos + 8, 2), _fixed_digits(buf, pos + 11, 2)
    minute, second = _fixed_digits(buf, pos + 14, 2), _fixed_digits(buf, pos + 17, 2)
    if (not _MIN_YEAR <= year <= _MAX_YEAR or not 1 <= month <= 12 or not 0 <= hour <= 23
            or not 0 <= minute <= 59 or not 0 <= second <= 59
            or not 1 <= day <= _days_in_month(year, month)):
        return -1
    seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return seconds * _NS_PER_S


@njit(cache=True)
def _instant_ns(buf: bytes, pos: int, separator: int) -> tuple[int, int]:
    """(end, epoch ns) of "YYYY-MM-DD?HH:MM:SS" and an optional "." with 1-9 digits at pos;
    end -1: a miss. A '.' must be followed by a digit."""
    if pos < 0 or pos + 20 > len(buf):
        return -1, 0
    base = _second_ns(buf, pos, separator)
    if base < 0:
        return -1, 0
    if buf[pos + 19] != _DOT:
        return pos + 19, base
    end, fraction = _digit_run(buf, pos + 20, 9)
    if end < 0:
        return -1, 0
    return end, base + fraction * _SCALE[end - pos - 20]


@njit(cache=True)
def time_ns(buf: bytes, pos: int) -> tuple[int, int]:
    """(end, epoch ns) of an RFC 3339 UTC time at pos (see the module doc); end -1: a miss."""
    end, value = _instant_ns(buf, pos, _T)
    if end < 0 or end >= len(buf) or buf[end] != _Z:
        return -1, 0
    return end + 1, value


@njit(cache=True)
def go_time_ns(buf: bytes, pos: int) -> tuple[int, int]:
    """(end, epoch ns) of a heartbeat's Go time at pos, "YYYY-MM-DD HH:MM:SS.<1-9 digits>
    +0000 UTC" with an optional monotonic reading " m=+<digits and dots>"; end -1: a miss."""
    end, value = _instant_ns(buf, pos, _SPACE)
    if end < 0 or end == pos + 19:
        return -1, 0  # no fraction: left to the slow path
    end = _match(buf, end, _UTC)
    after = _match(buf, end, _MONOTONIC)
    if after < 0:
        return end, value
    end = after
    while end < len(buf) and (buf[end] == _DOT or _digit(buf, end) >= 0):
        end += 1
    return (end, value) if end > after else (-1, 0)


@njit(cache=True)
def decimal(buf: bytes, pos: int) -> tuple[int, float]:
    """(end, value) of a positive plain decimal at pos equal to Python's float(); end -1: a miss.

    A mantissa m below 2**53 and 10**k are both exact doubles, so their IEEE quotient is the
    correctly rounded value of the text; a larger m (17 or 18 digits, as in the shortest repr
    of most doubles) is divided in exact integers and rounded once (`_rounded_quotient`).
    """
    if pos < 0:
        return -1, 0.0
    mantissa, significant, end, dot = 0, 0, pos, -1
    while end < len(buf):
        if buf[end] == _DOT and dot < 0 and end > pos:
            dot = end
            end += 1
            continue
        d = _digit(buf, end)
        if d < 0:
            break
        significant += 1 if mantissa > 0 or d > 0 else 0
        if significant > _MAX_SIGNIFICANT:
            return -1, 0.0
        mantissa = mantissa * 10 + d
        end += 1
    k = 0 if dot < 0 else end - dot - 1
    if end == pos or dot == end - 1 or k >= len(_POW10) or mantissa == 0:
        return -1, 0.0
    if mantissa < _EXACT_DOUBLE_LIMIT:
        return end, mantissa / _POW10[k]
    value = _rounded_quotient(mantissa, k)
    return (end, value) if value > 0.0 else (-1, 0.0)


@njit(cache=True)
def _rounded_quotient(m: int, k: int) -> float:
    """m / 10**k rounded to the nearest double, ties to even, for 2**53 <= m < 2**60 and k <= 22;
    0.0 where it would need more than 64-bit integers (then the caller misses).

    m / 10**k = (m / 5**k) * 2**-k. The quotient q = m * 2**s // 5**k, with s chosen so that q
    has 56 or 57 bits, is first estimated in floating point (off by at most a few dozen units);
    its remainder r = m * 2**s - q * 5**k is then small, so it is exact in wrapping uint64
    arithmetic, and it corrects q. q is cut to 53 bits, rounding on the cut bits and r.
    """
    m_bits = 54
    while m >> m_bits:
        m_bits += 1
    divisor = _POW5[k]
    shift = 56 - m_bits + _POW5_BITS[k]
    if shift < 0:
        return 0.0
    q = int(math.ldexp(float(m), shift) / float(divisor))
    r = np.int64((np.uint64(m) << np.uint64(shift)) - np.uint64(q) * np.uint64(divisor))
    correction = r // divisor
    q, r = q + correction, r - correction * divisor
    cut = 4 if q >> 56 else 3  # q has 56 or 57 bits
    significand, rest, half = q >> cut, q & ((1 << cut) - 1), 1 << (cut - 1)
    if rest > half or (rest == half and (r != 0 or significand & 1 == 1)):
        significand += 1  # 2**53 after a carry is still exact
    return math.ldexp(float(significand), cut - shift - k)


@njit(cache=True)
def _product_id_end(buf: bytes, pos: int) -> int:
    """The position of the '"' closing a non-empty plain printable ASCII id at pos, or -1."""
    end = pos
    while 0 <= end < len(buf) and buf[end] != _QUOTE:
        if buf[end] < 32 or buf[end] > 126 or buf[end] == _BACKSLASH:
            return -1
        end += 1
    return end if pos < end < len(buf) else -1


@njit(cache=True)
def _trade(buf: bytes, pos: int, ints: np.ndarray, floats: np.ndarray, k: int) -> int:
    """Scan one trade object at pos into record k (wire order); the position after it, or -1."""
    row, frow = HEADER + k * TRADE_FIELDS, k * FLOAT_FIELDS
    start = _match(buf, pos, _PRODUCT_ID)
    end = _product_id_end(buf, start)
    pos, trade_id = _digit_run(buf, _match(buf, end, _TRADE_ID), 18)
    pos, price = decimal(buf, _match(buf, pos, _PRICE))
    pos, size = decimal(buf, _match(buf, pos, _SIZE))
    pos, when_ns = time_ns(buf, _match(buf, pos, _TIME))
    pos = _match(buf, pos, _SIDE)
    side = BUY
    after = _match(buf, pos, _BUY)
    if after < 0:
        side, after = SELL, _match(buf, pos, _SELL)
    if after < 0 or end < 0:
        return -1
    ints[row + PRODUCT_START], ints[row + PRODUCT_END] = start, end
    ints[row + TRADE_ID], ints[row + SIDE], ints[row + TIME_NS] = trade_id, side, when_ns
    floats[frow + PRICE], floats[frow + SIZE] = price, size
    return after


@njit(cache=True)
def _json_count(buf: bytes, pos: int) -> tuple[int, int]:
    """(end, value) of a JSON non-negative integer of at most 18 digits at pos; end -1: a miss."""
    if 0 <= pos < len(buf) - 1 and buf[pos] == _DIGIT_0 and _digit(buf, pos + 1) >= 0:
        return -1, 0  # a leading zero is not JSON
    return _digit_run(buf, pos, 18)


@njit(cache=True)
def _envelope(buf: bytes, head: tuple[int, ...], ints: np.ndarray) -> int:
    """Scan `head` and the envelope into SEQUENCE_NUM and TIMESTAMP_NS; the position after
    ',"events":[', or -1."""
    pos = _match(buf, 0, head)
    if _match(buf, pos, _CLIENT_ID) >= 0:
        pos += len(_CLIENT_ID)
    pos, stamp_ns = time_ns(buf, _match(buf, pos, _TIMESTAMP))
    pos, sequence_num = _json_count(buf, _match(buf, pos, _SEQUENCE_NUM))
    ints[SEQUENCE_NUM], ints[TIMESTAMP_NS] = sequence_num, stamp_ns
    return _match(buf, pos, _EVENTS)


@njit(cache=True)
def _trade_event_type(buf: bytes, pos: int, ints: np.ndarray) -> int:
    """Scan '{"type":"update|snapshot","trades":[' into EVENT_TYPE; the position after, or -1."""
    pos = _match(buf, pos, _TYPE)
    event_type = UPDATE
    after = _match(buf, pos, _UPDATE)
    if after < 0:
        event_type, after = SNAPSHOT, _match(buf, pos, _SNAPSHOT)
    ints[EVENT_TYPE] = event_type
    return _match(buf, after, _TRADES)


@njit(cache=True)
def _reverse(ints: np.ndarray, floats: np.ndarray, n: int) -> None:
    for k in range(n // 2):
        a, b = HEADER + k * TRADE_FIELDS, HEADER + (n - 1 - k) * TRADE_FIELDS
        for f in range(TRADE_FIELDS):
            ints[a + f], ints[b + f] = ints[b + f], ints[a + f]
        a, b = k * FLOAT_FIELDS, (n - 1 - k) * FLOAT_FIELDS
        for f in range(FLOAT_FIELDS):
            floats[a + f], floats[b + f] = floats[b + f], floats[a + f]


@njit(cache=True)
def _same_product(buf: bytes, ints: np.ndarray, k: int) -> bool:
    """Whether trade k's product id bytes are trade 0's."""
    first, row = ints[HEADER + PRODUCT_START], HEADER + k * TRADE_FIELDS
    length = ints[HEADER + PRODUCT_END] - first
    if ints[row + PRODUCT_END] - ints[row + PRODUCT_START] != length:
        return False
    for i in range(length):
        if buf[first + i] != buf[ints[row + PRODUCT_START] + i]:
            return False
    return True


@njit(cache=True)
def _finish(buf: bytes, pos: int, ints: np.ndarray, floats: np.ndarray, n: int,
            same: int) -> int:
    """n trades if the frame ends canonically at pos (its trade list's ']'), else MISS."""
    if _match(buf, pos, _TAIL) != len(buf):
        return MISS
    _reverse(ints, floats, n)
    ints[SAME_PRODUCT] = same
    return n


@njit(cache=True)
def scan_market_trades(buf: bytes, ints: np.ndarray, floats: np.ndarray) -> int:
    """Scan one frame's bytes into `ints` and `floats` (see the module doc).

    Returns the number of trades, MISS if the frame is not canonical, or GROW if the outputs
    are too small for its trades (nothing else is meaningful then; grow and scan again).
    """
    if len(ints) < HEADER:
        return GROW
    pos = _trade_event_type(buf, _envelope(buf, _HEAD, ints), ints)
    if 0 <= pos < len(buf) and buf[pos] == _CLOSE_BRACKET:
        return _finish(buf, pos, ints, floats, 0, 1)
    n, same = 0, 1
    while True:
        if HEADER + (n + 1) * TRADE_FIELDS > len(ints) or (n + 1) * FLOAT_FIELDS > len(floats):
            return GROW
        pos = _trade(buf, pos, ints, floats, n)
        if pos < 0 or pos >= len(buf):
            return MISS
        if n > 0 and same == 1 and not _same_product(buf, ints, n):
            same = 0
        n += 1
        if buf[pos] == _CLOSE_BRACKET:
            return _finish(buf, pos, ints, floats, n, same)
        if buf[pos] != _COMMA:
            return MISS
        pos += 1


@njit(cache=True)
def scan_heartbeat(buf: bytes, ints: np.ndarray) -> int:
    """Scan one heartbeats frame's bytes into `ints` (see the module doc).

    Returns 1, MISS if the frame is not canonical, or GROW if `ints` is shorter than HEADER.
    """
    if len(ints) < HEADER:
        return GROW
    pos = _envelope(buf, _HEARTBEATS_HEAD, ints)
    pos, current_ns = go_time_ns(buf, _match(buf, pos, _CURRENT_TIME))
    pos, counter = _json_count(buf, _match(buf, pos, _COUNTER))
    if _match(buf, pos, _HEARTBEAT_TAIL) != len(buf):
        return MISS
    ints[CURRENT_TIME_NS], ints[HEARTBEAT_COUNTER] = current_ns, counter
    return 1


def new_outputs(trades: int) -> tuple[np.ndarray, np.ndarray]:
    """`ints` and `floats` outputs with room for `trades` trades."""
    return (np.zeros(HEADER + trades * TRADE_FIELDS, np.int64),
            np.zeros(trades * FLOAT_FIELDS, np.float64))


def warmup() -> None:
    """Compile (or load) both scanners, each on one canonical frame."""
    trades = (b'{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.228568804Z",'
              b'"sequence_num":9,"events":[{"type":"update","trades":[{"product_id":"BTC-USD",'
              b'"trade_id":"1068572091","price":"65083.67","size":"0.01034361",'
              b'"time":"2026-08-09T21:05:48.167634Z","side":"SELL"}]}]}')
    heartbeat = (b'{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48.856364007Z",'
                 b'"sequence_num":35,"events":[{"current_time":"2026-08-09 21:05:48.854840045'
                 b' +0000 UTC m=+41691.260485341","heartbeat_counter":41691}]}')
    ints, floats = new_outputs(1)
    if (scan_market_trades(trades, ints, floats) != 1
            or scan_heartbeat(heartbeat, ints) != 1):
        raise AssertionError("frame_scan: a canonical frame was not accepted")
