"""The daemon's lifecycle: startup, run, ordered shutdown, signals and hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import uvloop

from trader import __version__, kernels, log
from trader import config as cfg
from trader.clock import Clock, wall_ns
from trader.coinbase.auth import AuthError
from trader.daemon.events import trading_detail
from trader.daemon.metrics import Metrics
from trader.daemon.parts import build_parts
from trader.daemon.reload import ConfigWatcher, ReloadResult, read_config
from trader.daemon.status import ListenError, StatusServer, read_rss_bytes
from trader.daemon.systemd import Notifier
from trader.execution.live import LiveExecution
from trader.ports import Component, Drains
from trader.signals import indicators
from trader.signals.runner import StrategyRunner
from trader.strategy import LoadedStrategy, load_strategies, reload_strategies

logger = logging.getLogger(__name__)

# Status panels of parts that later issues add; until a component of that name runs, its
# snapshot is null and the view says "not running".
PLANNED_COMPONENTS = ("feed", "market", "selector", "strategies", "trading", "risk", "storage")
READY_WAIT_S = 30.0  # READY waits this long at most for the first subscription ack
# Shutdown drains intake first and the journal last (DESIGN.md section 4).
SHUTDOWN_ORDER = ("feed", "market", "strategies", "trading", "paper", "shadow", "live",
                  "storage", "journal")

EXIT_OK, EXIT_CRASH, EXIT_CONFIG = 0, 1, 2


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
    """Owns the parts, their tasks and the running config."""

    def __init__(self, config_path: Path, config: cfg.Config, environ: Mapping[str, str],
                 strategies: Mapping[str, LoadedStrategy] | None = None,
                 clock: Clock = wall_ns) -> None:
        self.config = config
        self.environ = environ
        self.state = "starting"
        self.started_ns = time.time_ns()
        self.notifier = Notifier(environ)
        self.watcher = ConfigWatcher(
            config_path, config, self._apply_change, config.daemon.reload_poll_s,
            on_reloading=self.notifier.reloading, on_reloaded=self._reloaded)
        self.metrics = Metrics(self.snapshot)  # this daemon's registry: snapshot + latencies
        self.status = StatusServer(status_socket_path(config), self.snapshot,
                                   metrics=self.metrics.render,
                                   metrics_listen=config.status.metrics_listen)
        self.parts = parts = build_parts(config, environ, strategies or {}, clock, self.metrics)
        parts.book.set_loaded(_intervals(parts.runner.strategies), [])
        self.serving: list[Component] = [self.watcher, self.status, self.notifier]
        self.components: list[Component] = [*self.serving, parts.market_feed, parts.repairer,
                                            parts.catalog]
        if parts.writer is not None:
            self.components.append(parts.writer)
        # parts without a task of their own: their snapshots, drains and names
        self.passive: list[Any] = [parts.engine, parts.selector, parts.book, parts.trading,
                                   parts.risk]
        if isinstance(parts.execution, LiveExecution):
            self.components.append(parts.execution)  # its sender, user channel and polls
        else:
            self.passive.append(parts.execution)
        self._stop = asyncio.Event()
        self._stop_signals = 0
        self._main: asyncio.Task | None = None

    async def run(self) -> int:
        """Start everything, run until a stop signal, shut down in order; the exit code."""
        self._main = asyncio.current_task()
        self._install_signal_handlers()
        event_handler = self.parts.events.handler()  # the status view's recent log lines
        logging.getLogger("trader").addHandler(event_handler)
        try:
            async with asyncio.TaskGroup() as group:
                await self._prepare()
                # status, reload and watchdog serve while the kernels load; market data after
                started = list(self.serving)
                tasks = [group.create_task(c.run(), name=c.name) for c in started]
                # a stop asked in any start-up phase ends it at once (no "running", no READY)
                if await self._unless_stopped(self._warm_kernels()):
                    rest = [c for c in self.components if c not in self.serving]
                    started += rest
                    tasks += [group.create_task(c.run(), name=c.name) for c in rest]
                    if await self._unless_stopped(self._first_subscription()):
                        self.state = "running"
                        self.notifier.ready(self._status_line())
                        logger.info("running: %s", self._status_line())
                        await self._stop.wait()
                clean = await self._shutdown(started)
                for task in reversed(tasks):
                    task.cancel()
        except ExceptionGroup as crash:
            first = crash.exceptions[0]
            if isinstance(first, ListenError):  # a config value, not a bug: one line
                logger.error("%s", first)
                return EXIT_CONFIG
            logger.critical("crashed: %r", first, exc_info=first)
            return EXIT_CRASH
        finally:
            self._remove_signal_handlers()
            logging.getLogger("trader").removeHandler(event_handler)
        logger.info("stopped %s", "cleanly" if clean else "after the shutdown deadline")
        return EXIT_OK if clean else EXIT_CRASH

    def request_stop(self) -> None:
        self._stop.set()

    async def _prepare(self) -> None:
        state_dir = Path(self.config.daemon.state_dir)
        await asyncio.to_thread(state_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
        await self.status.start()

    async def _unless_stopped(self, step: Awaitable[None]) -> bool:
        """Await a start-up step unless a stop is asked first: True when it finished and no
        stop was asked. A step cut short is cancelled (a thread it waits on runs on, unwaited).
        """
        step_task = asyncio.ensure_future(step)
        stop_task = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((step_task, stop_task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
            if not step_task.done():
                step_task.cancel()
        if not step_task.done():  # stopped: let the step unwind its cancellation
            await asyncio.wait((step_task,))
        if not step_task.cancelled():
            step_task.result()  # a step that failed crashes the start-up as before
        return not self._stop.is_set()

    async def _warm_kernels(self) -> None:
        """Compile, or load from the numba cache, every kernel before market data flows."""
        started = time.monotonic()
        await _in_daemon_thread(lambda: warm_kernels(self.parts.runner), "warmup-kernels")
        logger.info("kernels ready in %.2f s", time.monotonic() - started)

    async def _first_subscription(self) -> None:
        try:
            async with asyncio.timeout(READY_WAIT_S):
                await self.parts.market_feed.subscribed.wait()
        except TimeoutError:
            logger.warning("no subscription ack within %.0f s; reporting ready anyway",
                           READY_WAIT_S)

    async def _shutdown(self, started: list[Component]) -> bool:
        """Drain the started components (and the passive parts) in SHUTDOWN_ORDER within the
        deadline; True when all finished."""
        self.state = "stopping"
        self.notifier.stopping()
        deadline_s = self.config.daemon.shutdown_timeout_s
        logger.info("stopping (deadline %.1f s)", deadline_s)
        try:
            async with asyncio.timeout(deadline_s):
                if self.config.execution.cancel_on_shutdown:
                    self.parts.trading.cancel_all()
                for component in self._drain_order(started):
                    logger.info("draining %s", component.name)
                    await component.drain()
        except TimeoutError:
            logger.error("shutdown deadline of %.1f s passed; cancelling the rest", deadline_s)
            return False
        return True

    def _drain_order(self, started: list[Component]) -> list[Drains]:
        draining = [c for c in [*started, *self.passive] if isinstance(c, Drains)]
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
        self.parts.trading.kill("SIGUSR1")

    def _on_hangup(self) -> None:
        logger.info("SIGHUP: reloading %s", self.watcher.path)
        self.watcher.request_reload()

    def _apply_change(self, change: cfg.ConfigChange) -> None:
        """Hand each part only the changed sections it reads."""
        self.config = change.effective
        changed = set(change.changed_sections)
        if "log" in changed:
            configure_logging(self.config.log, self.environ)
        self.parts.apply(self.config, changed)

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
            reload_strategies, directory, self.config.strategies,
            dict(self.parts.runner.strategies))
        for where, reason in errors:
            logger.error("strategy not reloaded: %s: %s", where, reason)
        if loaded != self.parts.runner.strategies:
            self.parts.runner.set_strategies(loaded)
        self.parts.book.set_loaded(_intervals(loaded), errors)

    def _status_line(self) -> str:
        products = len(self.config.market.products)
        return (f"{self.config.daemon.mode} mode, {products} products, "
                f"config v{self.watcher.version}")

    def snapshot(self) -> dict[str, Any]:
        """Everything the status view shows; null for components that are not running."""
        now_ns = time.time_ns()
        components: dict[str, Any] = dict.fromkeys(PLANNED_COMPONENTS)
        components.update({c.name: c.snapshot() for c in [*self.components, *self.passive]})
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
            "session": {"events": self.parts.events.snapshot(),
                        "equity": self.parts.equity.snapshot(),
                        **trading_detail(self.parts.trading, self.parts.events, now_ns)},
        }


async def _in_daemon_thread(func: Callable[[], None], name: str) -> None:
    """`func()` in a daemon thread of its own, awaited. Unlike `asyncio.to_thread` (whose
    pool threads are joined at loop close and at exit), a thread the daemon stopped waiting
    for (a stop during a numba compile, which cannot be interrupted) is abandoned at exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():  # nobody waits any more
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            func()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    await done


