"""Wire parsing speed: real market_trades frames into Trade values, against json + datetime.

Run: .venv/bin/python benchmarks/bench_parse.py [seconds_per_case]
The frames are the 59 market_trades frames of the 2026-08-09 Advanced Trade recording (two
100-trade snapshots plus updates of 1-6 trades), repeated. The baseline extracts the same
fields with `json.loads`, dict access, `float()` and `datetime.fromisoformat` to int ns, into
tuples, and then also into the same `Trade` values. The parser validates every field as well.
"""

from __future__ import annotations

import gc
import gzip
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from trader.coinbase.messages import parse_frame
from trader.types import Side, Trade

RECORDING = (Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"
             / "cryptofeed_COINBASE_advanced_trade_2026-08-09.jsonl.gz")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_AGGRESSOR = {"BUY": Side.SELL, "SELL": Side.BUY}


def market_trade_frames() -> list[bytes]:
    """Raw market_trades frames of the recording, in order."""
    frames = []
    with gzip.open(RECORDING, "rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            if record["t"] == "recv" and '"channel":"market_trades"' in record["data"]:
                frames.append(record["data"].encode())
    return frames


def baseline(raw: bytes) -> list[tuple[str, int, float, float, str, int]]:
    """The plain way: json.loads, dict access, float(), datetime to int ns, into tuples."""
    out = []
    for event in json.loads(raw)["events"]:
        for t in event["trades"]:
            moment = datetime.fromisoformat(t["time"])
            time_ns = (moment - _EPOCH) // _MICROSECOND * 1000
            out.append((t["product_id"], int(t["trade_id"]), float(t["price"]),
                        float(t["size"]), t["side"], time_ns))
    return out


def baseline_values(raw: bytes) -> list[Trade]:
    """The plain way, building the same Trade values as the parser (same output)."""
    return [Trade(p, i, price, size, _AGGRESSOR[side], ns)
            for p, i, price, size, side, ns in baseline(raw)]


def ours(raw: bytes) -> tuple[object, ...]:
    """The daemon's parser."""
    return parse_frame(raw).values


def rates(parsers: list[Callable[[bytes], object]], frames: list[bytes],
          seconds: float) -> list[float]:
    """Trades per second of each parser: best of 5 interleaved runs (the machine is shared)."""
    trades = sum(len(baseline(f)) for f in frames)
    best = [0.0] * len(parsers)
    for _ in range(5):
        for i, parse in enumerate(parsers):
            gc.collect()
            rounds, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / 5 / len(parsers):
                for raw in frames:
                    parse(raw)
                rounds += 1
            best[i] = max(best[i], rounds * trades / elapsed)
    return best


def main() -> None:
    """Print trades/s for both parsers on all trade frames and on updates only."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    frames = market_trade_frames()
    updates = [f for f in frames if b'"type":"update"' in f]
    assert all(list(ours(f)) == baseline_values(f) for f in frames)
    print(f"python {platform.python_version()}, orjson {orjson.__version__}, "
          f"{platform.machine()}, {platform.processor() or platform.platform()}")
    for name, case in (("all market_trades frames", frames), ("update frames only", updates)):
        n = sum(len(baseline(f)) for f in case)
        fast, plain, plain_values = rates([ours, baseline, baseline_values], case, seconds)
        print(f"{name} ({len(case)} frames, {n} trades, {n / len(case):.1f} trades/frame):")
        for label, rate in (("parse_frame -> Trade", fast), ("json+datetime -> tuple", plain),
                            ("json+datetime -> Trade", plain_values)):
            print(f"  {label:24} {rate:10,.0f} trades/s  {1e9 / rate:6.0f} ns/trade"
                  f"  parse_frame is {fast / rate:4.2f} x")

if __name__ == "__main__":
    main()
