"""The candle-file number parser: every float equal to what `float()` reads from its text,
on real files and on random reprs (exponents and 17-digit ones included); bad rows named."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from trader.kernels import csv
from trader.store.history import read_candle_file

DATA = Path(__file__).resolve().parents[1] / "data"


def parsed(text: str, fields: int = 6) -> tuple[int, int, np.ndarray]:
    chars = np.frombuffer(text.encode(), np.uint8)
    out = np.empty((csv.count_rows(chars), fields))
    slow = np.empty((len(text), 4), np.int64)
    status, rows, n_slow = csv.parse_rows(chars, fields, out, slow)
    for row, col, start, end in slow[:n_slow].tolist():
        out[row, col] = float(text[start:end])
    return status, rows, out


def test_random_reprs_read_as_float_reads_them():
    rng = np.random.default_rng(7)
    values = [round(float(v), int(d)) for v, d in zip(rng.uniform(0, 1e6, 30_000),
                                               rng.integers(0, 12, 30_000), strict=True)]
    values += [float(v) for v in rng.uniform(0, 1e-4, 6_000)]  # 1e-05 style and 17 digits
    values += [0.0, -0.0, 5e-324, 1e300, 1e22, 1e23, 0.1, 0.30000000000000004, -2.5]
    values += [1.0] * (-len(values) % 6)
    text = "\n".join(",".join(map(repr, values[i:i + 6])) for i in range(0, len(values), 6))
    status, rows, out = parsed(text + "\n")
    assert (status, rows) == (csv.OK, len(values) // 6)
    assert out.ravel().tobytes() == np.array(values).tobytes()


def test_real_files_read_bit_for_bit_as_numpy_loadtxt_reads_them():
    for path in sorted(DATA.glob("coinbase_*_1m.csv.gz")):
        body = gzip.open(path, "rt").read().split("\n", 1)[1]
        expected = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
        candles = read_candle_file(path)
        got = np.column_stack([candles.time_s.astype(float), *candles.columns()[1:]])
        assert got.tobytes() == expected.tobytes(), path.name


@pytest.mark.parametrize(("body", "message"), [
    ("1,2,3,4,5,6\n7,8,9\n", "row 3 has 3 fields, not 6: '7,8,9'"),
    ("1,2,3,4,5,6\n7,8,9,10,11,12,13\n", "row 3 has 7 fields, not 6"),
    ("1,2,3,4,5,6\n7,8,x,10,11,12\n", "row 3 has a value that is not a number: b'x'"),
    ("1,2,3,4,5,6\n7,8,,10,11,12\n", "row 3 has a value that is not a number"),
    ("1,2,3,4,5,6\n7.5,8,9,10,11,12\n", "a time is not a whole number of seconds"),
    ("7,2,3,4,5,6\n7,8,9,10,11,12\n", "times are not strictly increasing"),
])
def test_a_bad_row_is_named(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(f"time,open,high,low,close,volume\n{body}".encode()))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        read_candle_file(path)


def test_blank_lines_and_crlf_are_read():
    status, rows, out = parsed("1,2,3,4,5,6\r\n\r\n7,8,9,10,11,12\r\n")
    assert (status, rows) == (csv.OK, 2)
    assert out.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]


@pytest.mark.parametrize(("prices", "decimals"), [
    ([100.0, 100.01, 99.99], 2), ([100.0, 101.0], 0), ([1.5, 2.0], 1),
    ([0.12345678], 8), ([0.123456789], 8), ([60_000.12, 60_000.0], 2),
    ([float("nan"), 7.25], 2), ([float("nan")], 0),
    ([6779.46, 0.1 + 0.2], 2),  # float noise in a sum is not a finer increment
])
def test_the_decimals_a_price_series_is_written_with(prices: list[float], decimals: int):
    assert csv.decimals_of(np.array(prices), 8) == decimals
