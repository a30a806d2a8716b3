"""`trader backtest` as a user runs it: a real subprocess, real candle files, its exit and output.

A request that cannot run (a wrong strategy name, a bad --param, a missing or corrupt data
file, a span with no candles) exits non-zero with exactly one line on stderr, never a
traceback; a good one writes the JSON of DESIGN.md section 3.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LTC = REPO / "tests" / "data" / "coinbase_LTC-USD_1m.csv.gz"  # 2018-04-04 .. 2018-04-06
HEADER = "time,open,high,low,close,volume\n"
ROWS = "".join(f"{1522800000 + 60 * i},134.0,134.5,133.5,134.2,1.5\n" for i in range(3))


def backtest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`trader backtest ARGS` in `folder`, whose config finds the repository's strategies."""
    (folder / "config.toml").write_text(f'[daemon]\nstrategies_dir = "{REPO / "strategies"}"\n')
    return subprocess.run([sys.executable, "-m", "trader", "backtest", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def gz(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    with gzip.open(path, "wt") as out:
        out.write(text)
    return path


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed run (asserting there is exactly one)."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trader backtest: error: "), lines[0]
    return lines[0]


# (what is wrong, the arguments after the data options, words the line must hold)
BAD_REQUESTS = [
    ("strategy", ["nosuch"], ["no strategy 'nosuch'", "sma_cross"]),
    ("unknown param", ["sma_cross", "--param", "nosuch=3"], ["nosuch", "unknown parameter"]),
    ("param too low", ["sma_cross", "--param", "fast=1"], ["fast", "[2, 200]", "got 1"]),
    ("param too high", ["sma_cross", "--param", "slow=100000"], ["slow", "[3, 500]"]),
    ("params that contradict", ["sma_cross", "--param", "fast=50", "--param", "slow=20"],
     ["fast", "must be < slow"]),
    ("param not a number", ["sma_cross", "--param", "fast=abc"], ["fast=abc", "not a number"]),
    ("param a string", ["sma_cross", "--param", 'fast="ten"'], ["fast", "expected a number"]),
    ("param without a value", ["sma_cross", "--param", "fast"], ["NAME=VALUE"]),
    ("interval", ["sma_cross", "--interval", "7x"], ["--interval", "7x"]),
    ("span after the data", ["sma_cross", "--since", "2019-01-01"], ["no candles"]),
    ("span before the data", ["sma_cross", "--until", "2018-01-01"], ["no candles"]),
]


@pytest.mark.parametrize(("args", "words"), [(a, w) for _, a, w in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
def test_a_bad_request_is_one_line_and_a_non_zero_exit(args, words, tmp_path):
    line = one_error_line(backtest(tmp_path, *args, "--data", str(LTC)))
    for word in words:
        assert word in line


# (what is wrong, file name, how to write it: gzip text or raw bytes, words the line must hold)
BAD_FILES = [
    ("not gzip", "plain_LTC-USD.csv.gz", (HEADER + ROWS).encode(), ["not a gzip"]),
    ("empty file", "empty_LTC-USD.csv.gz", b"", ["header"]),
    ("truncated gzip", "cut_LTC-USD.csv.gz", LTC.read_bytes()[:5000], ["not a gzip"]),
    ("wrong header", "header_LTC-USD.csv.gz", "t,o,h,l,c,v\n" + ROWS, ["header", "t,o,h"]),
    ("letters in a row", "letters_LTC-USD.csv.gz",
     HEADER + ROWS + "1522800180,a,b,c,d,e\n", ["row 5", "not a number"]),
    ("a short row", "short_LTC-USD.csv.gz", HEADER + ROWS + "1522800180,1,1\n",
     ["row 5", "fields"]),
    ("a long row", "long_LTC-USD.csv.gz", HEADER + ROWS + "1522800180,1,1,1,1,1,1,1\n",
     ["row 5", "fields"]),
    ("a time with a fraction", "fraction_LTC-USD.csv.gz", HEADER + "1522800000.5,1,1,1,1,1\n",
     ["whole number of seconds"]),
    ("binary inside the gzip", "binary_LTC-USD.csv.gz", "\x00\x01\x02\x7f garbage\n",
     ["header"]),
    ("times out of order", "order_LTC-USD.csv.gz",
     HEADER + "1522800060,1,1,1,1,1\n1522800000,1,1,1,1,1\n", ["increasing"]),
    ("not a number", "nan_LTC-USD.csv.gz", HEADER + ROWS + "1522800180,nan,1,1,1,1\n",
     ["not a number"]),
    ("infinity", "inf_LTC-USD.csv.gz", HEADER + ROWS + "1522800180,1,inf,1,1,1\n",
     ["not a number"]),
    ("only the header", "header_only_LTC-USD.csv.gz", HEADER, ["no candles"]),
]


@pytest.mark.parametrize(("name", "content", "words"), [(n, c, w) for _, n, c, w in BAD_FILES],
                         ids=[what for what, _, _, _ in BAD_FILES])
def test_a_corrupt_data_file_is_one_line_and_a_non_zero_exit(name, content, words, tmp_path):
    if isinstance(content, bytes):
        path = tmp_path / name
        path.write_bytes(content)
    else:
        path = gz(tmp_path, name, content)
    line = one_error_line(backtest(tmp_path, "sma_cross", "--data", str(path)))
    for word in words:
        assert word in line


def test_a_missing_data_file_is_one_line_and_a_non_zero_exit(tmp_path):
    line = one_error_line(backtest(tmp_path, "sma_cross", "--data", str(tmp_path / "no.csv.gz")))
    assert "no candle file" in line and "no.csv.gz" in line


def test_a_file_without_a_product_in_its_name_asks_for_product(tmp_path):
    path = gz(tmp_path, "candles.csv.gz", HEADER + ROWS)
    line = one_error_line(backtest(tmp_path, "sma_cross", "--data", str(path)))
    assert "--product" in line


def test_a_product_not_quoted_in_usd_is_one_line_and_a_non_zero_exit(tmp_path):
    path = gz(tmp_path, "coinbase_BTC-EUR_1m.csv.gz", HEADER + ROWS)
    line = one_error_line(backtest(tmp_path, "sma_cross", "--data", str(path)))
    assert "BTC-EUR" in line and "USD" in line


def test_the_json_holds_the_contract_keys_with_their_types(tmp_path):
    out = tmp_path / "out.json"
    done = backtest(tmp_path, "sma_cross", "--data", str(LTC), "--interval", "1m",
                    "--since", "2018-04-05", "--path", "engine", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(out.read_text())
    assert {"strategy", "params", "interval", "products", "fill", "bars", "start", "end",
            "trades", "open_trades", "signals", "metrics", "timings"} <= set(result)
    assert result["strategy"] == "sma_cross" and result["interval"] == "1m"
    assert result["params"] == {"fast": 10, "slow": 30}
    assert result["products"] == ["LTC-USD"] and result["fill"] == "live"
    since = 1522886400  # 2018-04-05, the first decided bar
    assert (result["start"], result["end"]) == (since, 1523059140)  # the file's last minute
    assert result["bars"] == (result["end"] - result["start"]) // 60 + 1
    assert result["trades"], "the day holds crosses: some trades"
    for trade in result["trades"]:
        assert_types(trade, product=str, entry_time=int, exit_time=int, entry_price=float,
                     exit_price=float, size=float, pnl=float, fees=float, exit_reason=str)
        assert since <= trade["entry_time"] < trade["exit_time"] <= result["end"]
    for held in result["open_trades"]:
        assert_types(held, product=str, entry_time=int, entry_price=float, size=float)
    assert result["signals"]
    for signal in result["signals"]:
        assert set(signal) == {"time", "product", "action", "score"}
        assert signal["action"] in ("enter_long", "exit")
        assert isinstance(signal["time"], int) and signal["time"] >= since
        assert signal["score"] is None or isinstance(signal["score"], float)
    metrics = result["metrics"]
    for key in ("total_return_pct", "cagr_pct", "sharpe", "sortino", "calmar",
                "max_drawdown_pct", "max_drawdown_duration_s", "win_rate_pct",
                "profit_factor", "expectancy_usd", "trades", "exposure_pct", "fees_usd"):
        assert metrics[key] is None or isinstance(metrics[key], int | float), key
    assert metrics["trades"] == len(result["trades"])
    assert set(result["timings"]) >= {"load_s", "compile_s", "run_s"}
    assert all(isinstance(v, float) and v >= 0 for v in result["timings"].values())


def assert_types(row: dict, **types: type) -> None:
    assert set(row) == set(types), row
    for key, kind in types.items():
        assert isinstance(row[key], kind), (key, row[key])
