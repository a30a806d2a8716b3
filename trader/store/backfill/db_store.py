"""Backfilled candles upserted into PostgreSQL, each batch recorded in `backfill_ranges`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg

from trader.kernels.series import CandleArrays
from trader.store import schema
from trader.store.backfill.candle_store import Range, merge_ranges, runs_of
from trader.store.history import candles_copy_data, load_candle_times

_STAGE_DDL = """CREATE TEMP TABLE IF NOT EXISTS backfill_stage (
    time timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL,
    low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL) ON COMMIT DELETE ROWS"""
_CANDLES = schema.TABLES["candles"]
_UPSERT = (
    f"INSERT INTO candles ({', '.join(_CANDLES.columns)}) "
    "SELECT $1, $2, time, open, high, low, close, volume FROM backfill_stage "
    f"ON CONFLICT ({', '.join(_CANDLES.key)}) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CANDLES.columns if c not in _CANDLES.key))
_RECORD = ("INSERT INTO backfill_ranges (product_id, interval_s, start_time, end_time) "
           "VALUES ($1, $2, to_timestamp($3), to_timestamp($4)) "
           "ON CONFLICT (product_id, interval_s, start_time) DO UPDATE "
           "SET end_time = greatest(backfill_ranges.end_time, EXCLUDED.end_time)")
_RANGES = ("SELECT extract(epoch FROM start_time)::bigint, extract(epoch FROM end_time)::bigint "
           "FROM backfill_ranges WHERE product_id = $1 AND interval_s = $2 "
           "AND end_time > to_timestamp($3) AND start_time < to_timestamp($4)")


class DatabaseStore:
    """Candles upserted into `candles`, each batch in one transaction with its range record."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()  # one connection: one statement at a time

    @classmethod
    async def open(cls, dsn: str) -> DatabaseStore:
        """Connect, migrate the schema, make sure the ranges table is there."""
        conn = await asyncpg.connect(dsn)
        try:
            await schema.migrate(conn)
            await conn.execute(_STAGE_DDL)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def held(self, product_id: str, interval_s: int, span: Range) -> list[Range]:
        async with self._lock:
            rows = await self._conn.fetch(_RANGES, product_id, interval_s, *map(float, span))
            times = await load_candle_times(self._conn, product_id, interval_s, *span)
        return merge_ranges([*(tuple(r) for r in rows), *runs_of(times, interval_s)])

    async def store(self, product_id: str, interval_s: int, batch: Range,
                    candles: CandleArrays) -> None:
        async with self._lock, self._conn.transaction():
            if len(candles):
                await self._conn.copy_to_table("backfill_stage", format="binary",
                                               source=_once(candles_copy_data(candles)))
                await self._conn.execute(_UPSERT, product_id, interval_s)
            await self._conn.execute(_RECORD, product_id, interval_s, *map(float, batch))

    async def finish(self, product_id: str, interval_s: int) -> None:
        return None

    async def close(self) -> None:
        await self._conn.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
