"""Bar fills: the paper execution's rules applied to candles instead of the trade stream.

Per bar, before its close is traded on (`on_bar_open`, then `on_bar`):
- an order waiting for the open (a market order sent at an earlier close; under
  `next_open`, every order) fills whole at the bar's open plus the slippage for a buy, minus
  it for a sell, as a taker;
- a resting limit buy fills whole at its limit when the bar's low is under it (the market
  traded through it), a limit sell when the bar's high is over it, as a maker.
A fill is timed at the bar's open. Balances, holds, fees and refusals are the paper
execution's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from trader import money
from trader.clock import Clock
from trader.config import PaperConfig
from trader.execution.paper import Defer, PaperExecution, PaperOrder
from trader.types import (
    Liquidity,
    OrderIntent,
    OrderStatus,
    OrderType,
    Product,
    Quote,
    Side,
    TimeInForce,
)


class BarExecution(PaperExecution):
    """The execution port of a backtest, filled by bars (see the module docstring)."""

    name = "backtest"

    def __init__(self, section: PaperConfig, quotes: Mapping[str, Quote], clock: Clock,
                 defer: Defer, next_open: bool = False) -> None:
        super().__init__(section, quotes, clock, defer)
        self.next_open = next_open
        self.at_open: dict[str, PaperOrder] = {}  # client order id -> order, in send order
        self.reasons: dict[str, str] = {}  # client order id -> the intent's reason
        self._opening = False

    def _accept(self, intent: OrderIntent) -> None:
        self.reasons.setdefault(intent.client_order_id, intent.reason)
        if self.next_open and intent.order_type is OrderType.LIMIT:
            intent = replace(intent, order_type=OrderType.MARKET, limit_price=None,
                             post_only=False, time_in_force=TimeInForce.IOC)
        super()._accept(intent)

    def _take(self, order: PaperOrder, product: Product, quote: Quote | None) -> None:
        """A market order waits for the next bar's open (the paper one fills at the touch)."""
        if self._opening:
            return super()._take(order, product, quote)
        self._hold(order, quote)
        self.at_open[order.intent.client_order_id] = order
        self._report(order, OrderStatus.OPEN)

    def _cancel(self, client_order_id: str) -> None:
        order = self.at_open.pop(client_order_id, None)
        if order is not None:
            self._release(order, order.remaining)
            self._report(order, OrderStatus.CANCELLED)
            return
        super()._cancel(client_order_id)

    # ---- the bars --------------------------------------------------------------------------

    def on_bar_open(self, bars: Mapping[str, tuple[float, float, float, float]],
                    time_ns: int) -> None:
        """Fill what bar (open, high, low, close) of each product allows, orders in send order."""
        self._opening = True
        try:
            for cid, order in list(self.at_open.items()):
                bar = bars.get(order.intent.product_id)
                if bar is not None and bar[0] == bar[0]:  # not NaN: the product traded
                    del self.at_open[cid]
                    self._at_open(order, bar[0], time_ns)
        finally:
            self._opening = False
        for product_id, resting in self.resting.items():
            bar = bars.get(product_id)
            if resting and bar is not None:
                for order in list(resting.values()):
                    self._through(order, bar[2], bar[1], time_ns)

    def _at_open(self, order: PaperOrder, open_price: float, time_ns: int) -> None:
        product = self.products[order.intent.product_id]
        quote = Quote(product.product_id, open_price, open_price, open_price, None, None, 0.0,
                      0.0, 0.0, 0.0, time_ns)
        self._release(order, order.remaining)  # the hold was at the close; the fill is not
        clock, self.clock = self.clock, lambda: time_ns
        try:
            super()._take(order, product, quote)
        finally:
            self.clock = clock

    def _through(self, order: PaperOrder, low: float, high: float, time_ns: int) -> None:
        limit = order.intent.limit_price
        assert limit is not None, "only limit orders rest"
        if order.intent.side is Side.BUY:
            through = low == low and money.to_decimal(low) < limit
        else:
            through = high == high and money.to_decimal(high) > limit
        if through:
            self._fill(order, limit, order.remaining, Liquidity.MAKER, time_ns)

    def mark(self, closes: Mapping[str, float]) -> None:
        """The bar's closes: the prices equity is marked at."""
        self.last_price.update(closes)

