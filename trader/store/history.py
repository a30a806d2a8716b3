"""Candle history as numpy arrays: candle files (gzip CSV, DESIGN.md section 3) and the database.

Database reads use binary COPY parsed by numpy, with no Python object per row: rows of
timestamptz and float8 values are fixed-size in PostgreSQL's binary COPY format (an int16 field
count, then an int32 length and an 8-byte big-endian value per field), so a strided view of
the values and one byteswapping copy give the columns. `candles_copy_data` is the same layout
the other way, for COPY into a staging table.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import asyncpg
import numpy as np

from trader.kernels.series import CandleArrays

CANDLE_HEADER = "time,open,high,low,close,volume"
PG_EPOCH_S = 946_684_800  # 2000-01-01 UTC, where PostgreSQL's timestamps count from
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_HEADER = COPY_SIGNATURE + bytes(8)  # no flags, no header extension
COPY_TRAILER = b"\xff\xff"
FIELDS = 6  # time, open, high, low, close, volume
_SELECT = "SELECT time, open, high, low, close, volume FROM candles"
_WHERE = "WHERE product_id = $1 AND interval_s = $2"
_PARSE_BYTES = 4 << 20  # parse as the rows arrive, while the server is still sending
_WRITE_ROWS = 100_000  # rows formatted at a time, so a long file needs no huge string


def empty_candles() -> CandleArrays:
    return CandleArrays(np.empty(0, np.int64), *(np.empty(0) for _ in range(5)))


def read_candle_file(path: Path) -> CandleArrays:
    """Read a gzip CSV candle file; ValueError on a wrong header, a bad row, unsorted or
    repeated times. Every float is the one `float()` reads from its text."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    header, _, body = data.partition(b"\n")
    if header.strip().decode(errors="replace") != CANDLE_HEADER:
        raise ValueError(f"{path}: header {header.strip()[:80]!r}, expected {CANDLE_HEADER!r}")
    table = _parse_table(path, np.frombuffer(body, np.uint8), body)
    if not len(table):
        return empty_candles()
    times = table[:, 0].astype(np.int64)
    if np.any(times != table[:, 0]):
        raise ValueError(f"{path}: a time is not a whole number of seconds")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{path}: times are not strictly increasing")
    return CandleArrays(times, *(np.ascontiguousarray(table[:, i]) for i in range(1, 6)))


