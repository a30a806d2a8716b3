"""Journal record latency: `Journal.intent` until the record is durable, p50 and p99.

Run: .venv/bin/python benchmarks/bench_journal.py [--records 2000] [--dir /tmp]

Ours: the journal as the daemon uses it (O_DSYNC writes into zeros written ahead). Baseline,
same run, same directory, same record bytes: append with O_APPEND, then `fdatasync` (what the
journal did before). The two alternate record by record, so a noisy spell of the VM falls on
both.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import orjson

from trader.execution.journal import Journal

INTENT = {"strategy": "sma_cross", "product_id": "BTC-USD", "side": "BUY", "kind": "entry",
          "order_type": "limit", "size": "0.00123456", "limit_price": "67123.45",
          "post_only": True, "bar_time_s": 1786300000, "attempt": 0}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dir", default=None, help="a directory on the disk to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as temp:
        ours, baseline = measure(Path(temp), args.records)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; "
          f"load average {os.getloadavg()[0]:.2f}; {args.records} records")
    for name, values in (("journal (O_DSYNC, zeros ahead)", ours),
                         ("baseline (append + fdatasync)", baseline)):
        print(f"  {name:32} p50 {quantile(values, 0.5):7.1f}  p99 {quantile(values, 0.99):7.1f}"
              f"  max {max(values):8.1f} us")
    print(f"  ratio baseline / ours: p50 {quantile(baseline, 0.5) / quantile(ours, 0.5):.2f}x, "
          f"p99 {quantile(baseline, 0.99) / quantile(ours, 0.99):.2f}x")


if __name__ == "__main__":
    main()
