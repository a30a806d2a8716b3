"""The backtest JSON: the DESIGN.md section 3 shape, exact values, strict JSON."""

from __future__ import annotations

import json
import math

import orjson

from tests.research.handmade import T0, make_result, trade
from trader.config import ResearchConfig
from trader.research import metrics as m
from trader.research.gates import Gate, gates
from trader.research.output import to_json, write_json
from trader.research.result import OpenTradeRecord, SignalRecord

CONTRACT_KEYS = {"strategy", "params", "interval", "products", "fill", "bars", "start", "end",
                 "trades", "open_trades", "signals", "metrics", "timings"}


def sample():
    trades = [trade(9.5, entry_time=T0, exit_time=T0 + 120, entry_price=100.0,
                    exit_price=110.0, size=1.0, fees=0.5, exit_reason="take_profit")]
    holding = [OpenTradeRecord("BTC-USD", T0 + 180, 105.0, 0.5)]
    signals = [SignalRecord(T0 - 60, "BTC-USD", "enter_long", 0.75),
               SignalRecord(T0 + 60, "BTC-USD", "exit", float("nan")),
               SignalRecord(T0 + 120, "BTC-USD", "enter_long", 1.0)]
    return make_result([100.0, 105.0, 109.5, 110.0], closes={"BTC-USD": [100, 105, 110, 111]},
                       trades=trades, open_trades=holding, signals=signals, fees_usd=0.75)


def test_to_json_has_the_contract_shape_and_values():
    result = sample()
    metrics = m.compute(result)
    found = gates(metrics, ResearchConfig())
    out = to_json(result, metrics, found)
    assert set(out) == CONTRACT_KEYS | {"gates"}
    assert {k: out[k] for k in ("strategy", "params", "interval", "products", "fill", "bars",
                                "start", "end")} == {
        "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "interval": "1m",
        "products": ["BTC-USD"], "fill": "live", "bars": 4, "start": T0, "end": T0 + 180}
    assert out["trades"] == [{"product": "BTC-USD", "entry_time": T0, "exit_time": T0 + 120,
                              "entry_price": 100.0, "exit_price": 110.0, "size": 1.0,
                              "pnl": 9.5, "fees": 0.5, "exit_reason": "take_profit"}]
    assert out["open_trades"] == [{"product": "BTC-USD", "entry_time": T0 + 180,
                                   "entry_price": 105.0, "size": 0.5}]
    assert out["signals"] == [
        {"time": T0 - 60, "product": "BTC-USD", "action": "enter_long", "score": 0.75},
        {"time": T0 + 60, "product": "BTC-USD", "action": "exit", "score": None},
        {"time": T0 + 120, "product": "BTC-USD", "action": "enter_long", "score": 1.0}]
    assert out["metrics"] == metrics
    assert out["timings"] == {"load_s": 0.5, "compile_s": 1.25, "run_s": 0.125}


def test_gates_in_json_name_the_metric_and_never_hold_infinity():
    result = sample()
    out = to_json(result, m.compute(result), [Gate("profit_factor", math.inf, 1.5, True),
                                              Gate("sharpe", 0.5, 1.2, False)])
    assert out["gates"] == [
        {"name": "profit_factor", "value": None, "op": ">=", "threshold": 1.5, "passed": True},
        {"name": "sharpe", "value": 0.5, "op": ">=", "threshold": 1.2, "passed": False}]
    json.dumps(out, allow_nan=False)


def test_write_json_round_trips(tmp_path):
    result = sample()
    metrics = m.compute(result)
    found = gates(metrics, ResearchConfig())
    path = tmp_path / "out.json"
    write_json(path, result, metrics, found)
    text = path.read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == orjson.loads(orjson.dumps(to_json(result, metrics, found)))
    assert json.loads(text)["metrics"]["trades"] == 1
