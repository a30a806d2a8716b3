"""Rows for the writer from what the engine produces: closed bars and signals.

The recorder listens after the engine (it registers last), so a bar close reaches the
strategies before its candles are turned into rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from trader.kernels import ring
from trader.market import Market
from trader.types import Signal

WriteMany = Callable[[str, Iterable[tuple]], None]


class CandleRecorder:
    """Hands every closed candle of every product and interval to the writer."""

    def __init__(self, market: Market, write_many: WriteMany) -> None:
        self.market = market
        self.write_many = write_many
        market.listeners.append(self.on_bar)

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        window = self.market.windows[interval_s]
        newest = ring.last_n_all(window.buf, window.head, 1)[:, 0, :]
        time = datetime.fromtimestamp(bar_time_s, UTC)
        self.write_many("candles", [
            (product_id, interval_s, time, *map(float, newest[slot, ring.OPEN:]))
            for product_id, slot in self.market.slots.items()
            if newest[slot, ring.TIME] == bar_time_s and not math.isnan(newest[slot, ring.CLOSE])
        ])


def signal_row(signal: Signal) -> tuple:
    """A `signals` row (columns in `schema.TABLES["signals"]` order)."""
    return (utc_datetime(signal.bar_time_ns), signal.strategy,
            signal.product_id, str(signal.action), signal.score, signal.stop,
            signal.take_profit, signal.reason)


def utc_datetime(time_ns: int) -> datetime:
    """Exact to the microsecond (a float of seconds is not)."""
    seconds, rest_ns = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest_ns // 1000)
