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
    assert re.search(r"last bar\s+2018-04-05", out)
    frames_per_s = float(re.search(r"frames per s\s+([\d.,]+)", out)[1].replace(",", ""))
    assert frames_per_s > 0
    emitted = int(re.search(r"minutes emitted\s+([\d,]+)", out)[1].replace(",", ""))
    assert emitted > 10
    ranks = {m[1]: int(m[2]) for m in re.finditer(
        r"^\s+(BTC-USD|ETH-USD|LTC-USD)\s+[\d,.]+\s+.*?\s(\d)\s+[\d.e+,]+\s*$", out, re.M)}
    assert sorted(ranks.values()) == [1, 2, 3], out