def warm_kernels(runner: StrategyRunner) -> None:
    """Compile, or load from the numba cache, every kernel and the runner's strategies."""
    kernels.warmup()
    indicators.warmup()
    runner.warmup()


def read_config_or_report(config_path: Path) -> cfg.Config | None:
    """The config, or None after printing each error with its key path."""
    parsed = read_config(config_path)
    if isinstance(parsed, cfg.Config):
        return parsed
    for key_path, reason in parsed:
        print(f"{config_path}: {key_path}: {reason}", file=sys.stderr)
    return None


def load_strategies_or_report(config: cfg.Config) -> dict[str, LoadedStrategy] | None:
    """The configured strategies, or None after printing each error (file:line)."""
    strategies = load_strategies(Path(config.daemon.strategies_dir), config.strategies)
    if isinstance(strategies, dict):
        return strategies
    for where, reason in strategies:
        print(f"{where}: {reason}", file=sys.stderr)
    return None


def _intervals(strategies: Mapping[str, LoadedStrategy]) -> dict[str, str]:
    return {name: s.config.interval or s.module.INTERVAL
            for name, s in strategies.items() if s.config.enabled}


def run_daemon(config_path: Path, environ: Mapping[str, str]) -> int:
    """`trader run`: load the config and strategies, then run on uvloop until stopped."""
    parsed = read_config_or_report(config_path)
    if parsed is None:
        return EXIT_CONFIG
    configure_logging(parsed.log, environ)
    logger.info("trader %s starting with %s", __version__, config_path)
    strategies = load_strategies_or_report(parsed)
    if strategies is None:
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
