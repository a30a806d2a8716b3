"""Coinbase REST bodies into domain values: candles and products (Coinbase names stop here)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from trader.errors import FrameError
from trader.kernels.series import CandleArrays
from trader.types import Product

_CANDLE_FIELDS = ("open", "high", "low", "close", "volume")


def parse_candles(body: Any) -> CandleArrays:
    """`{"candles": [...]}` (newest first, strings) into arrays, oldest first."""
    rows = _list(body, "candles")
    table = np.empty((len(rows), 6), dtype=np.float64)
    for i, row in enumerate(reversed(rows)):
        if not isinstance(row, dict):
            raise FrameError("bad_type", "candle is not an object")
        table[i, 0] = _integer(row, "start")
        for j, name in enumerate(_CANDLE_FIELDS, start=1):
            table[i, j] = _float(row, name)
    times = table[:, 0].astype(np.int64)
    order = np.argsort(times, kind="stable")
    times, table = times[order], table[order]
    unique = np.concatenate([[True], np.diff(times) != 0]) if len(times) else np.ones(0, bool)
    return CandleArrays(times[unique], *(np.ascontiguousarray(table[unique, j])
                                         for j in range(1, 6)))


def concat_candles(parts: list[CandleArrays]) -> CandleArrays:
    """Pages of candles into one series, oldest first, each open time once."""
    if not parts:
        return CandleArrays(np.empty(0, np.int64), *(np.empty(0) for _ in range(5)))
    columns = [np.concatenate(c) for c in zip(*(p.columns() for p in parts), strict=True)]
    times, first = np.unique(columns[0], return_index=True)
    return CandleArrays(times, *(c[first] for c in columns[1:]))


def parse_server_time_s(body: Any) -> int:
    """`{"iso": ..., "epochSeconds": "1754773548", ...}` into unix seconds."""
    try:
        return int(body["epochSeconds"])
    except (KeyError, TypeError, ValueError):
        raise FrameError("bad_field", f"server time body {str(body)[:200]}") from None


def parse_products(body: Any) -> list[Product]:
    """`{"products": [...]}` into Products; rows that are not spot products are skipped."""
    return [parse_product(row) for row in _list(body, "products")
            if isinstance(row, dict) and row.get("product_type", "SPOT") == "SPOT"]


def parse_product(row: Any) -> Product:
    if not isinstance(row, dict):
        raise FrameError("bad_type", "product is not an object")
    price = row.get("price")
    return Product(
        product_id=_string(row, "product_id"),
        base_currency=_string(row, "base_currency_id"),
        quote_currency=_string(row, "quote_currency_id"),
        base_increment=_decimal(row, "base_increment"),
        price_increment=_decimal(row, "price_increment" if "price_increment" in row
                                 else "quote_increment"),
        base_min_size=_decimal(row, "base_min_size"),
        base_max_size=_decimal(row, "base_max_size"),
        quote_min_size=_decimal(row, "quote_min_size"),
        status=_string(row, "status"),
        trading_disabled=bool(row.get("trading_disabled", False)),
        cancel_only=bool(row.get("cancel_only", False)),
        limit_only=bool(row.get("limit_only", False)),
        post_only=bool(row.get("post_only", False)),
        price=_float(row, "price") if price not in (None, "") else None,
        volume_24h=_float(row, "volume_24h") if row.get("volume_24h") not in (None, "") else 0.0,
    )


def _list(body: Any, key: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise FrameError("missing_field", f"no list {key!r} in the body")
    return body[key]


def _string(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise FrameError("missing_field", key)
    return value


def _float(row: dict, key: str) -> float:
    try:
        value = float(_string(row, key))
    except ValueError:
        raise FrameError("bad_number", f"{key}={row.get(key)!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise FrameError("bad_number", f"{key}={row.get(key)!r}")
    return value


def _integer(row: dict, key: str) -> int:
    try:
        return int(_string(row, key))
    except ValueError:
        raise FrameError("bad_number", f"{key}={row.get(key)!r}") from None


def _decimal(row: dict, key: str) -> Decimal:
    try:
        value = Decimal(_string(row, key))
    except InvalidOperation:
        raise FrameError("bad_number", f"{key}={row.get(key)!r}") from None
    if not value.is_finite() or value < 0:
        raise FrameError("bad_number", f"{key}={row.get(key)!r}")
    return value
