"""Backfilled candles in a gzip CSV file per product, each batch a part file until merged."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np

from trader.coinbase.rest_bodies import concat_candles
from trader.durable import fsync_directory, replace_durably
from trader.kernels.series import CandleArrays
from trader.store.backfill.candle_store import BackfillError, Range, merge_ranges, runs_of
from trader.store.history import read_candle_file, write_candle_file


class FileStore:
    """A gzip CSV candle file per product, with its batches as part files until complete.

    `FILE.parts/<interval_s>_<start_s>_<end_s>.csv.gz` holds one batch, written to a temporary
    name, fsynced and renamed, so its name (the fetched range) and its candles appear together.
    `finish` merges the file and its parts into a new FILE (temporary name, fsync, rename),
    then writes the union of fetched ranges to `FILE.ranges` the same way, then drops the
    parts: a kill between these steps leaves nothing that the next run misreads.
    """

    def __init__(self, template: str) -> None:
        self._template = template

    def path_of(self, product_id: str) -> Path:
        return Path(self._template.replace("{product}", product_id))

    async def held(self, product_id: str, interval_s: int, span: Range) -> list[Range]:
        return await asyncio.to_thread(self._held, self.path_of(product_id), interval_s)

    async def store(self, product_id: str, interval_s: int, batch: Range,
                    candles: CandleArrays) -> None:
        await asyncio.to_thread(_write_part, self.path_of(product_id), interval_s, batch,
                                candles)

    async def finish(self, product_id: str, interval_s: int) -> None:
        await asyncio.to_thread(self._merge, self.path_of(product_id), interval_s)

    async def close(self) -> None:
        return None

    def _held(self, path: Path, interval_s: int) -> list[Range]:
        parts = _parts_of(path, interval_s)
        ranges = _read_ranges(path, interval_s) + [r for r, _ in parts]
        files = ([path] if path.exists() else []) + [p for _, p in parts]
        no_files: list[np.ndarray] = [np.empty(0, np.int64)]
        times = np.unique(np.concatenate([_read(f).time_s for f in files] or no_files))
        return merge_ranges([*ranges, *runs_of(times.astype(np.int64), interval_s)])

    def _merge(self, path: Path, interval_s: int) -> None:
        parts = _parts_of(path, interval_s)
        if path.exists() and not parts:
            return
        files = ([path] if path.exists() else []) + [p for _, p in parts]
        merged = concat_candles([_read(f) for f in files])
        replace_durably(path, lambda tmp: write_candle_file(tmp, merged, fsync=True))
        ranges = merge_ranges(_read_ranges(path, interval_s) + [r for r, _ in parts])
        text = "".join(f"{interval_s} {start} {end}\n" for start, end in ranges)
        replace_durably(_ranges_path(path), lambda tmp: _write_text(tmp, text))
        for _, part in parts:
            part.unlink()
        if _parts_dir(path).exists():
            for leftover in _parts_dir(path).glob("*.tmp"):
                leftover.unlink()
            _parts_dir(path).rmdir()


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _ranges_path(path: Path) -> Path:
    return path.with_name(path.name + ".ranges")


def _parts_of(path: Path, interval_s: int) -> list[tuple[Range, Path]]:
    """The finished part files (fetched range, path), refusing parts of another interval."""
    found = []
    for part in sorted(_parts_dir(path).glob("*_*_*.csv.gz")):
        fields = part.name.removesuffix(".csv.gz").split("_")
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            continue
        if int(fields[0]) != interval_s:
            raise BackfillError(f"{part} holds {fields[0]} s candles, not {interval_s} s")
        found.append(((int(fields[1]), int(fields[2])), part))
    return found


def _read_ranges(path: Path, interval_s: int) -> list[Range]:
    """The fetched ranges recorded beside a finished file ("interval_s start_s end_s" lines)."""
    try:
        lines = _ranges_path(path).read_text().split("\n")
    except FileNotFoundError:
        return []
    ranges = []
    for line in filter(None, lines):
        fields = line.split()
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise BackfillError(f"{_ranges_path(path)}: cannot read the line {line!r}")
        if int(fields[0]) != interval_s:
            raise BackfillError(f"{path} holds {fields[0]} s candles, not {interval_s} s")
        ranges.append((int(fields[1]), int(fields[2])))
    return ranges


def _read(path: Path) -> CandleArrays:
    try:
        return read_candle_file(path)
    except (ValueError, EOFError) as exc:  # EOFError: a gzip stream cut short
        raise BackfillError(f"{path} is not a readable candle file: {exc}") from exc


def _write_part(path: Path, interval_s: int, batch: Range, candles: CandleArrays) -> None:
    folder = _parts_dir(path)
    if not folder.exists():
        folder.mkdir(parents=True)
        fsync_directory(folder.parent)
    part = folder / f"{interval_s}_{batch[0]}_{batch[1]}.csv.gz"
    replace_durably(part, lambda tmp: write_candle_file(tmp, candles, fsync=True))


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
