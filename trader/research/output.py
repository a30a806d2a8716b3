"""The backtest JSON of DESIGN.md section 3, plus the approval gates ("gates", a new key)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from trader.research.gates import Gate
from trader.research.result import BacktestResult, OpenTradeRecord, SignalRecord, TradeRecord

TIMING_KEYS = ("load_s", "compile_s", "run_s")


def _number(value: float | None) -> float | None:
    """A float JSON can hold: NaN and infinity become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def trade_json(t: TradeRecord) -> dict[str, Any]:
    """A closed trade as the contract names its fields."""
    return {"product": t.product, "entry_time": int(t.entry_time),
            "exit_time": int(t.exit_time), "entry_price": _number(t.entry_price),
            "exit_price": _number(t.exit_price), "size": _number(t.size),
            "pnl": _number(t.pnl), "fees": _number(t.fees), "exit_reason": t.exit_reason}


def open_trade_json(t: OpenTradeRecord) -> dict[str, Any]:
    """A position held at the end of the run."""
    return {"product": t.product, "entry_time": int(t.entry_time),
            "entry_price": _number(t.entry_price), "size": _number(t.size)}


def signal_json(s: SignalRecord) -> dict[str, Any]:
    """A non-HOLD decision; `time` is the open time of the decided bar."""
    return {"time": int(s.time), "product": s.product, "action": s.action,
            "score": _number(s.score)}


def gate_json(gate: Gate) -> dict[str, Any]:
    """A gate; an unbounded value (a profit factor without a loss) is null, `passed` says how
    it fared."""
    return {"name": gate.name, "value": _number(gate.value), "op": gate.op,
            "threshold": gate.threshold, "passed": gate.passed}


def _params(params: Mapping[str, float | int | bool]) -> dict[str, Any]:
    return {name: _number(v) if isinstance(v, float) else v for name, v in params.items()}


def to_json(result: BacktestResult, metrics: Mapping[str, Any],
            gates: Sequence[Gate]) -> dict[str, Any]:
    """The backtest JSON object: inputs, trades, open trades, signals, metrics, gates, timings."""
    timings = {key: _number(result.timings.get(key)) for key in TIMING_KEYS}
    timings.update({k: _number(v) for k, v in result.timings.items() if k not in timings})
    return {
        "strategy": result.strategy,
        "params": _params(result.params),
        "interval": result.interval,
        "products": list(result.products),
        "fill": result.fill,
        "bars": result.bars,
        "start": result.start,
        "end": result.end,
        "trades": [trade_json(t) for t in result.trades],
        "open_trades": [open_trade_json(t) for t in result.open_trades],
        "signals": [signal_json(s) for s in result.signals],
        "metrics": dict(metrics),
        "gates": [gate_json(g) for g in gates],
        "timings": timings,
    }


def write_json(path: str | Path, result: BacktestResult, metrics: Mapping[str, Any],
               gates: Sequence[Gate]) -> None:
    """Write `to_json` to `path` (orjson, indented, a final newline)."""
    data = orjson.dumps(to_json(result, metrics, gates),
                        option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
                        | orjson.OPT_SERIALIZE_NUMPY)
    Path(path).write_bytes(data)
