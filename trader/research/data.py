"""Candles for a backtest: from a candle file or the database, on one aligned bar grid.

Every product gets a row for every base bar from the first to the last; a missing bar, or
one with zero volume, is flat at the product's previous close with zero volume, exactly as
the daemon's market fills a quiet minute. Before a product's first candle its rows are NaN.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from trader.kernels.series import CandleArrays
from trader.types import Product

OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
_PRODUCT_IN_NAME = re.compile(r"([A-Z0-9]{2,10}-[A-Z]{2,5})")
MAX_PRICE_DECIMALS = 8


class DataError(Exception):
    """Candles that cannot be backtested; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class BarData:
    """Candles of several products on one grid of base bars (oldest first).

    `bars[p, t]` is (open, high, low, close, volume) of product p in the bar opening at
    `time_s[t]`; `first_decided` is the first bar decisions may be taken on (`--since`): the
    bars before it only warm the indicators up, as the daemon's history does.
    """

    products: tuple[str, ...]
    base_s: int
    time_s: np.ndarray  # int64 [T]
    bars: np.ndarray  # float64 [P, T, 5]
    first_decided: int
    rules: Mapping[str, Product]

    def __len__(self) -> int:
        return len(self.time_s)


def read_file(path: Path) -> CandleArrays:
    """A candle file (DESIGN.md section 3), or DataError naming what is wrong with it."""
    from trader.store.history import read_candle_file  # L3 -> L3: store owns the format

    if not path.is_file():
        raise DataError(f"no candle file {path}")
    try:
        candles = read_candle_file(path)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a gzip candle file ({exc})") from None
    except ValueError as exc:
        line = _first_line(exc)  # the store names the file in some of its messages
        raise DataError(line if line.startswith(f"{path}: ") else f"{path}: {line}") from None
    if len(candles) and not np.isfinite(np.column_stack(candles.columns()[1:])).all():
        raise DataError(f"{path}: a candle holds a value that is not a number")
    return candles


def product_in_name(path: Path) -> str | None:
    """The product id a candle file's name carries (coinbase_BTC-USD_1m.csv.gz), if any."""
    found = _PRODUCT_IN_NAME.search(path.name)
    return found.group(1) if found else None


def base_seconds(candles: CandleArrays) -> int:
    """The bar length of a candle series: its smallest step between bars."""
    if len(candles) < 2:
        return 60
    return int(np.diff(candles.time_s).min())


def align(series: Mapping[str, CandleArrays], base_s: int, since_s: int | None,
          until_s: int | None, align_s: int) -> BarData:
    """Put each product's candles on one grid of `base_s` bars, quiet bars filled flat.

    The grid starts at the first bar that opens on a multiple of `align_s` (the longest
    interval the run folds, so no higher bar starts half-seen) and ends before `until_s`.
    """
    spans = [c for c in series.values() if len(c)]
    if not spans:
        raise DataError("no candles in the span asked for")
    first = min(int(c.time_s[0]) for c in spans)
    last = max(int(c.time_s[-1]) for c in spans)
    if until_s is not None:
        last = min(last, until_s - base_s)
    start = -(-first // align_s) * align_s
    if last < start:
        raise DataError("no candles in the span asked for")
    time_s = np.arange(start, last + base_s, base_s, dtype=np.int64)
    bars = np.stack([_on_grid(series[p], time_s, base_s) for p in series])
    first_decided = 0 if since_s is None else int(np.searchsorted(time_s, since_s))
    if first_decided >= len(time_s):
        raise DataError("no candles at or after --since")
    return BarData(tuple(series), base_s, time_s, bars, first_decided,
                   {p: inferred_rules(p, bars[i]) for i, p in enumerate(series)})


def _on_grid(candles: CandleArrays, time_s: np.ndarray, base_s: int) -> np.ndarray:
    rows = np.full((len(time_s), 5), np.nan)
    rows[:, VOLUME] = 0.0
    offset = candles.time_s - time_s[0]
    keep = (offset % base_s == 0) & (offset >= 0) & (offset < len(time_s) * base_s)
    every = bool(keep.all())
    index = offset // base_s if every else offset[keep] // base_s
    for field, column in enumerate(candles.columns()[1:]):
        rows[index, field] = column if every else column[keep]
    fill_quiet(rows)
    return rows


def fill_quiet(rows: np.ndarray) -> None:
    """Zero-volume rows become flat at the last close with trades before them (NaN if none)."""
    quiet = rows[:, VOLUME] == 0.0
    if not quiet.any():
        return
    last_traded = np.where(quiet, -1, np.arange(len(rows)))
    np.maximum.accumulate(last_traded, out=last_traded)
    previous = np.where(last_traded >= 0, rows[np.maximum(last_traded, 0), CLOSE], np.nan)
    rows[quiet, :VOLUME] = previous[quiet, None]


def inferred_rules(product_id: str, rows: np.ndarray) -> Product:
    """Order rules for a product the data names: the price increment is the finest decimal
    the prices use (0.01 for prices in cents); sizes in 1e-8 base units, at least 1 USD."""
    from trader.kernels.csv import decimals_of

    decimals = int(decimals_of(np.ascontiguousarray(rows[:, :VOLUME]), MAX_PRICE_DECIMALS))
    base, quote = product_id.split("-", 1)
    return Product(product_id, base, quote, Decimal("1e-8"), Decimal(1).scaleb(-decimals),
                   Decimal("1e-8"), Decimal(10_000_000), Decimal(1), "online", False, False,
                   False, False, None, 0.0)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

