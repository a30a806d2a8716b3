"""The daemon's lifecycle: startup, run, ordered shutdown, signals and hot reload."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from trader import __version__, kernels, log
from trader import config as cfg
from trader.coinbase.auth import CREDENTIAL_NAME, AuthError, load_credentials
from trader.coinbase.catalog import ProductCatalog
from trader.coinbase.feed import MarketFeed
from trader.coinbase.repair import CandleRepairer
from trader.coinbase.rest import Pacer
from trader.daemon.reload import ConfigWatcher, ReloadResult, read_config
from trader.daemon.status import StatusServer, read_rss_bytes
from trader.daemon.systemd import Notifier
from trader.engine import Engine
from trader.execution.live import LiveExecution
from trader.execution.paper import PaperExecution
from trader.execution.shadow import ShadowExecution
from trader.market.candles import Market
from trader.market.selector import Selector
from trader.ports import Component, Drains, Reconfigurable
from trader.signals import indicators
from trader.signals.book import SignalBook
from trader.signals.runner import StrategyRunner
from trader.store.recorder import (
    CandleRecorder,
    EquityRecorder,
    OrderRecorder,
    fill_row,
    signal_row,
)
from trader.strategy import LoadedStrategy, load_strategies, reload_strategies
from trader.trading.orders import Trading
from trader.trading.registry import Registry
from trader.trading.risk import RiskManager
from trader.types import Mode, Quote

if TYPE_CHECKING:
    from trader.store.writer import Writer

logger = logging.getLogger(__name__)

# Status panels of parts that later issues add; until a component of that name runs, its
# snapshot is null and the view says "not running".
PLANNED_COMPONENTS = ("feed", "market", "selector", "strategies", "trading", "risk", "storage")
READY_WAIT_S = 30.0  # READY waits this long at most for the first subscription ack
# Shutdown drains intake first and the journal last (DESIGN.md section 4).
SHUTDOWN_ORDER = ("feed", "market", "strategies", "trading", "paper", "shadow", "live",
                  "storage", "journal")

EXIT_OK, EXIT_CRASH, EXIT_CONFIG = 0, 1, 2
JOURNAL_NAME = "orders.journal"


def status_socket_path(config: cfg.Config) -> Path:
    """Where the status server listens: `status.socket`, or `<state_dir>/status.sock`."""
    return Path(config.status.socket or Path(config.daemon.state_dir) / "status.sock")


def configure_logging(section: cfg.LogConfig, environ: Mapping[str, str]) -> None:
    """Install the log handler that `log.format` asks for (rich only on a terminal)."""
    kind = log.resolve_format(section.format, environ, sys.stderr)
    if kind == "rich":
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
    else:
        handler = log.stream_handler(kind)
    log.install(handler, section.level)


class Daemon:
    """Owns the components, their tasks and the running config."""

    def __init__(self, config_path: Path, config: cfg.Config, environ: Mapping[str, str],
                 strategies: Mapping[str, LoadedStrategy] | None = None) -> None:
        self.config = config
        self.environ = environ
        self.state = "starting"
        self.started_ns = time.time_ns()
        self.notifier = Notifier(environ)
        self.watcher = ConfigWatcher(
            config_path, config, self._apply_change, config.daemon.reload_poll_s,
            on_reloading=self.notifier.reloading, on_reloaded=self._reloaded)
        self.status = StatusServer(status_socket_path(config), self.snapshot)
        self.market = build_market(config)
        self.quotes: dict[str, Quote] = {}  # the latest ticker per product, shared
        self.repairer = CandleRepairer(self.market, config.coinbase.rest_url,
                                       config.coinbase.public_rest_rps)
        self.selector = Selector(config.selector, self.market)
        self.book = SignalBook()
        self.runner = StrategyRunner(strategies or {})
        self.book.set_loaded(_intervals(self.runner.strategies), [])
        self.registry = Registry()
        self.risk = RiskManager(config.risk, self.registry)
        self.execution = build_execution(config, self.quotes, environ)
        self.trading = Trading(self.registry, self.risk, self.execution, config.execution)
        self.trading.quotes = self.quotes
        self.trading.flatten_on_kill = config.risk.flatten_on_kill
        self._bind_execution()
        self.catalog = ProductCatalog(config.coinbase.rest_url, Pacer(1.0),
                                      self.trading.set_products)
        self.engine = Engine(self.market, self.repairer.wake, self.selector, self.runner,
                             self.book, self.trading)
        self.engine.quotes = self.quotes
        if isinstance(self.execution, PaperExecution):  # shadow too: it fills like paper
            self.engine.trade_listeners.append(self.execution.on_trade_columns)
        self.market_feed = MarketFeed(config.coinbase.ws_url, config.market.products,
                                      self.engine, config.coinbase.stale_after_s)
        self.serving: list[Component] = [self.watcher, self.status, self.notifier]
        self.components: list[Component] = [*self.serving, self.market_feed, self.repairer,
                                            self.catalog]
        if config.storage.dsn:
            self.components.append(self._connect_storage(config))
        self.parts: list[Any] = [self.engine, self.selector, self.book, self.trading, self.risk]
        if isinstance(self.execution, LiveExecution):
            self.components.append(self.execution)  # its sender, user channel and polls
        else:
            self.parts.append(self.execution)
        self._stop = asyncio.Event()
        self._stop_signals = 0
        self._main: asyncio.Task | None = None

    def _bind_execution(self) -> None:
        """The execution reports to the trading core built from it (each needs the other)."""
        execution = self.execution
        execution.events = self.trading
        if isinstance(execution, LiveExecution):
            execution.is_open_position = self.trading.is_open_position
            execution.restore_intent = self.trading.restore_intent
        else:
            execution.products = self.trading.products

    def _connect_storage(self, config: cfg.Config) -> Writer:
        """The writer, fed with every closed candle and every signal (it never blocks them)."""
        from trader.store.writer import Writer  # asyncpg only with a database (4 MiB)

        writer = Writer(config.storage.dsn, config.storage, Path(config.daemon.state_dir))
        CandleRecorder(self.market, writer.write_many)  # listens after the engine
        EquityRecorder(self.market, self.trading, writer.write)
        self.book.sinks.append(lambda signal: writer.write("signals", signal_row(signal)))
        self.trading.order_sinks.append(OrderRecorder(writer.write, time.time_ns).on_order)
        self.trading.fill_sinks.append(lambda fill: writer.write("fills", fill_row(fill)))
        return writer

    async def run(self) -> int:
        """Start everything, run until a stop signal, shut down in order; the exit code."""
        self._main = asyncio.current_task()
        self._install_signal_handlers()
        try:
            async with asyncio.TaskGroup() as group:
                await self._prepare()
                # status, reload and watchdog serve while the kernels load; market data after
                tasks = [group.create_task(c.run(), name=c.name) for c in self.serving]
                await self._warm_kernels()
                tasks += [group.create_task(c.run(), name=c.name) for c in self.components
                          if c not in self.serving]
                await self._first_subscription()
                self.state = "running"
                self.notifier.ready(self._status_line())
                logger.info("running: %s", self._status_line())
                await self._stop.wait()
                clean = await self._shutdown()
                for task in reversed(tasks):
                    task.cancel()
        except ExceptionGroup as crash:
            first = crash.exceptions[0]
            logger.critical("crashed: %r", first, exc_info=first)
            return EXIT_CRASH
        finally:
            self._remove_signal_handlers()
        logger.info("stopped %s", "cleanly" if clean else "after the shutdown deadline")
        return EXIT_OK if clean else EXIT_CRASH

    def request_stop(self) -> None:
        self._stop.set()

    async def _prepare(self) -> None:
        state_dir = Path(self.config.daemon.state_dir)
        await asyncio.to_thread(state_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
        await self.status.start()

    async def _warm_kernels(self) -> None:
        """Compile, or load from the numba cache, every kernel before market data flows."""
        started = time.monotonic()
        await asyncio.to_thread(kernels.warmup)
        await asyncio.to_thread(indicators.warmup)
        await asyncio.to_thread(self.runner.warmup)
        logger.info("kernels ready in %.2f s", time.monotonic() - started)

    async def _first_subscription(self) -> None:
        try:
            async with asyncio.timeout(READY_WAIT_S):
                await self.market_feed.subscribed.wait()
        except TimeoutError:
            logger.warning("no subscription ack within %.0f s; reporting ready anyway",
                           READY_WAIT_S)

    async def _shutdown(self) -> bool:
        """Drain components in SHUTDOWN_ORDER within the deadline; True when all finished."""
        self.state = "stopping"
        self.notifier.stopping()
        deadline_s = self.config.daemon.shutdown_timeout_s
        logger.info("stopping (deadline %.1f s)", deadline_s)
        try:
            async with asyncio.timeout(deadline_s):
                if self.config.execution.cancel_on_shutdown:
                    self.trading.cancel_all()
                for component in self._drain_order():
                    logger.info("draining %s", component.name)
                    await component.drain()
        except TimeoutError:
            logger.error("shutdown deadline of %.1f s passed; cancelling the rest", deadline_s)
            return False
        return True

    def _drain_order(self) -> list[Drains]:
        draining = [c for c in [*self.components, *self.parts] if isinstance(c, Drains)]
        rank = {name: i for i, name in enumerate(SHUTDOWN_ORDER)}
        return sorted(draining, key=lambda c: rank.get(c.name, len(rank)))

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_kill_signal)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._stop_signals += 1
        if self._stop_signals == 1:
            logger.info("%s: shutting down (a second signal stops at once)", sig.name)
            self._stop.set()
        elif self._main is not None:
            logger.warning("%s again: cancelling at once", sig.name)
            self._main.cancel()

    def _on_kill_signal(self) -> None:
        logger.warning("SIGUSR1: kill switch (cancel open orders, halt new entries)")
        self.risk.kill("SIGUSR1")

    def _on_hangup(self) -> None:
        logger.info("SIGHUP: reloading %s", self.watcher.path)
        self.watcher.request_reload()

    def _apply_change(self, change: cfg.ConfigChange) -> None:
        """Hand each component only the changed sections it reads."""
        self.config = change.effective
        for name in change.changed_sections:
            section = getattr(self.config, name)
            if name == "log":
                configure_logging(section, self.environ)
            for component in [*self.components, *self.parts]:
                if isinstance(component, Reconfigurable) and name in component.config_sections:
                    component.apply_section(name, section)

    async def _reloaded(self, result: ReloadResult) -> None:
        if result.outcome != "rejected":
            await self._reload_strategies()
        self.notifier.ready(self._status_line())

    async def _reload_strategies(self) -> None:
        """Strategy files and sections that changed are recompiled, in a thread (numba may take
        seconds); a broken one keeps running its previous version, its error (file:line) is
        logged and shown."""
        directory = Path(self.config.daemon.strategies_dir)
        loaded, errors = await asyncio.to_thread(
            reload_strategies, directory, self.config.strategies, dict(self.runner.strategies))
        for where, reason in errors:
            logger.error("strategy not reloaded: %s: %s", where, reason)
        if loaded != self.runner.strategies:
            self.runner.set_strategies(loaded)
        self.book.set_loaded(_intervals(loaded), errors)

    def _status_line(self) -> str:
        products = len(self.config.market.products)
        return (f"{self.config.daemon.mode} mode, {products} products, "
                f"config v{self.watcher.version}")

    def snapshot(self) -> dict[str, Any]:
        """Everything the status view shows; null for components that are not running."""
        now_ns = time.time_ns()
        components: dict[str, Any] = dict.fromkeys(PLANNED_COMPONENTS)
        components.update({c.name: c.snapshot() for c in [*self.components, *self.parts]})
        return {
            "daemon": {
                "version": __version__, "pid": os.getpid(), "state": self.state,
                "mode": str(self.config.daemon.mode), "started_ns": self.started_ns,
                "now_ns": now_ns, "uptime_s": round((now_ns - self.started_ns) / 1e9, 3),
                "rss_bytes": read_rss_bytes(),
            },
            "config": self.watcher.snapshot(),
            "products": list(self.config.market.products),
            "components": components,
        }


def build_market(config: cfg.Config) -> Market:
    """The candle builder and windows for the configured products and intervals."""
    section = config.market
    intervals_s = [cfg.interval_seconds(i) for i in section.intervals]
    return Market(section.products, intervals_s, section.window_bars, section.close_grace_ms,
                  section.warmup_bars)


def build_execution(config: cfg.Config, quotes: dict[str, Quote],
                    environ: Mapping[str, str]) -> Any:
    """The execution of `daemon.mode`; its `events` (the trading core) are bound by the caller,
    which is built from it."""
    mode = config.daemon.mode
    if mode == Mode.PAPER:
        return PaperExecution(None, config.paper, {}, quotes)
    if mode == Mode.SHADOW:
        return ShadowExecution(None, config.paper, {}, quotes)
    credentials = load_credentials(config.coinbase.key_file, environ)
    if credentials is None:
        raise AuthError("live mode needs a CDP API key: set coinbase.key_file, or "
                        "COINBASE_API_KEY and COINBASE_API_SECRET, or the systemd credential "
                        f"{CREDENTIAL_NAME}")
    journal = Path(config.daemon.state_dir) / JOURNAL_NAME
    return LiveExecution(None, journal, credentials, config.coinbase, config.execution, quotes)


def _intervals(strategies: Mapping[str, LoadedStrategy]) -> dict[str, str]:
    return {name: s.config.interval or s.module.INTERVAL
            for name, s in strategies.items() if s.config.enabled}


def run_daemon(config_path: Path, environ: Mapping[str, str]) -> int:
    """`trader run`: load the config and strategies, then run on uvloop until stopped."""
    parsed = read_config(config_path)
    if not isinstance(parsed, cfg.Config):
        for key_path, reason in parsed:
            print(f"{config_path}: {key_path}: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(parsed.log, environ)
    logger.info("trader %s starting with %s", __version__, config_path)
    strategies = load_strategies(Path(parsed.daemon.strategies_dir), parsed.strategies)
    if not isinstance(strategies, dict):
        for where, reason in strategies:
            print(f"{where}: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        daemon = Daemon(config_path, parsed, environ, strategies)
    except AuthError as exc:  # the message names the source, never the key material
        print(f"{config_path}: coinbase: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(daemon.run())
        except asyncio.CancelledError:
            logger.warning("stopped by a second signal before the shutdown finished")
            return EXIT_CRASH
