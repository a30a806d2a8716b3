"""One `trader backtest`: the request checked, the candles loaded, the run on a path, timed.

Everything a user can get wrong (a strategy name, a parameter, a date, a data file, an empty
span) comes back as a `BacktestError` whose message is the one line the command prints.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from trader import config as cfg
from trader.research.data import (
    BarData,
    DataError,
    align,
    base_seconds,
    product_in_name,
    read_file,
)
from trader.research.driver import Progress, run_engine
from trader.research.options import BacktestOptions
from trader.research.result import BacktestResult
from trader.signals.loader import LoadedStrategy, load_strategy

PATHS = ("compiled", "engine")
ProgressBar = Callable[[int], AbstractContextManager[Progress]]  # total bars -> on_progress


class BacktestError(Exception):
    """A request that cannot run; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """What `trader backtest` was asked (DESIGN.md section 3)."""

    strategy: str
    config: cfg.Config
    options: BacktestOptions
    params: tuple[str, ...] = ()  # NAME=VALUE texts, from --param
    data: Path | None = None
    products: tuple[str, ...] = ()
    since_s: int | None = None
    until_s: int | None = None
    interval: str | None = None
    path: str = "compiled"
    config_dir: Path = Path()  # where the config file is: relative paths in it start there


def parse_param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` with VALUE read as TOML (10, 2.5, true); ValueError otherwise."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"--param {text!r}: expected NAME=VALUE")
    try:
        return name.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        raise ValueError(f"--param {text!r}: {value.strip()!r} is not a number or "
                         "true/false") from None


def load_strategy_of(request: BacktestRequest) -> LoadedStrategy:
    """The strategy with the config's params, then --param, at the asked interval."""
    config = request.config
    section = config.strategies.get(request.strategy, cfg.StrategyConfig(interval=""))
    params = dict(section.params)
    for text in request.params:
        try:
            name, value = parse_param(text)
        except ValueError as exc:
            raise BacktestError(str(exc)) from None
        params[name] = value
    interval = request.interval or section.interval
    if interval:
        try:
            cfg.interval_seconds(interval)
        except ValueError as exc:
            raise BacktestError(f"--interval {interval!r}: {exc}") from None
    section = replace(section, enabled=True, interval=interval,
                      params=MappingProxyType(params))
    path = request.config_dir / config.daemon.strategies_dir / f"{request.strategy}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py") if not p.stem.startswith("_"))
        raise BacktestError(f"no strategy {request.strategy!r} in {path.parent}/ (there: "
                            f"{', '.join(known) or 'none'})")
    loaded = load_strategy(path, request.strategy, section)
    if isinstance(loaded, list):
        where, reason = loaded[0]
        raise BacktestError(f"{where.removeprefix('strategies.')}: {reason}")
    return loaded


def warmup_s(strategies: Sequence[LoadedStrategy], config: cfg.Config) -> int:
    """How much history before --since the run loads: what the daemon fetches at start
    (`market.warmup_bars` minutes), or more if a strategy or the selector needs more."""
    selector_s = cfg.interval_seconds(config.selector.interval)
    needs = [config.selector.window_bars * selector_s, config.market.warmup_bars * 60,
             *(max(s.warmup_bars, s.bars) * s.interval_s for s in strategies)]
    return max(needs) + max([selector_s, *(s.interval_s for s in strategies)])


def load_data(request: BacktestRequest, strategies: Sequence[LoadedStrategy]) -> BarData:
    """The candles of the request on one grid, or BacktestError."""
    align_s = max([cfg.interval_seconds(request.config.selector.interval),
                   *(s.interval_s for s in strategies)])
    try:
        if request.data is not None:
            candles = read_file(request.data)
            product = (request.products[0] if request.products
                       else product_in_name(request.data))
            if product is None or "-" not in product:
                raise DataError(f"name the product of {request.data.name} with --product "
                                "(e.g. BTC-USD)")
            series = {product: candles}
            base_s = base_seconds(candles)
        else:
            series = _from_database(request, strategies)
            base_s = 60
        for product in series:
            if product.partition("-")[2] != "USD":
                raise DataError(f"{product}: a backtest's cash is USD, so it trades products "
                                "quoted in USD")
        if request.since_s is not None:
            start = request.since_s - warmup_s(strategies, request.config)
            series = {p: c.between(start, 2**62) for p, c in series.items()}
        for strategy in strategies:
            if strategy.interval_s % base_s:
                raise DataError(f"the data's bars are {base_s} s; {strategy.name} decides on "
                                f"{strategy.interval_s} s bars, not a multiple")
        return align(series, base_s, request.since_s, request.until_s, align_s)
    except DataError as exc:
        raise BacktestError(str(exc)) from None


def _from_database(request: BacktestRequest, strategies: Sequence[LoadedStrategy]
                   ) -> dict[str, Any]:
    dsn = request.config.storage.dsn
    if not dsn:
        raise DataError("no --data file and no storage.dsn in the config to read candles from")
    if not request.products or request.since_s is None:
        raise DataError("reading the database needs --product ID [ID ...] and --since DATE")
    start = request.since_s - warmup_s(strategies, request.config)
    return asyncio.run(_read_database(dsn, request.products, start, request.until_s))


async def _read_database(dsn: str, products: Sequence[str], start_s: int,
                         end_s: int | None) -> dict[str, Any]:
    import asyncpg

    from trader.store.history import load_candles

    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DataError(f"cannot reach the database of storage.dsn: {exc}") from None
    try:
        return {p: await load_candles(conn, p, 60, start_s, end_s) for p in products}
    except asyncpg.PostgresError as exc:
        raise DataError(f"cannot read candles from the database: {exc}") from None
    finally:
        await conn.close()


def run(request: BacktestRequest, progress_bar: ProgressBar | None = None) -> BacktestResult:
    """Load, compile, run: the result with its timings (load_s, compile_s, run_s).

    `progress_bar(total_bars)`, when given, opens the `on_progress` of the run once the bars
    are known (the terminal's progress bar).
    """
    started = time.perf_counter()
    strategy = load_strategy_of(request)
    compiled_s = time.perf_counter() - started
    data = load_data(request, [strategy])
    loaded_s = time.perf_counter() - started - compiled_s
    if progress_bar is None:
        result = _run_on_path(request, data, strategy, None)
    else:
        with progress_bar(len(data)) as on_bars:
            result = _run_on_path(request, data, strategy, on_bars)
    timings = {"load_s": loaded_s, "compile_s": compiled_s + result.timings.get("compile_s", 0.0),
               "run_s": result.timings["run_s"]}
    return replace(result, timings=timings)


def _run_on_path(request: BacktestRequest, data: BarData, strategy: LoadedStrategy,
                 on_progress: Progress | None) -> BacktestResult:
    if request.path == "engine":
        if data.base_s != 60:
            raise BacktestError(f"--path engine steps 1-minute bars; the data's are "
                                f"{data.base_s} s (use --path compiled)")
        return run_engine(data, [strategy], request.config, request.options, on_progress)
    from trader.research.compiled import run_compiled

    return run_compiled(data, [strategy], request.config, request.options, on_progress)
