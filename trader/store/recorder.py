"""Rows for the writer from what the daemon produces: closed bars, signals, orders, fills and
equity.

The candle and equity recorders are bar sinks: `Engine.on_bar` calls them last, after the
strategies and trading have seen the bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

from trader.kernels import ring
from trader.market.candles import Market
from trader.trading.orders import Trading
from trader.types import Fill, Order, Signal

WriteMany = Callable[[str, Iterable[tuple]], None]


class CandleRecorder:
    """Hands every closed candle of every product and interval to the writer."""

    def __init__(self, market: Market, write_many: WriteMany) -> None:
        self.market = market
        self.write_many = write_many

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


class OrderRecorder:
    """`orders` rows: one per change, upserted on the client order id.

    An order's creation time is when this process first saw it (the registry keeps no
    creation time); forgotten once the order is final, so the map stays small.
    """

    def __init__(self, write: Callable[[str, tuple], None], clock_ns: Callable[[], int]) -> None:
        self.write = write
        self.clock_ns = clock_ns
        self._created: dict[str, datetime] = {}

    def on_order(self, order: Order) -> None:
        now = utc_datetime(self.clock_ns())
        created = self._created.setdefault(order.client_order_id, now)
        if order.status.is_terminal:
            del self._created[order.client_order_id]
        self.write("orders", (
            order.client_order_id, order.order_id or None, order.strategy, order.product_id,
            str(order.side), str(order.kind),
            "limit" if order.limit_price is not None else "market", order.limit_price,
            order.size, order.quote_size, str(order.status), order.filled_size,
            order.average_filled_price if order.filled_size else None, order.total_fees,
            created, utc_datetime(order.updated_ns) if order.updated_ns else now,
            order.reject_reason))


class EquityRecorder:
    """An `equity` row at every 1-minute close: the account's value, cash and PnL."""

    def __init__(self, trading: Trading, write: Callable[[str, tuple], None]) -> None:
        self.trading = trading
        self.write = write

    def on_bar(self, interval_s: int, bar_time_s: int) -> None:
        equity = self.trading.execution.equity_usd()
        if interval_s != 60 or equity is None:
            return
        registry = self.trading.registry
        held = sum((p.size * (p.mark_price or p.average_entry_price)
                    for p in registry.positions().values()), start=Decimal(0))
        pnl = registry.pnl()
        self.write("equity", (datetime.fromtimestamp(bar_time_s, UTC),
                              self.trading.execution.name, equity - held, equity,
                              pnl.realized, pnl.unrealized, pnl.fees))


def fill_row(fill: Fill) -> tuple:
    """A `fills` row (repeats of a trade id are ignored by the table's key)."""
    return (fill.product_id, fill.trade_id, fill.order_id, fill.client_order_id or None,
            str(fill.side), fill.price, fill.size, fill.fee, str(fill.liquidity),
            utc_datetime(fill.time_ns))


def utc_datetime(time_ns: int) -> datetime:
    """Exact to the microsecond (a float of seconds is not)."""
    seconds, rest_ns = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest_ns // 1000)
