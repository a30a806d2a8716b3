"""Spill files: rows the writer could not commit yet, kept on disk in order until replayed.

A file is named `<seq>.<table>.spill`, `seq` twelve digits; the sequence orders replay. It holds
a magic line (`trader spill 1`); a JSON line {"table", "columns", "rows"}; then frames of
(payload length, crc32 of the payload; both little-endian u32) and a payload that pickles a
list of up to `_FRAME_ROWS` row tuples. Pickle keeps Decimal, aware datetime, None and float
bits exactly; reading builds nothing but those value types.

Crash safety:
- A file is written whole or not at all: under `.<name>.tmp`, fsync, rename, fsync of the
  directory. A `.tmp` file found by `scan_spill_dir` was cut short by a crash and is renamed
  to `*.failed`.
- `*.failed` files (crash leftovers, unreadable files, rows the database refused) are counted
  and kept for a person to look at: never replayed, never deleted.
- New sequence numbers start past every number in the directory, failed ones included, so a
  name is never reused.
- A file whose header names other columns than the schema's, a frame whose crc does not match,
  or rows of the wrong count or width raise `SpillError`: nothing is half-read.
"""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import re
import struct
import zlib
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trader.durable import replace_durably
from trader.errors import describe_error
from trader.store.schema import TABLES

SPILL_DIR = "spill"  # under the daemon's state directory

_MAGIC = b"trader spill 1\n"
_FRAME = struct.Struct("<II")  # payload length, crc32
_FRAME_ROWS = 2048  # rows per pickle frame: short GIL holds while a thread writes or reads
_SPILL_NAME = re.compile(r"\.?(\d{12})\.([a-z_]+)\.")
_SAFE_GLOBALS = frozenset({("decimal", "Decimal"), ("datetime", "datetime"),
                           ("datetime", "date"), ("datetime", "time"),
                           ("datetime", "timedelta"), ("datetime", "timezone"),
                           ("zoneinfo", "ZoneInfo")})
# ZoneInfo pickles through builtins.getattr by default; by key it needs only ZoneInfo itself.
_DISPATCH = {**copyreg.dispatch_table,
             zoneinfo.ZoneInfo: lambda zone: (zoneinfo.ZoneInfo, (zone.key,))}


class SpillError(Exception):
    """A spill file that cannot be replayed: damaged, or written for other columns."""


@dataclass(slots=True)
class SpillFile:
    """A spill file waiting for replay; `rows` is the count its header promises."""

    seq: int
    table: str
    path: Path
    rows: int


class _Unpickler(pickle.Unpickler):
    """Builds only row values: no other class or function can be named by a file."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not a row value type")
        return super().find_class(module, name)


# ---- writing -------------------------------------------------------------------------------------

def write_spill(directory: Path, seq: int, table: str, rows: Sequence[tuple], *,
                failed: bool = False) -> Path:
    """Write `<seq>.<table>.spill` (or `.spill.failed`) whole or not at all; returns its path."""
    name = f"{seq:012d}.{table}.spill" + (".failed" if failed else "")
    final = directory / name
    header = {"table": table, "columns": list(TABLES[table].columns), "rows": len(rows)}

    def write(temp: Path) -> None:
        with open(temp, "wb") as out:
            out.write(_MAGIC + json.dumps(header).encode() + b"\n")
            for start in range(0, len(rows), _FRAME_ROWS):
                data = _pickle(rows[start:start + _FRAME_ROWS])
                out.write(_FRAME.pack(len(data), zlib.crc32(data)) + data)
            out.flush()
            os.fsync(out.fileno())

    replace_durably(final, write, directory / f".{name}.tmp")
    return final


def _pickle(rows: Sequence[tuple]) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(list(rows))
    return buffer.getvalue()


# ---- reading -------------------------------------------------------------------------------------

def read_spill(path: Path) -> tuple[str, list[tuple]]:
    """The table and rows of a spill file; SpillError if damaged or written for other columns."""
    try:
        return _parse_spill(path.read_bytes())
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError,
            struct.error, pickle.UnpicklingError) as exc:
        raise SpillError(describe_error(exc)) from exc


def _parse_spill(data: bytes) -> tuple[str, list[tuple]]:
    if not data.startswith(_MAGIC):
        raise SpillError("not a spill file")
    end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC):end])
    table = TABLES.get(header["table"])
    if table is None or header["columns"] != list(table.columns):
        raise SpillError(f"written for {header['table']}({', '.join(header['columns'])}), "
                         "which is not a table of this schema")
    rows = _parse_frames(data, end + 1)
    width = len(table.columns)
    if len(rows) != header["rows"] or any(type(r) is not tuple or len(r) != width
                                          for r in rows):
        raise SpillError(f"{len(rows)} rows of the wrong shape, {header['rows']} expected")
    return table.name, rows


def _parse_frames(data: bytes, pos: int) -> list[tuple]:
    """The rows of every frame from byte `pos` to the end, each frame's crc checked."""
    rows: list[tuple] = []
    while pos < len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + _FRAME.size:pos + _FRAME.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            raise SpillError(f"damaged frame at byte {pos}")
        rows.extend(_Unpickler(io.BytesIO(payload)).load())
        pos += _FRAME.size + length
    return rows


# ---- the directory -------------------------------------------------------------------------------

def scan_spill_dir(directory: Path) -> tuple[list[SpillFile], int, int, list[str]]:
    """Spill files to replay in sequence order, the next sequence number, how many are kept as
    failed, and notes. A temporary file left by a crash is incomplete: it is kept as failed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pending, failed, notes, last = [], 0, [], 0
    for path in sorted(directory.iterdir()):
        match = _SPILL_NAME.match(path.name)
        if match is None:
            continue
        seq, table = int(match[1]), match[2]
        last = max(last, seq)
        if path.name.endswith(".tmp"):
            try:
                os.replace(path, directory / f"{path.name.lstrip('.')}.failed")
            except FileNotFoundError:
                continue  # a scan cut short by cancellation already moved it
            notes.append(f"{path.name}: an incomplete spill file from a crash, kept as failed")
            failed += 1
        elif path.name.endswith(".failed"):
            failed += 1
        elif path.name.endswith(".spill"):
            pending.append(SpillFile(seq, table, path, _rows_in(path)))
    pending.sort(key=lambda spill: spill.seq)
    return pending, last + 1, failed, notes


def _rows_in(path: Path) -> int:
    """The row count a spill file's header promises (0 if unreadable: replay will say why)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_MAGIC) + 4096)
        return int(json.loads(head[len(_MAGIC):head.index(b"\n", len(_MAGIC))])["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
