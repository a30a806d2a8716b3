"""Journal record latency: `Journal.intent` until the record is durable, p50 and p99.

Run: .venv/bin/python -m benchmarks --only journal [--quick]
2,000 records (--quick: 400) in a temp dir (the disk under $TMPDIR).

Ours: the journal as the daemon uses it (O_DSYNC writes into zeros written ahead). Baseline,
same run, same directory, same record bytes: append with O_APPEND, then `fdatasync` (what the
journal did before). The two alternate record by record, so a noisy spell of the VM falls on
both.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from figures import Figure, report

from trader.execution.journal import Journal

INTENT = {"strategy": "sma_cross", "product_id": "BTC-USD", "side": "BUY", "kind": "entry",
          "order_type": "limit", "size": "0.00123456", "limit_price": "67123.45",
          "post_only": True, "bar_time_s": 1786300000, "attempt": 0}
RECORDS = 2_000


def measure(directory: Path, records: int) -> tuple[list[float], list[float]]:
    journal = Journal(directory / "journal.jsonl")
    journal.open()
    fd = os.open(directory / "baseline.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    ours, baseline = [], []
    try:
        for n in range(records):
            cid = f"{n:08d}-0000-5000-8000-000000000000"
            t0 = time.perf_counter_ns()
            journal.intent(cid, INTENT)
            t1 = time.perf_counter_ns()
            os.write(fd, orjson.dumps({"t": "intent", "cid": cid, "intent": INTENT}) + b"\n")
            os.fdatasync(fd)
            t2 = time.perf_counter_ns()
            ours.append((t1 - t0) / 1e3)
            baseline.append((t2 - t1) / 1e3)
    finally:
        os.close(fd)
        journal.close()
    return ours, baseline


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(quick: bool) -> list[Figure]:
    records = RECORDS // 5 if quick else RECORDS
    with tempfile.TemporaryDirectory() as temp:
        ours, baseline = measure(Path(temp), records)
    what = f"journal intent until durable (O_DSYNC, zeros ahead), {records:,} records"
    base = "append + fdatasync"
    return [Figure("trading", f"{what}, {name}", quantile(ours, q), "µs", None, base,
                   quantile(baseline, q), higher_is_better=False)
            for name, q in (("p50", 0.5), ("p99", 0.99))]


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
