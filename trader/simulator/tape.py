"""Trades synthesized from candles: the tape the simulator replays.

Each candle with volume becomes four prints inside its minute: the open first, then the high
and the low (in the order that a candle closing up or down suggests), the close last, with
sizes summing to the candle's volume. Folding the tape back into candles gives the file's
candles exactly (prices are the very floats of the file). A minute without a candle in the
file has no trades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trader.kernels.series import CandleArrays

# Offsets of the four prints within a bar, as fractions of the bar length.
PRINT_OFFSETS = (0.05, 0.3, 0.55, 0.9)


@dataclass(frozen=True, slots=True)
class Tape:
    """One product's trades, oldest first; time in ns, trade ids consecutive from `first_id`."""

    product_id: str
    time_ns: np.ndarray  # int64
    price: np.ndarray  # float64
    size: np.ndarray  # float64
    side: np.ndarray  # bool: True when the maker was the seller (an uptick), as Coinbase says
    first_id: int

    def __len__(self) -> int:
        return len(self.time_ns)

    def trade_id(self, index: int) -> int:
        return self.first_id + index

    def span(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Index range of trades with start_ns <= time < end_ns."""
        lo, hi = np.searchsorted(self.time_ns, [start_ns, end_ns])
        return int(lo), int(hi)


def tape_from_candles(product_id: str, candles: CandleArrays, interval_s: int = 60,
                      first_id: int = 1_000_000) -> Tape:
    """The four-print tape of every candle with volume > 0."""
    keep = candles.volume > 0
    t0 = candles.time_s[keep].astype(np.int64) * 1_000_000_000
    o, h, lo, c, v = (a[keep] for a in (candles.open, candles.high, candles.low, candles.close,
                                         candles.volume))
    up = c >= o
    second = np.where(up, lo, h)  # a bar closing up dips first, one closing down rallies first
    third = np.where(up, h, lo)
    prices = np.stack([o, second, third, c], axis=1)
    quarter = v / 4.0
    sizes = np.stack([quarter, quarter, quarter, v - 3.0 * quarter], axis=1)
    offsets = (np.array(PRINT_OFFSETS) * interval_s * 1e9).astype(np.int64)
    times = t0[:, None] + offsets[None, :]
    previous = np.concatenate([[np.nan], prices.ravel()[:-1]])
    side = prices.ravel() >= np.where(np.isnan(previous), prices.ravel(), previous)
    return Tape(product_id, times.ravel(), prices.ravel(), sizes.ravel(), side, first_id)
