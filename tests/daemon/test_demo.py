"""`trader demo` offline: candles, ranks and feed health move in the status view."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_shows_candles_ranks_and_feed_health():
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "dumb"}
    result = subprocess.run([sys.executable, "-m", "trader", "demo", "--duration", "20"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"connected\s+True", out)
    assert re.search(r"last bar\s+04-05 \d\d:\d\dZ", out)
    frames_per_s = float(re.search(r"frames/s\s+([\d.,]+)", out)[1].replace(",", ""))
    assert frames_per_s > 0
    emitted = int(re.search(r"emitted\s+([\d,]+)", out)[1].replace(",", ""))
    assert emitted > 10
    table = product_table(out)
    assert sorted(int(row["rank"]) for row in table.values()) == [1, 2, 3], out
    assert set(table) == {"BTC-USD", "ETH-USD", "LTC-USD"}
    assert all(float(row["close"].replace(",", "")) > 0 for row in table.values())


def product_table(screen: str) -> dict[str, dict[str, str]]:
    """The products table of a status frame: product id -> {column: cell}."""
    lines = screen.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["product"])
    header = re.split(r"\s{2,}", lines[at].strip())
    rows = {}
    for line in lines[at + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows
