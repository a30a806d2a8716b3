"""Numbers for people: prices at their increment, compact volumes, signed PnL, durations,
UTC times, and a session's equity as a sparkline or a small chart."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.text import Text

SPARKS = "▁▂▃▄▅▆▇█"
def price(value: float | None, increment: str | None = None) -> Text:
    """A price at the product's increment (0.01 -> two decimals), else to 6 digits."""
    if value is None:
        return Text("-")
    decimals = _decimals(increment)
    if decimals is None:
        return Text(_significant(value, 6))
    return Text(f"{value:,.{decimals}f}")


def _decimals(increment: str | None) -> int | None:
    try:
        exponent = Decimal(increment).normalize().as_tuple().exponent if increment else None
    except InvalidOperation:
        return None
    return max(0, -exponent) if isinstance(exponent, int) else None


def _significant(value: float, digits: int) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def compact(value: float | None) -> str:
    """1234 -> 1.2k, 12345678 -> 12.3M; under 1000 to one decimal (two under 10)."""
    if value is None:
        return "-"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.0f}{suffix}" if abs(scaled) >= 100 else f"{scaled:.1f}{suffix}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def score(value: float | None) -> str:
    """Two decimals; from a thousand up with a suffix (1.89M)."""
    if value is None:
        return "-"
    if abs(value) < 1000:
        return f"{value:.2f}"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.2f}"  # unreachable: 1e3 matched


def money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def signed(value: float | None, suffix: str = "") -> Text:
    """A PnL: two decimals with its sign, green when up, red when down."""
    if value is None:
        return Text("-")
    if round(value, 2) == 0:
        return Text(f"0.00{suffix}")
    return Text(f"{value:+,.2f}{suffix}", style="green" if value > 0 else "red")


def size(value: float | None) -> str:
    """A base size to at most 8 decimals, without trailing zeros."""
    if value is None:
        return "-"
    text = f"{value:,.8f}"
    return text.rstrip("0").rstrip(".")


def figure(value: Any) -> str:
    """A counter or a rate: thousands separated, floats to at most 3 decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return _significant(value, 4) if abs(value) < 1 else f"{value:,.{_few(value)}f}"
    return "-" if value is None else str(value)


def _few(value: float) -> int:
    return 1 if abs(value) >= 10 else 2


def plain(value: Any) -> str:
    return "-" if value is None else str(value)


def duration(seconds: float | None) -> str:
    """4s, 3m05s, 2h07m, 1d03h."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def utc_time(time_ns: int | None) -> str:
    return "--:--:--" if not time_ns else time.strftime("%H:%M:%S", time.gmtime(time_ns / 1e9))


def sparkline(values: Sequence[float], columns: int) -> str:
    """`values` as at most `columns` block characters, the newest last."""
    return chart(values, columns, 1)[0]


def chart(values: Sequence[float], columns: int, rows: int) -> list[str]:
    """`values` as a block chart `rows` lines high (top first) and at most `columns` wide;
    each column is the mean of its share of the values, the lowest one block high."""
    values = _resampled(values, columns)
    low, high = min(values), max(values)
    levels = rows * len(SPARKS)
    if high - low < 1e-9:
        heights = [levels // 2] * len(values)
    else:
        heights = [1 + round((v - low) / (high - low) * (levels - 1)) for v in values]
    return ["".join(_block(height - row * len(SPARKS)) for height in heights)
            for row in reversed(range(rows))]


def _block(fill: int) -> str:
    """The character for a cell filled `fill` eighths (<= 0: empty, >= 8: full)."""
    if fill <= 0:
        return " "
    return SPARKS[min(fill, len(SPARKS)) - 1]


def _resampled(values: Sequence[float], columns: int) -> list[float]:
    if len(values) <= columns:
        return list(values)
    step = len(values) / columns
    return [_mean(values[int(i * step):int((i + 1) * step)]) for i in range(columns)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
