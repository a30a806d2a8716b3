"""Top-N product selection: rank the universe by a score over a sliding window of our candles.

Scores, over the last `window_bars` bars of the selector's interval:
- quote_volume: sum of close * volume (traded value in the quote currency);
- volatility: sample standard deviation of log returns of the closes;
- abs_return: |last close / first close - 1|.
A product without a full window of bars has no score and no rank. The ranking refreshes on
every bar close of the interval; strategies open new positions only in the top N, while a
product that drops out stays managed by whoever holds a position in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trader.config import SelectorConfig, interval_seconds
from trader.kernels import ring
from trader.kernels.ring import CLOSE, VOLUME
from trader.market.candles import Market


def scores(bars: np.ndarray, metric: str) -> np.ndarray:
    """One score per product from bars[products, n, fields]; NaN where a bar is missing."""
    closes, volumes = bars[:, :, CLOSE], bars[:, :, VOLUME]
    if metric == "quote_volume":
        return (closes * volumes).sum(axis=1)
    if metric == "abs_return":
        return np.abs(closes[:, -1] / closes[:, 0] - 1.0)
    if metric == "volatility":
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = np.diff(np.log(closes), axis=1)
        return returns.std(axis=1, ddof=1)
    raise ValueError(f"unknown selector metric {metric!r}")


class Selector:
    """Keeps the current rank and score of every product, refreshed on bar close."""

    name = "selector"

    def __init__(self, section: SelectorConfig, market: Market) -> None:
        self.market = market
        self.section = section
        self.ranks: dict[str, int] = {}
        self.scores: dict[str, float] = {}
        self.refreshed_s: int | None = None

    @property
    def interval_s(self) -> int:
        return interval_seconds(self.section.interval)

    def apply(self, section: SelectorConfig) -> None:
        """A reloaded `[selector]`: ranks are recomputed at once."""
        self.section = section
        self.refresh()

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        """The engine's first step on a bar close: rank on the bar just closed."""
        if interval_s == self.interval_s:
            self.refresh()
            self.refreshed_s = bar_time_s

    def refresh(self) -> None:
        """Recompute every product's score and rank from the window."""
        window = self.market.windows.get(self.interval_s)
        if window is None:
            return
        n = min(self.section.window_bars, window.capacity)
        bars = ring.last_n_all(window.buf, window.head, n)
        slots = self.market.slots
        ids = list(slots)
        index = np.fromiter((slots[p] for p in ids), np.int64, len(ids))
        full = window.count[index] >= n
        values = np.where(full, scores(bars[index], self.section.metric), np.nan)
        finite = np.isfinite(values)
        order = np.argsort(-np.where(finite, values, -np.inf), kind="stable")
        ranked = order[finite[order]].tolist()  # whole arrays: no per-product numpy scalars
        self.ranks = {ids[i]: rank for rank, i in enumerate(ranked, start=1)}
        kept = np.flatnonzero(finite).tolist()
        self.scores = dict(zip([ids[i] for i in kept], values[finite].tolist(), strict=True))

    def top(self) -> list[str]:
        """The products new positions may be opened in, best first."""
        return [p for p, rank in sorted(self.ranks.items(), key=lambda kv: kv[1])
                if rank <= self.section.top_n]

    def mask(self, n_slots: int) -> np.ndarray:
        """Window slots of the top N products (what strategies without products trade)."""
        allowed = np.zeros(n_slots, np.bool_)
        for product_id in self.top():
            allowed[self.market.slots[product_id]] = True
        return allowed

    def allows(self, product_id: str) -> bool:
        rank = self.ranks.get(product_id)
        return rank is not None and rank <= self.section.top_n

    def snapshot(self) -> dict[str, Any]:
        return {
            "metric": self.section.metric, "top_n": self.section.top_n,
            "products": {p: {"rank": self.ranks.get(p), "score": self.scores.get(p)}
                         for p in self.market.slots},
        }
