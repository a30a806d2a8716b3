"""`trader backtest`: arguments into a request, the run, and its outputs (terminal, JSON, HTML).

A mistake in the request is one line on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trader import config as cfg
from trader.research import gates as gate_rules
from trader.research import metrics as metric_rules
from trader.research.options import BacktestOptions
from trader.research.result import BacktestResult
from trader.research.run import BacktestError, BacktestRequest, run


def request_of(args: argparse.Namespace, config: cfg.Config) -> BacktestRequest:
    """The request the command line asks for (options over the config's `[paper]`)."""
    maker, taker = args.fees if args.fees is not None else (None, None)
    options = BacktestOptions.from_paper(
        config.paper, fill=args.fill, maker_fee_bps=maker, taker_fee_bps=taker,
        slippage_bps=args.slippage, cash_usd=args.cash, risk_on=args.risk == "config",
        position_pct=args.position_pct)
    return BacktestRequest(
        strategy=args.strategy, config=config, options=options, params=tuple(args.param),
        data=args.data, products=tuple(dict.fromkeys(args.product)), since_s=args.since,
        until_s=args.until, interval=args.interval, path=args.path,
        config_dir=args.config.parent if args.config.exists() else Path())


def backtest_command(args: argparse.Namespace, config: cfg.Config) -> int:
    """Run the backtest; print the summary, write --json and --report. The exit code."""
    request = request_of(args, config)
    problem = _request_problem(request, args)
    if problem:
        return _fail(problem)
    logging.getLogger("trader").setLevel(logging.ERROR)  # the run's own log lines are noise
    from trader.research.terminal import progress

    try:
        result = run(request, progress_bar=progress)
    except BacktestError as exc:
        return _fail(str(exc))
    _outputs(result, config, args.json, args.report)
    return 0


def _request_problem(request: BacktestRequest, args: argparse.Namespace) -> str:
    if request.data is None and not request.products:
        return "give --data FILE.csv.gz, or --product ID [ID ...] --since DATE for the database"
    if request.data is not None and len(request.products) > 1:
        return "--data holds one product: give at most one --product"
    if request.since_s is not None and request.until_s is not None and (
            request.until_s <= request.since_s):
        return "--until must be after --since"
    for path in (args.json, args.report):
        if path is not None and not path.resolve().parent.is_dir():
            return f"cannot write {path}: no directory {path.parent}"
    return ""


def _outputs(result: BacktestResult, config: cfg.Config, json_path: Path | None,
             report_path: Path | None) -> None:
    from trader.research.output import write_json
    from trader.research.terminal import show

    metrics = metric_rules.compute(result)
    found = gate_rules.gates(metrics, config.research)
    show(result, metrics, found)
    if json_path is not None:
        write_json(json_path, result, metrics, found)
    if report_path is not None:
        from trader.research.report import write_report

        write_report(report_path, result, metrics, found)


def _fail(message: str) -> int:
    print(f"trader backtest: error: {message}", file=sys.stderr)
    return 2
