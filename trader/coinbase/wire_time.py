"""Coinbase's time texts to exact epoch nanoseconds: RFC 3339 and Go's `time.String()`.

Whole seconds and minutes are cached (only valid keys), so a frame's times cost a dict hit and
the fraction's digits; a datetime is built once a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from trader.errors import FrameError

_EPOCH: Final = datetime(1970, 1, 1)
_ONE_SECOND: Final = timedelta(seconds=1)
SCALE: Final = (None, *(10 ** (9 - n) for n in range(1, 10)))  # ns per unit of n digits
SECOND_CACHE: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch ns; only valid keys
MINUTE_CACHE: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> epoch ns; only valid keys
CACHE_MAX: Final = 4096
_SEPARATOR_SWAP: Final = {"T": " ", " ": "T"}


def parse_rfc3339_ns(text: str) -> int:
    """UTC RFC3339 ("2026-08-09T21:05:42.514318Z", 0-9 fraction digits) to exact epoch ns."""
    base = SECOND_CACHE.get(text[:19])
    if base is None:
        base = second_ns(text)
    frac = text[20:-1]
    # isdecimal: exactly the characters int() reads, each as its digit value
    if text[19:20] == "." and text[-1:] == "Z" and frac.isdecimal() and len(frac) <= 9:
        return base + int(frac) * SCALE[len(frac)]
    if text[19:] == "Z":
        return base
    raise FrameError("bad_time", text[:40])


def second_ns(text: str) -> int:
    """Epoch ns of the whole second "YYYY-MM-DDTHH:MM:SS" (or with a space for "T"); cached.

    A miss costs a minute-cache lookup and two digits; a datetime only once a minute.
    """
    key = text[:19]
    separator = key[10:11]
    value = None
    if separator in _SEPARATOR_SWAP:  # heartbeats use " ", the rest "T": the same second
        value = SECOND_CACHE.get(key[:10] + _SEPARATOR_SWAP[separator] + key[11:])
    if value is None:
        value = _new_second_ns(text)
    if len(SECOND_CACHE) >= CACHE_MAX:
        SECOND_CACHE.clear()
    SECOND_CACHE[key] = value
    return value


def _new_second_ns(text: str) -> int:
    key = text[:19]
    seconds = key[17:19]
    if (len(key) != 19 or key[16] != ":" or not (seconds.isascii() and seconds.isdigit())
            or int(seconds) > 59):
        raise FrameError("bad_time", text[:40])
    minute_ns = MINUTE_CACHE.get(key[:16])
    if minute_ns is None:
        minute_ns = _minute_ns(text)
    return minute_ns + int(seconds) * 1_000_000_000


def _minute_ns(text: str) -> int:
    """Epoch ns of the minute "YYYY-MM-DDTHH:MM" (or with a space for "T"); cached."""
    key = text[:16]
    digits = key[0:4] + key[5:7] + key[8:10] + key[11:13] + key[14:16]
    if (len(key) != 16 or key[4] != "-" or key[7] != "-" or key[10] not in "T "
            or key[13] != ":" or not (digits.isascii() and digits.isdigit())):
        raise FrameError("bad_time", text[:40])
    try:
        moment = datetime(int(key[0:4]), int(key[5:7]), int(key[8:10]),
                          int(key[11:13]), int(key[14:16]))
    except ValueError:
        raise FrameError("bad_time", text[:40]) from None
    value = (moment - _EPOCH) // _ONE_SECOND * 1_000_000_000
    if len(MINUTE_CACHE) >= CACHE_MAX:
        MINUTE_CACHE.clear()
    MINUTE_CACHE[key] = value
    return value


def parse_go_time_ns(text: str) -> int:
    """Go `time.String()` text ("2026-08-09 21:05:48.85484 +0000 UTC m=+4.2") to epoch ns."""
    base = SECOND_CACHE.get(text[:19])
    if base is None:
        base = second_ns(text)
    rest = text[19:]
    end = rest.find(" ")
    frac = rest[1:end]
    # the heartbeat's own form (a fraction, then UTC), in one step
    if (rest[:1] == "." and rest[end:end + 6] == " +0000" and 1 <= len(frac) <= 9
            and frac.isascii() and frac.isdigit()):
        return base + int(frac) * SCALE[len(frac)]
    frac_end = 1
    if rest[:1] == ".":
        while frac_end < len(rest) and rest[frac_end] in "0123456789":
            frac_end += 1
        frac = rest[1:frac_end]
        if not 1 <= len(frac) <= 9:
            raise FrameError("bad_time", text[:40])
        base += int(frac) * SCALE[len(frac)]
        rest = rest[frac_end:]
    zone = rest.lstrip(" ")
    if zone[:1] == "Z":
        return base
    hhmm = zone[1:6].replace(":", "") if zone[3:4] == ":" else zone[1:5]
    if (zone[:1] not in ("+", "-") or len(hhmm) != 4 or not (hhmm.isascii() and hhmm.isdigit())
            or int(hhmm[:2]) > 23 or int(hhmm[2:]) > 59):
        raise FrameError("bad_time", text[:40])
    offset_s = int(hhmm[:2]) * 3600 + int(hhmm[2:]) * 60
    return base - offset_s * 1_000_000_000 if zone[0] == "+" else base + offset_s * 1_000_000_000
