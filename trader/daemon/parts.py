"""The daemon's parts, built from the config in dependency order, and a reload applied to them.

Every collaborator goes in through a constructor; the one mutual need (the trading core and
its execution) is met by one `bind`. What happens on a bar close is `Engine.on_bar`'s to say.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trader import config as cfg
from trader.clock import Clock, wall_ns
from trader.coinbase.auth import CREDENTIAL_NAME, AuthError, load_credentials
from trader.coinbase.catalog import ProductCatalog
from trader.coinbase.feed import MarketFeed
from trader.coinbase.repair import CandleRepairer
from trader.coinbase.rest import Pacer, RestTimer
from trader.daemon.events import EquityCurve, EventLog
from trader.daemon.metrics import Metrics
from trader.engine import BarSink, Engine, TradeColumnsSink
from trader.execution.live import LiveExecution
from trader.execution.paper import PaperExecution
from trader.execution.shadow import ShadowExecution
from trader.market.candles import Market
from trader.market.quotes import QuoteBook
from trader.market.selector import Selector
from trader.signals.book import SignalBook, SignalSink
from trader.signals.runner import StrategyRunner
from trader.store.recorder import (
    CandleRecorder,
    EquityRecorder,
    OrderRecorder,
    fill_row,
    signal_row,
)
from trader.strategy import LoadedStrategy
from trader.trading.orders import FillSink, OrderSink, Trading
from trader.trading.registry import Registry
from trader.trading.risk import RiskManager
from trader.types import Fill, Mode, Quote, Signal

if TYPE_CHECKING:
    from trader.store.writer import Writer

JOURNAL_NAME = "orders.journal"
AnyExecution = PaperExecution | ShadowExecution | LiveExecution


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything the daemon runs, built once by `build_parts`."""

    market: Market
    quotes: QuoteBook
    selector: Selector
    runner: StrategyRunner
    book: SignalBook
    registry: Registry
    risk: RiskManager
    execution: AnyExecution
    trading: Trading
    engine: Engine
    repairer: CandleRepairer
    catalog: ProductCatalog
    market_feed: MarketFeed
    writer: Writer | None
    events: EventLog  # the status view's recent events
    equity: EquityCurve  # and the session's equity

    def apply(self, config: cfg.Config, changed: set[str]) -> None:
        """Hand each part the reloaded sections it reads, each as its own typed section."""
        execution = self.execution
        if "market" in changed:
            self.engine.apply_market(config.market)
            self.market_feed.apply_market(config.market)
        if "coinbase" in changed:
            self.market_feed.apply_coinbase(config.coinbase)
            if isinstance(execution, LiveExecution):
                execution.apply_coinbase(config.coinbase)
        if "selector" in changed:
            self.selector.apply(config.selector)
        if "execution" in changed:
            self.trading.apply(config.execution)
            if isinstance(execution, LiveExecution):
                execution.apply_execution(config.execution)
        if "risk" in changed:
            self.trading.apply_risk(config.risk)
        if "paper" in changed and isinstance(execution, PaperExecution):
            execution.apply(config.paper)
        if "storage" in changed and self.writer is not None:
            self.writer.apply(config.storage)


