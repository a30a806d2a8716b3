"""Domain values: frozen slotted dataclasses and enums. Timestamps are int ns named `*_ns`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Mode(enum.StrEnum):
    """How orders leave the daemon."""

    PAPER = "paper"
    SHADOW = "shadow"
    LIVE = "live"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade print.

    `side` is the aggressor's (taker's) side. Coinbase's wire `side` on `market_trades` is the
    maker's, so the parser flips it: a wire "SELL" (a resting ask was hit) is `Side.BUY` here.
    `time_ns` is the exchange's match time; `trade_id` is contiguous per product.
    """

    product_id: str
    trade_id: int
    price: float
    size: float
    side: Side
    time_ns: int


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and 24 h statistics from one ticker update.

    `time_ns` is the frame's send time (tickers carry no time of their own). The four best
    bid/ask fields are None on `ticker_batch`, which does not send them.
    `price_change_24h_pct` is in percent (1.5 means +1.5 %).
    """

    product_id: str
    price: float
    best_bid: float | None
    best_ask: float | None
    best_bid_size: float | None
    best_ask_size: float | None
    volume_24h: float
    low_24h: float
    high_24h: float
    price_change_24h_pct: float
    time_ns: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Exchange clock tick, about once a second; `heartbeat_counter` is server-wide, +1 each."""

    current_time_ns: int
    heartbeat_counter: int


@dataclass(frozen=True, slots=True)
class Product:
    """A tradable product and the rules its orders must meet (exact decimals)."""

    product_id: str
    base_currency: str
    quote_currency: str
    base_increment: Decimal
    price_increment: Decimal
    base_min_size: Decimal
    base_max_size: Decimal
    quote_min_size: Decimal
    status: str
    trading_disabled: bool
    cancel_only: bool
    limit_only: bool
    post_only: bool
    price: float | None
    volume_24h: float


class Action(enum.StrEnum):
    """What a strategy's decision asks for on one product."""

    HOLD = "hold"
    ENTER_LONG = "enter_long"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Signal:
    """One strategy decision for one product at a bar close.

    `bar_time_ns` is the open of the bar that closed; `score` is in [-1, 1] (> 0 bullish);
    `stop` and `take_profit` are prices, None when the strategy sets none.
    """

    strategy: str
    product_id: str
    bar_time_ns: int
    score: float
    action: Action
    stop: float | None
    take_profit: float | None
    reason: str
