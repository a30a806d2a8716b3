"""Coinbase's time texts to exact epoch nanoseconds: RFC 3339 and Go's `time.String()`.

The one place that reads them (market-data frames, the user channel, REST bodies). A malformed
or impossible time raises `FrameError("bad_time")`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from trader.errors import FrameError

# "YYYY-MM-DDTHH:MM:SS" in ASCII digits (heartbeats have a space for the "T"), then the fraction
_SECOND: Final = r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?"
# then a zone: "Z", or "+HHMM" / "-HH:MM" followed by anything (Go adds " UTC m=+4.2")
_GO_TIME: Final = re.compile(_SECOND + r" *(?:Z|([+-])(\d\d):?(\d\d))", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1)
_ONE_SECOND: Final = timedelta(seconds=1)


def parse_rfc3339_ns(text: str) -> int:
    """UTC RFC3339 ("2026-08-09T21:05:42.514318Z", 0-9 fraction digits) to exact epoch ns.

    Checked by position rather than by a regex (two of these per trade frame: the regex was a
    fifth of ingest); `datetime.fromisoformat` checks the digits and the calendar.
    """
    second, fraction = text[:19], text[19:-1]
    if not (text.isascii() and 20 <= len(text) <= 30 and text[-1] == "Z"
            and second[4] == second[7] == "-" and second[10] == "T"
            and second[13] == second[16] == ":"
            and (not fraction or (fraction[0] == "." and fraction[1:].isdigit()))):
        raise FrameError("bad_time", text[:40])
    return _second_ns(second, text) + _fraction_ns(fraction[1:] or None)


def parse_go_time_ns(text: str) -> int:
    """Go `time.String()` text ("2026-08-09 21:05:48.85484 +0000 UTC m=+4.2") to epoch ns."""
    match = _GO_TIME.match(text)
    if match is None:
        raise FrameError("bad_time", text[:40])
    second, fraction, sign, hours, minutes = match.groups()
    time_ns = _second_ns(second, text) + _fraction_ns(fraction)
    if sign is None:  # "Z"
        return time_ns
    if int(hours) > 23 or int(minutes) > 59:
        raise FrameError("bad_time", text[:40])
    offset_ns = (int(hours) * 3600 + int(minutes) * 60) * 1_000_000_000
    return time_ns - offset_ns if sign == "+" else time_ns + offset_ns


def _second_ns(second: str, text: str) -> int:
    """Epoch ns of the whole second `second` ("YYYY-MM-DDTHH:MM:SS") of `text`."""
    try:
        moment = datetime.fromisoformat(second)
    except ValueError:  # a month, day, hour, minute or second out of range
        raise FrameError("bad_time", text[:40]) from None
    return (moment - _EPOCH) // _ONE_SECOND * 1_000_000_000


def _fraction_ns(digits: str | None) -> int:
    """Nanoseconds of a fraction's 1-9 digits ("5" is 500_000_000); 0 for none."""
    return 0 if digits is None else int(digits.ljust(9, "0"))