def _parse_table(path: Path, chars: np.ndarray, body: bytes) -> np.ndarray:
    """The rows of a candle file's body as float64[rows, FIELDS]."""
    from trader.kernels import csv  # compiled: only readers of files load numba

    table = np.empty((csv.count_rows(chars), FIELDS))
    slow = np.empty((max(1024, len(table) // 100), 4), np.int64)
    status, rows, n_slow = csv.parse_rows(chars, FIELDS, table, slow)
    if status == csv.SLOW_FULL:  # many numbers beyond the fast path: numpy reads them all
        return np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    if status != csv.OK:
        line = body.splitlines()[_nonempty_line(body, rows)][:80].decode(errors="replace")
        what = (f"{line.count(',') + 1} fields, not {FIELDS}" if status == csv.BAD_FIELDS
                else "a value that is not a number")
        raise ValueError(f"{path}: row {rows + 2} has {what}: {line!r}")
    for row, col, start, end in slow[:n_slow].tolist():
        try:
            table[row, col] = float(body[start:end])
        except ValueError:
            raise ValueError(f"{path}: row {row + 2} has a value that is not a number: "
                             f"{body[start:end][:40]!r}") from None
    return table


def _nonempty_line(body: bytes, row: int) -> int:
    """Index among all lines of the `row`th non-empty one."""
    seen = -1
    for index, line in enumerate(body.splitlines()):
        seen += bool(line.strip())
        if seen == row:
            return index
    return max(0, index)


def write_candle_file(path: Path, candles: CandleArrays, fsync: bool = False) -> None:
    """Write a gzip CSV candle file; floats as their shortest repr, so reading back is exact.

    Not atomic by itself: write to a temporary name and rename where that matters.
    `fsync` forces the bytes to disk before returning.
    """
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as handle:
            handle.write(f"{CANDLE_HEADER}\n".encode())
            for start in range(0, len(candles), _WRITE_ROWS):
                columns = [c[start:start + _WRITE_ROWS].tolist() for c in candles.columns()]
                handle.write("".join(f"{int(t)},{o!r},{h!r},{lo!r},{c!r},{v!r}\n" for
                                     t, o, h, lo, c, v in zip(*columns, strict=True)).encode())
        if fsync:
            raw.flush()
            os.fsync(raw.fileno())


async def load_candles(conn: asyncpg.Connection, product_id: str, interval_s: int,
                       start_s: int | None = None, end_s: int | None = None) -> CandleArrays:
    """Candles of one product and interval with start_s <= time < end_s (None: unbounded)."""
    values = await _copy_values(conn, _SELECT, FIELDS, product_id, interval_s, start_s, end_s)
    return CandleArrays(_unix_s(values[0]), *values[1:].view(np.float64))


async def load_candle_times(conn: asyncpg.Connection, product_id: str, interval_s: int,
                            start_s: int | None = None, end_s: int | None = None) -> np.ndarray:
    """The open times (unix s, int64, ascending) of the candles `load_candles` would return."""
    values = await _copy_values(conn, "SELECT time FROM candles", 1, product_id, interval_s,
                                start_s, end_s)
    return _unix_s(values[0])


async def _copy_values(conn: asyncpg.Connection, select: str, fields: int, product_id: str,
                       interval_s: int, start_s: int | None, end_s: int | None) -> np.ndarray:
    where, args = [_WHERE], [product_id, interval_s]
    for op, bound in ((">=", start_s), ("<", end_s)):
        if bound is not None:
            args.append(float(bound))
            where.append(f"time {op} to_timestamp(${len(args)})")
    parser = CopyParser(fields)

    async def sink(chunk: bytes) -> None:
        parser.feed(chunk)

    query = f"{select} {' AND '.join(where)} ORDER BY time"
    await conn.copy_from_query(query, *args, output=sink, format="binary")
    return parser.finish()


def _unix_s(pg_time: np.ndarray) -> np.ndarray:
    """timestamptz values (int64 µs since 2000-01-01, as uint64 bits) into unix seconds."""
    return pg_time.view(np.int64) // 1_000_000 + PG_EPOCH_S


class CopyParser:
    """Binary COPY output of rows of `fields` 8-byte values, fed in chunks, into columns.

    Whole rows are converted every few MB, while the server is still sending: a strided
    big-endian view of the values and one byteswapping copy into a (fields, n) uint64 array
    whose rows are the columns (`.view(np.float64)` for float8; timestamptz is int64 µs since
    2000-01-01). ValueError on any other layout: a NULL, a 4-byte column, a stream cut short.
    """

    def __init__(self, fields: int = FIELDS) -> None:
        self.fields = fields
        self.row_bytes = 2 + fields * 12
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._header_done = False
        self._parts: list[np.ndarray] = []

    def feed(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= _PARSE_BYTES:
            self._parse_rows()

    def finish(self) -> np.ndarray:
        """The columns, shape (fields, rows), native uint64."""
        self._parse_rows()
        if not self._header_done or b"".join(self._pending) != COPY_TRAILER:
            raise ValueError(f"binary COPY stream cut short, or rows that are not "
                             f"{self.fields} x 8-byte values (timestamptz, float8)")
        if not self._parts:
            return np.empty((self.fields, 0), np.uint64)
        return np.concatenate(self._parts, axis=1)

    def _parse_rows(self) -> None:
        data = b"".join(self._pending)
        offset = 0
        if not self._header_done:
            if len(data) < 19:
                return
            if not data.startswith(COPY_SIGNATURE):
                raise ValueError("not a binary COPY stream")
            offset = 19 + int.from_bytes(data[15:19], "big")
            self._header_done = True
        rows = (len(data) - offset) // self.row_bytes
        if rows:
            self._parts.append(self._row_values(data, offset, rows))
        rest = data[offset + rows * self.row_bytes:]
        self._pending, self._pending_bytes = [rest], len(rest)

    def _row_values(self, data: bytes, offset: int, rows: int) -> np.ndarray:
        shape, strides = (self.fields, rows), (12, self.row_bytes)
        counts = np.ndarray((rows,), ">i2", data, offset, (self.row_bytes,))
        lengths = np.ndarray(shape, ">i4", data, offset + 2, strides)
        if np.any(counts != self.fields) or np.any(lengths != 8):
            raise ValueError(f"binary COPY rows are not {self.fields} x 8-byte values "
                             "(timestamptz, float8) without NULLs")
        values = np.ndarray(shape, ">u8", data, offset + 6, strides)
        return values.astype(np.uint64, order="C")


def candles_copy_data(candles: CandleArrays) -> bytes:
    """Candles as a binary COPY stream of (time timestamptz, open … volume float8) rows."""
    rows, row_bytes = len(candles), 2 + FIELDS * 12
    if rows == 0:
        return COPY_HEADER + COPY_TRAILER
    out = bytearray(len(COPY_HEADER) + rows * row_bytes + len(COPY_TRAILER))
    out[:len(COPY_HEADER)] = COPY_HEADER
    out[len(out) - len(COPY_TRAILER):] = COPY_TRAILER
    base, shape, strides = len(COPY_HEADER), (FIELDS, rows), (12, row_bytes)
    np.ndarray((rows,), ">i2", out, base, (row_bytes,))[:] = FIELDS
    np.ndarray(shape, ">i4", out, base + 2, strides)[:] = 8
    values = np.ndarray(shape, ">u8", out, base + 6, strides)
    values[0] = ((candles.time_s - PG_EPOCH_S) * 1_000_000).astype(np.int64).view(np.uint64)
    for i, column in enumerate(candles.columns()[1:], start=1):
        values[i] = np.ascontiguousarray(column, np.float64).view(np.uint64)
    return bytes(out)
