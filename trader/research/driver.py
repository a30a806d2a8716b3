"""The backtest on the live engine: stored bars stepped through `Engine.on_bar`, one by one.

The parts are the daemon's own (market windows, selector, strategy runner, signal book,
trading core with its registry and risk manager); only the clock (a `ManualClock` at bar
times), the quotes (one price increment either side of each close, the spread of a liquid
book) and the execution (`BarExecution`, fills from bars) differ. Per base bar: the fills
its prices allow, then its close through the engine, then the reprice tick, each followed
by the events it caused, in order, as the event loop would deliver them.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import numpy as np

from trader import config as cfg
from trader.clock import NS_PER_S, Clock, ManualClock
from trader.engine import Engine
from trader.kernels import ring
from trader.market.candles import Market
from trader.market.quotes import QuoteBook
from trader.market.selector import Selector
from trader.research.data import CLOSE, OPEN, VOLUME, BarData
from trader.research.fills import BarExecution
from trader.research.options import BacktestOptions, unlimited_risk
from trader.research.result import (
    BacktestResult,
    OpenTradeRecord,
    SignalRecord,
    TradeRecord,
)
from trader.signals.book import SignalBook
from trader.signals.loader import LoadedStrategy
from trader.signals.runner import StrategyRunner
from trader.trading.orders import Trading
from trader.trading.registry import Registry
from trader.trading.risk import RiskManager
from trader.types import Action, ClosedTrade, Fill, Quote, Side, Signal

Progress = Callable[[int], None]  # bars done so far
PROGRESS_EVERY = 10_000


class EquityShareRisk(RiskManager):
    """`--risk off`: no limit binds, and an entry spends a share of equity (less the taker fee
    the paper execution holds for a buy)."""

    def __init__(self, registry: Registry, clock: Clock, position_pct: float,
                 taker_fee_bps: float) -> None:
        super().__init__(unlimited_risk(), registry, clock)
        self.share = Decimal(str(position_pct)) / 100
        self.fee_rate = Decimal(str(taker_fee_bps)) / 10_000

    def entry_notional(self, equity_usd: Decimal, entry_price: Decimal,
                       stop_price: Decimal | None) -> Decimal:
        return equity_usd * self.share / (1 + self.fee_rate)


class Backtest:
    """The daemon's parts wired for one run over `data` (see the module docstring)."""

    def __init__(self, data: BarData, strategies: Sequence[LoadedStrategy],
                 config: cfg.Config, options: BacktestOptions) -> None:
        self.data = data
        self.clock = ManualClock()
        self.events: collections.deque[Callable[[], None]] = collections.deque()
        self.quotes = QuoteBook()
        self.market = _market(data, strategies, config)
        registry = Registry()
        self.risk = (RiskManager(config.risk, registry, self.clock) if options.risk_on else
                     EquityShareRisk(registry, self.clock, options.position_pct,
                                     options.taker_fee_bps))
        self.execution = BarExecution(options.paper_section(), self.quotes.view, self.clock,
                                      self.events.append, next_open=options.fill == "next-open")
        self.exit_reasons: dict[tuple[str, int], str] = {}  # (product, exit ns) -> reason
        self.trading = Trading(registry, self.risk, self.execution, config.execution,
                               self.quotes.view, self.clock, fill_sinks=(self._on_fill,))
        self.trading.set_products(data.rules.values())
        self.execution.bind(self.trading)
        self.signals: list[Signal] = []
        self.engine = Engine(self.market, quotes=self.quotes,
                             runner=StrategyRunner({s.name: s for s in strategies}),
                             book=SignalBook((self.signals.append,)),
                             selector=Selector(config.selector, self.market),
                             trading=self.trading)
        self.market.live_from_s = int(data.time_s[data.first_decided])
        # next-open fills every order at the next open: the touch only sizes it (no spread)
        increments = [data.rules[p].price_increment for p in data.products]
        self.ticks = np.array([0.0 if options.fill == "next-open" else float(i)
                               for i in increments])
        self.tick_decimals = np.array([max(0, -int(i.as_tuple().exponent)) for i in increments])

    def run(self, on_progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Step every bar; the equity and exposure at each decided bar's close."""
        data, first = self.data, self.data.first_decided
        equity = np.empty(len(data) - first)
        exposure = np.empty(len(data) - first)
        rows = np.full((len(self.market.builder.active), ring.FIELDS), np.nan)
        slots = np.array([self.market.slots[p] for p in data.products])
        for t in range(len(data)):
            if t >= first:
                self._fill(t)
            self._close(t, rows, slots)
            if t >= first:
                equity[t - first] = float(self.execution.equity_usd())
                exposure[t - first] = float(self.trading.registry.exposure_usd())
            if on_progress is not None and t % PROGRESS_EVERY == 0:
                on_progress(t)
        return equity, exposure

    def _fill(self, t: int) -> None:
        data = self.data
        open_ns = int(data.time_s[t]) * NS_PER_S
        self.clock.set(open_ns)
        bars = {p: tuple(data.bars[i, t, :VOLUME].tolist())
                for i, p in enumerate(data.products)}
        self.execution.on_bar_open(bars, open_ns)
        self._deliver()

    def _close(self, t: int, rows: np.ndarray, slots: np.ndarray) -> None:
        data = self.data
        bar_s = int(data.time_s[t])
        close_ns = (bar_s + data.base_s) * NS_PER_S
        self.clock.set(close_ns)
        closes = data.bars[:, t, CLOSE]
        bids, asks = touch(closes, self.ticks, self.tick_decimals)
        for i, product_id in enumerate(data.products):
            close = float(closes[i])
            if close == close:
                self.quotes.update(Quote(product_id, close, float(bids[i]), float(asks[i]),
                                         None, None, 0.0, 0.0, 0.0, 0.0, close_ns))
        self.execution.mark({p: c for p, c in zip(data.products, closes.tolist(), strict=True)
                             if c == c})
        rows[:, ring.TIME] = bar_s
        rows[slots, ring.OPEN:] = data.bars[:, t, OPEN:VOLUME + 1]
        self.market.push_closed(bar_s, rows.copy())
        self._deliver()
        self.trading.on_tick(close_ns)
        self._deliver()

    def _deliver(self) -> None:
        """The execution's events, in order, and whatever they cause in turn."""
        events = self.events
        while events:
            events.popleft()()

    def _on_fill(self, fill: Fill) -> None:
        if fill.side is Side.SELL and self.trading.registry.position(fill.product_id) is None:
            reason = self.execution.reasons.get(fill.client_order_id, "")
            self.exit_reasons[(fill.product_id, fill.time_ns)] = reason


def touch(closes: np.ndarray, ticks: np.ndarray, decimals: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(bids, asks): one increment under and over each close, rounded to the increment's
    decimals as numpy rounds (so the compiled path computes the very same floats)."""
    bids, asks = np.empty_like(closes), np.empty_like(closes)
    for i in range(len(closes)):
        bids[i] = np.round(closes[i] - ticks[i], decimals[i])
        asks[i] = np.round(closes[i] + ticks[i], decimals[i])
    return bids, asks


def run_engine(data: BarData, strategies: Sequence[LoadedStrategy], config: cfg.Config,
               options: BacktestOptions, on_progress: Progress | None = None
               ) -> BacktestResult:
    """One backtest on the engine itself, exact to the daemon's rules (1-minute bars)."""
    if data.base_s != 60:
        raise ValueError("the engine path steps 1-minute bars: the data's bars are "
                         f"{data.base_s} s")
    started = time.perf_counter()
    backtest = Backtest(data, strategies, config, options)
    equity, exposure = backtest.run(on_progress)
    run_s = time.perf_counter() - started
    return _result(backtest, strategies, options, equity, exposure, {"run_s": run_s})


def _market(data: BarData, strategies: Sequence[LoadedStrategy], config: cfg.Config) -> Market:
    selector_s = cfg.interval_seconds(config.selector.interval)
    intervals = {60, selector_s, *(s.interval_s for s in strategies)}
    capacity = max([config.market.window_bars, config.selector.window_bars,
                    *(max(s.warmup_bars, s.bars) + 2 for s in strategies)])
    return Market(data.products, intervals, capacity, 0, 0, spare_slots=0)


def _result(backtest: Backtest, strategies: Sequence[LoadedStrategy],
            options: BacktestOptions, equity: np.ndarray, exposure: np.ndarray,
            timings: Mapping[str, float]) -> BacktestResult:
    data = backtest.data
    first = data.first_decided
    decided_from_ns = int(data.time_s[first]) * NS_PER_S
    registry = backtest.trading.registry
    closed = sorted(registry.closed_trades(), key=lambda t: t.closed_ns)  # exit order
    trades = tuple(_trade(t, backtest.exit_reasons.get((t.product_id, t.closed_ns), ""))
                   for t in closed)
    held = tuple(OpenTradeRecord(p, pos.opened_ns // NS_PER_S, float(pos.average_entry_price),
                                 float(pos.size)) for p, pos in registry.positions().items())
    signals = tuple(SignalRecord(s.bar_time_ns // NS_PER_S, s.product_id, str(s.action),
                                 s.score) for s in backtest.signals
                    if s.bar_time_ns >= decided_from_ns and s.action is not Action.HOLD)
    fees = sum((t.fees for t in registry.closed_trades()), Decimal(0)) + sum(
        (p.fees for p in registry.positions().values()), Decimal(0))
    strategy = strategies[0]
    return BacktestResult(
        strategy=", ".join(s.name for s in strategies), params=dict(strategy.params),
        interval=cfg.interval_name(strategy.interval_s), products=data.products,
        fill=options.fill, cash=options.cash_usd, trades=trades, open_trades=held,
        signals=signals, times=data.time_s[first:].copy(), equity=equity, exposure=exposure,
        closes={p: data.bars[i, first:, CLOSE].copy() for i, p in enumerate(data.products)},
        fees_usd=float(fees), timings=dict(timings))


def _trade(trade: ClosedTrade, reason: str) -> TradeRecord:
    """A closed trade; the exit reason is its rule's name ("stop-loss", "strategy exit"...)."""
    return TradeRecord(trade.product_id, trade.opened_ns // NS_PER_S,
                       trade.closed_ns // NS_PER_S, float(trade.average_entry_price),
                       float(trade.average_exit_price), float(trade.size), float(trade.pnl),
                       float(trade.fees), reason.split(":", 1)[0])