def build_parts(config: cfg.Config, environ: Mapping[str, str],
                strategies: Mapping[str, LoadedStrategy], clock: Clock = wall_ns,
                metrics: Metrics | None = None) -> Parts:
    """Every part, each built from what it needs (AuthError: live mode without a key).

    `clock` times trading, risk and paper fills: the wall clock, or a replay's exchange clock
    (a simulator run faster than real time). `metrics`: where the parts' latencies go."""
    metrics = metrics or Metrics(dict)
    writer = _writer(config, metrics.observe_flush)
    quotes = QuoteBook()
    market = build_market(config)
    registry = Registry()
    risk = RiskManager(config.risk, registry, clock)
    execution = build_execution(config, quotes.view, environ, clock, metrics.observe_rest)
    order_sinks, fill_sinks, signal_sinks = _storage_sinks(writer)
    events = EventLog()
    order_sinks += [events.on_order, metrics.frame_timer.on_order]
    fill_sinks.append(events.on_fill)
    signal_sinks.append(events.on_signal)
    trading = Trading(registry, risk, execution, config.execution, quotes.view, clock,
                      flatten_on_kill=config.risk.flatten_on_kill, order_sinks=order_sinks,
                      fill_sinks=fill_sinks)
    execution.bind(trading)
    selector = Selector(config.selector, market)
    runner = StrategyRunner(strategies)
    book = SignalBook(signal_sinks)
    equity = EquityCurve(execution.equity_usd)
    bar_sinks = [*_bar_sinks(writer, market, trading), equity.on_bar]
    repairer = CandleRepairer(market, config.coinbase.rest_url, config.coinbase.public_rest_rps,
                              observe_rest=metrics.observe_rest)
    engine = Engine(market, quotes=quotes, runner=runner, book=book, selector=selector,
                    trading=trading, bar_sinks=bar_sinks,
                    trade_sinks=_trade_sinks(execution), on_repair_needed=repairer.wake,
                    observe_bar_close=metrics.observe_bar_close)
    catalog = ProductCatalog(config.coinbase.rest_url, Pacer(1.0), trading.set_products,
                             observe_rest=metrics.observe_rest)
    market_feed = MarketFeed(config.coinbase.ws_url, config.market.products, engine,
                             config.coinbase.stale_after_s, frame_timer=metrics.frame_timer)
    return Parts(market, quotes, selector, runner, book, registry, risk, execution, trading,
                 engine, repairer, catalog, market_feed, writer, events, equity)


def build_market(config: cfg.Config) -> Market:
    """The candle builder and windows for the configured products and intervals."""
    section = config.market
    intervals_s = [cfg.interval_seconds(i) for i in section.intervals]
    return Market(section.products, intervals_s, section.window_bars, section.close_grace_ms,
                  section.warmup_bars)


def build_execution(config: cfg.Config, quotes: Mapping[str, Quote],
                    environ: Mapping[str, str], clock: Clock = wall_ns,
                    observe_rest: RestTimer | None = None) -> AnyExecution:
    """The execution of `daemon.mode`, to be bound to the trading core built from it."""
    mode = config.daemon.mode
    if mode == Mode.PAPER:
        return PaperExecution(config.paper, quotes, clock)
    if mode == Mode.SHADOW:
        return ShadowExecution(config.paper, quotes, clock)
    credentials = load_credentials(config.coinbase.key_file, environ)
    if credentials is None:
        raise AuthError("live mode needs a CDP API key: set coinbase.key_file, or "
                        "COINBASE_API_KEY and COINBASE_API_SECRET, or the systemd credential "
                        f"{CREDENTIAL_NAME}")
    journal = Path(config.daemon.state_dir) / JOURNAL_NAME
    return LiveExecution(journal, credentials, config.coinbase, config.execution, quotes,
                         observe_rest=observe_rest)


def _writer(config: cfg.Config, observe_flush: Callable[[str, float], None]) -> Writer | None:
    """The database writer when `storage.dsn` is set (asyncpg is loaded only then: 4 MiB)."""
    if not config.storage.dsn:
        return None
    from trader.store.writer import Writer

    return Writer(config.storage.dsn, config.storage, Path(config.daemon.state_dir),
                  observe_flush=observe_flush)


def _storage_sinks(writer: Writer | None
                   ) -> tuple[list[OrderSink], list[FillSink], list[SignalSink]]:
    """Where orders, fills and signals go besides the status view: the database's tables."""
    if writer is None:
        return [], [], []

    def write_fill(fill: Fill) -> None:
        writer.write("fills", fill_row(fill))

    def write_signal(signal: Signal) -> None:
        writer.write("signals", signal_row(signal))

    return [OrderRecorder(writer.write, time.time_ns).on_order], [write_fill], [write_signal]


def _bar_sinks(writer: Writer | None, market: Market, trading: Trading) -> list[BarSink]:
    if writer is None:
        return []
    return [CandleRecorder(market, writer.write_many).on_bar,
            EquityRecorder(trading, writer.write).on_bar]


def _trade_sinks(execution: AnyExecution) -> list[TradeColumnsSink]:
    """Paper and shadow fill resting orders against the public trades."""
    return [execution.on_trade_columns] if isinstance(execution, PaperExecution) else []
