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


# ---- orders, fills, positions --------------------------------------------------------------
# Money is exact: prices, sizes and fees are Decimals (quote currency for fees and PnL).


class OrderKind(enum.StrEnum):
    """Whether an order opens a position or closes one (long-only spot: BUY enters)."""

    ENTRY = "entry"
    EXIT = "exit"


class OrderType(enum.StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    IOC = "ioc"


class Liquidity(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class OrderStatus(enum.StrEnum):
    """An order's state; the values are Coinbase's `status` strings where Coinbase has one.

    Coinbase's QUEUED maps to PENDING and CANCEL_QUEUED to OPEN (still working until the cancel
    is confirmed). REJECTED is ours: the create-order call answered `success: false`. UNKNOWN
    is a send that timed out or a status we cannot read; it is resolved by a lookup, and until
    then the order counts as working.
    """

    PENDING = "PENDING"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN_ORDER_STATUS"

    @property
    def is_terminal(self) -> bool:
        return self not in _WORKING


_WORKING = frozenset({OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.UNKNOWN})


class TradingState(enum.StrEnum):
    """What risk lets through: everything, exits only, or exits only with open orders to cancel."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the daemon means to send, journaled before it leaves.

    Exactly one of `size` (base) and `quote_size` (quote, market buys) is set. `limit_price`
    is None for market orders. `client_order_id` is minted by `registry.client_order_id` from
    (strategy, product_id, bar_time_ns, attempt), so a re-send after a restart is the same
    order to Coinbase. `stop_price` and `take_profit_price` are the strategy's exit levels for
    the position an entry opens (None: risk's configured percentages apply).
    """

    strategy: str
    product_id: str
    side: Side
    kind: OrderKind
    order_type: OrderType
    size: Decimal | None
    quote_size: Decimal | None
    limit_price: Decimal | None
    post_only: bool
    time_in_force: TimeInForce
    bar_time_ns: int
    attempt: int
    client_order_id: str
    reason: str
    stop_price: Decimal | None = None
    take_profit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What the exchange (or the paper engine) says about one order now.

    `filled_size`, `average_filled_price` and `total_fees` are cumulative over the order's life,
    so an older update is recognisable and never moves state backwards. `time_ns` is the
    exchange's event time.
    """

    client_order_id: str
    order_id: str
    product_id: str
    side: Side
    status: OrderStatus
    filled_size: Decimal
    average_filled_price: Decimal
    total_fees: Decimal
    time_ns: int
    reject_reason: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one order; `(product_id, trade_id)` identifies it across sources.

    `fee` is in the quote currency, `time_ns` the exchange's trade time.
    """

    trade_id: str
    order_id: str
    client_order_id: str
    product_id: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal
    liquidity: Liquidity
    time_ns: int


@dataclass(frozen=True, slots=True)
class Order:
    """Read-only view of one order as the registry knows it.

    `strategy` is "" for an order the daemon did not place (seen only in updates);
    `kind` is then inferred from the side. `updated_ns` is the time of the last accepted
    update (0 while only the intent is known).
    """

    client_order_id: str
    order_id: str
    strategy: str
    product_id: str
    side: Side
    kind: OrderKind
    status: OrderStatus
    size: Decimal | None
    quote_size: Decimal | None
    limit_price: Decimal | None
    filled_size: Decimal
    average_filled_price: Decimal
    total_fees: Decimal
    updated_ns: int
    reject_reason: str


@dataclass(frozen=True, slots=True)
class Position:
    """Read-only view of one held product (long only).

    `cost` is what the held `size` cost (average-cost basis, fees excluded);
    `realized_pnl` is from partial exits of this position, before fees; `fees` are all fees
    paid on it so far. `mark_price` is the last price given to `Registry.mark` (None: none yet,
    and `unrealized_pnl` is then 0); `peak_price` is the highest mark since entry, for trailing
    stops. `strategy` is the owner ("" if its entry was not ours).
    """

    product_id: str
    strategy: str
    size: Decimal
    cost: Decimal
    average_entry_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    unrealized_pnl: Decimal
    mark_price: Decimal | None
    peak_price: Decimal
    stop_price: Decimal | None
    take_profit_price: Decimal | None
    opened_ns: int
    updated_ns: int


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One round trip, from the first entry fill to the fill that brought the size to zero.

    `pnl` = `realized_pnl` - `fees` (net, quote currency); `size` is the total bought.
    """

    product_id: str
    strategy: str
    size: Decimal
    average_entry_price: Decimal
    average_exit_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    pnl: Decimal
    opened_ns: int
    closed_ns: int
