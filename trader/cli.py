"""The `trader` command line."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trader import __version__
from trader import config as cfg
from trader.daemon.reload import read_config
from trader.simulator.private_cli import add_private_options

if TYPE_CHECKING:
    from trader.store.backfill.run import BackfillJob

DEFAULT_CONFIG = Path("config.toml")
REFERENCE_BEGIN = "<!-- config-reference -->"  # README.md's generated block, these lines around it
REFERENCE_END = "<!-- /config-reference -->"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    _pin_numba_cache()
    return args.handler(args)


def _pin_numba_cache() -> None:
    """Give each version of the compiled sources its own numba cache directory.

    Numba checks a cached function against its own file only, while kernels inline code from
    other files; so after an upgrade a shared NUMBA_CACHE_DIR could serve stale machine code.
    Runs before numba is imported. Without NUMBA_CACHE_DIR numba caches beside the sources.
    """
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        return
    package = Path(__file__).resolve().parent
    sources = sorted(package.glob("kernels/*.py"))  # all compiled code of the package
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    os.environ["NUMBA_CACHE_DIR"] = str(Path(root) / digest[:16])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trader", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trader {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground")
    _config_option(run)
    run.set_defaults(handler=_run)

    status = commands.add_parser("status", help="live view of a running daemon")
    _config_option(status)
    status.add_argument("--socket", type=Path, help="status socket (default: from the config)")
    status.add_argument("--once", action="store_true", help="print one frame and exit")
    status.add_argument("--json", action="store_true", help="print the raw JSON and exit")
    status.set_defaults(handler=_status)

    compile_ = commands.add_parser(
        "compile", help="fill the numba cache so the first `trader run` starts at once",
        description="Compile (or load from the cache) every kernel `trader run` compiles "
        "before READY, the config's strategies included, into NUMBA_CACHE_DIR.")
    _config_option(compile_)
    compile_.set_defaults(handler=_compile)

    check = commands.add_parser("check-config", help="validate a config file")
    _config_option(check)
    check.set_defaults(handler=_check_config)

    init = commands.add_parser("init", help="write the documented default config")
    _config_option(init)
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=_init)

    reference = commands.add_parser(
        "config-reference", help="print a Markdown reference of every config key",
        description="Print the config reference (README.md, Configuration) from the schema.")
    reference.add_argument("--readme", type=Path, metavar="FILE",
                           help=f"instead, replace the block between {REFERENCE_BEGIN} and "
                           f"{REFERENCE_END} in FILE")
    reference.set_defaults(handler=_config_reference)

    _add_backfill(commands)
    _add_backtest(commands)

    sim = commands.add_parser("sim", help="a Coinbase simulator on loopback (offline tests)")
    sim.add_argument("--data", action="append", default=[], metavar="PRODUCT=FILE",
                     help="a 1-minute candle file to replay (default: the bundled sample)")
    sim.add_argument("--speed", type=float, default=1.0, help="exchange seconds per second")
    sim.add_argument("--start", type=int, help="exchange start time, unix s (default: first bar)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=0, help="0: a free port")
    sim.add_argument("--seed", type=int, default=0, help="fault generator seed")
    for fault in ("drop", "gap", "malformed", "oversized", "stall"):
        sim.add_argument(f"--{fault}-rate", type=float, default=0.0, metavar="P",
                         help=f"probability of a {fault} fault per frame")
    add_private_options(sim)
    sim.set_defaults(handler=_sim)

    demo = commands.add_parser("demo", help="offline: simulator + paper daemon + status view")
    demo.add_argument("--duration", type=float, metavar="S",
                      help="run S seconds, print one status frame and exit")
    demo.set_defaults(handler=_demo)
    return parser


def _add_backfill(commands: argparse._SubParsersAction) -> None:
    backfill = commands.add_parser(
        "backfill", help="candle history from Coinbase REST into the database or a file",
        description="Fetch candles from Coinbase's public REST API into the database "
        "(storage.dsn) or a gzip CSV file. Resumable: only what is not held yet is fetched.")
    backfill.add_argument("products", nargs="+", metavar="PRODUCT", help="e.g. BTC-USD")
    backfill.add_argument("--interval", default="1m",
                          help="candle interval: 1m (default) 5m 15m 30m 1h 2h 4h 6h 1d")
    backfill.add_argument("--since", required=True, type=_time_arg, metavar="DATE",
                          help="first bar: 2024-01-31, 2024-01-31T12:00 (UTC) or unix seconds")
    backfill.add_argument("--until", type=_time_arg, metavar="DATE",
                          help="end, exclusive (default: after the last closed bar)")
    backfill.add_argument("--out", metavar="FILE.csv.gz",
                          help="write a candle file instead of the database; with several "
                          "products the name must contain {product}")
    backfill.add_argument("-c", "--config", type=Path,
                          help="config file (default: ./config.toml if it exists)")
    backfill.add_argument("--rate", type=_positive_float, metavar="R",
                          help="requests per second (default: coinbase.public_rest_rps; "
                          "Coinbase allows 10)")
    backfill.add_argument("--batch-pages", type=int, default=10, choices=range(1, 1001),
                          metavar="N", help="pages of 300 bars stored at once (default: 10)")
    backfill.set_defaults(handler=_backfill)


def _time_arg(text: str) -> int:
    from trader.store.backfill.run import parse_time_s

    try:
        return parse_time_s(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2024-01-31, 2024-01-31T12:00 or unix seconds, got {text!r}"
        ) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _add_backtest(commands: argparse._SubParsersAction) -> None:
    from trader.research.options import FILLS
    from trader.research.run import PATHS

    backtest = commands.add_parser(
        "backtest", help="one backtest on the live engine",
        description="Run a strategy over stored candles (a candle file, or the database of "
        "storage.dsn) with the daemon's own engine, bar fills and risk rules.")
    backtest.add_argument("strategy", metavar="STRATEGY", help="strategies/<STRATEGY>.py")
    _config_option(backtest)
    backtest.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a strategy parameter, over the config's (repeatable)")
    backtest.add_argument("--data", type=Path, metavar="FILE.csv.gz", help="a candle file")
    backtest.add_argument("--product", nargs="+", default=[], metavar="ID",
                          help="products to read from the database; with --data, the file's")
    backtest.add_argument("--since", type=_time_arg, metavar="DATE",
                          help="first decided bar (earlier candles only warm up)")
    backtest.add_argument("--until", type=_time_arg, metavar="DATE", help="end, exclusive")
    backtest.add_argument("--interval", help="the strategy's bars (default: its INTERVAL)")
    backtest.add_argument("--fill", choices=FILLS, default="live",
                          help="live: the paper execution's rules on bars (default); "
                          "next-open: every order a market order at the next bar's open")
    backtest.add_argument("--fees", type=_fees_arg, metavar="MAKER_BPS,TAKER_BPS",
                          help="default: [paper] maker_fee_bps, taker_fee_bps")
    backtest.add_argument("--slippage", type=_bps_arg, metavar="BPS",
                          help="default: [paper] slippage_bps")
    backtest.add_argument("--cash", type=_positive_float, metavar="USD",
                          help="default: paper.starting_balance_usd")
    backtest.add_argument("--risk", choices=("config", "off"), default="config",
                          help="off: no risk limit or exit; each entry buys --position-pct")
    backtest.add_argument("--position-pct", type=_positive_float, default=100.0,
                          metavar="PCT", help="with --risk off: share of equity per entry")
    backtest.add_argument("--path", choices=PATHS, default="compiled",
                          help="compiled (default, fast) or engine (the daemon's objects "
                          "stepped bar by bar; 1-minute bars); both give the same trades")
    backtest.add_argument("--json", type=Path, metavar="OUT.json", help="write the result")
    backtest.add_argument("--report", type=Path, metavar="OUT.html",
                          help="write a self-contained HTML report")
    backtest.set_defaults(handler=_backtest)


def _bps_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected basis points in [0, 1000], got {text!r}")
    return value


def _fees_arg(text: str) -> tuple[float, float]:
    maker, sep, taker = text.partition(",")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected MAKER_BPS,TAKER_BPS, got {text!r}")
    return _bps_arg(maker), _bps_arg(taker)


def _backtest(args: argparse.Namespace) -> int:
    from trader.research.command import backtest_command

    config = _backfill_config(args.config, "backtest")
    if config is None:
        return 2
    return backtest_command(args, config)


def _backfill(args: argparse.Namespace) -> int:
    from trader.store.backfill.run import run

    config = _backfill_config(args.config, "backfill")
    if config is None:
        return 2
    job_or_error = _backfill_job(args, config)
    if isinstance(job_or_error, str):
        print(f"trader backfill: error: {job_or_error}", file=sys.stderr)
        return 2
    return run(job_or_error)


def _backfill_config(path: Path | None, command: str) -> cfg.Config | None:
    """The config (defaults when no -c and no ./config.toml); None after printing errors."""
    if path is None and not DEFAULT_CONFIG.exists():
        return cfg.Config()
    path = path or DEFAULT_CONFIG
    parsed = read_config(path)
    if isinstance(parsed, cfg.Config):
        return parsed
    for key_path, reason in parsed:
        print(f"trader {command}: {path}: {key_path}: {reason}", file=sys.stderr)
    return None


def _backfill_job(args: argparse.Namespace, config: cfg.Config) -> BackfillJob | str:
    """A BackfillJob, or what is wrong with the arguments."""
    from trader.coinbase.rest import GRANULARITY_NAMES
    from trader.store.backfill.run import BackfillJob

    try:
        interval_s = cfg.interval_seconds(args.interval)
    except ValueError as exc:
        return str(exc)
    if interval_s not in GRANULARITY_NAMES:
        names = " ".join(cfg.interval_name(s) for s in GRANULARITY_NAMES)
        return f"Coinbase has no {args.interval} candles; it has {names}"
    if args.until is not None and args.until <= args.since:
        return "--until must be after --since"
    products = tuple(dict.fromkeys(args.products))
    if args.out and len(products) > 1 and "{product}" not in args.out:
        return "with several products, --out must contain {product}"
    if not args.out and not config.storage.dsn:
        return "nowhere to write: set storage.dsn in the config or pass --out FILE.csv.gz"
    return BackfillJob(products, interval_s, args.since, args.until, config.coinbase.rest_url,
                       args.rate or config.coinbase.public_rest_rps, config.storage.dsn,
                       args.out, args.batch_pages)



def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                        help="config file (default: ./config.toml)")


def _run(args: argparse.Namespace) -> int:
    from trader.daemon.app import run_daemon

    return run_daemon(args.config, dict(os.environ))


def _compile(args: argparse.Namespace) -> int:
    """`trader compile`: what the daemon compiles before READY, ahead of the first start."""
    import time

    from trader.daemon.app import (
        EXIT_CONFIG,
        load_strategies_or_report,
        read_config_or_report,
        warm_kernels,
    )
    from trader.signals.runner import StrategyRunner

    config = read_config_or_report(args.config)
    started = time.perf_counter()  # loading a strategy compiles its decide (a trial run)
    strategies = None if config is None else load_strategies_or_report(config)
    if strategies is None:
        return EXIT_CONFIG
    warm_kernels(StrategyRunner(strategies))
    elapsed = time.perf_counter() - started
    names = ", ".join(sorted(strategies)) or "none"
    cache = os.environ.get("NUMBA_CACHE_DIR") or "beside the sources"
    noun = "strategy" if len(strategies) == 1 else "strategies"
    print(f"compiled kernels, indicators and {len(strategies)} {noun} ({names}) "
          f"in {elapsed:.1f} s; cache: {cache}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from trader.daemon.app import status_socket_path
    from trader.daemon.statusview import show_status

    socket = args.socket
    if socket is None:
        parsed = read_config(args.config)
        config = parsed if isinstance(parsed, cfg.Config) else cfg.Config()
        socket = status_socket_path(config)
    return show_status(socket, once=args.once, raw_json=args.json)


def _sim(args: argparse.Namespace) -> int:
    import asyncio

    import uvloop

    from trader.simulator.private_cli import private_config
    from trader.simulator.run import build, bundled_sources, serve
    from trader.simulator.server import Faults

    sources = bundled_sources()
    if args.data:
        sources = dict(spec.split("=", 1) for spec in args.data)
        sources = {product: Path(path) for product, path in sources.items()}
    faults = Faults(seed=args.seed, drop_rate=args.drop_rate, gap_rate=args.gap_rate,
                    malformed_rate=args.malformed_rate, oversized_rate=args.oversized_rate,
                    stall_rate=args.stall_rate, stall_s=5.0)
    simulator = build(sources, args.speed, faults, args.start, private=private_config(args))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(simulator, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def _demo(args: argparse.Namespace) -> int:
    from trader.daemon.demo import run_demo

    return run_demo(args.duration)


def _check_config(args: argparse.Namespace) -> int:
    parsed = read_config(args.config)
    if isinstance(parsed, cfg.Config):
        print(f"{args.config}: OK")
        return 0
    for key_path, reason in parsed:
        print(f"{args.config}: {key_path}: {reason}")
    print(f"{args.config}: {len(parsed)} error(s)", file=sys.stderr)
    return 1


def _init(args: argparse.Namespace) -> int:
    if args.config.exists() and not args.force:
        print(f"{args.config} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    args.config.write_text(cfg.render_default())
    print(f"wrote {args.config}")
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    """`trader config-reference`: print the reference, or splice it into a README."""
    reference = cfg.render_reference()
    if args.readme is None:
        print(reference, end="")
        return 0
    text = args.readme.read_text()
    head, begin, rest = text.partition(REFERENCE_BEGIN + "\n")
    _, end, tail = rest.partition(REFERENCE_END)
    if not begin or not end:
        print(f"{args.readme}: no {REFERENCE_BEGIN} ... {REFERENCE_END} block", file=sys.stderr)
        return 1
    args.readme.write_text(head + begin + reference + end + tail)
    print(f"updated the config reference in {args.readme}")
    return 0
