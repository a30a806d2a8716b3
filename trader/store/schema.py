"""Tables, their numbered migrations, and which database features are in use.

Two modes, chosen when the schema is first created and kept afterwards:
- "timescaledb" when the extension can be installed: hypertables on time (candles chunked by a
  week), compression of older candle chunks segmented by product and interval, and a
  continuous aggregate of hourly candles;
- "postgresql" otherwise: the same tables with BRIN indexes on time.

Every statement is idempotent (IF NOT EXISTS, if_not_exists => TRUE), so a migration cut short
by a crash is simply applied again; `schema_migrations` records what finished. A session
advisory lock keeps two processes from migrating at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

Mode = Literal["timescaledb", "postgresql"]
ConflictAction = Literal["update", "nothing"]
MIGRATION_LOCK_KEY = 0x7472616465720001  # "trader" + 1: the advisory lock of `migrate`


@dataclass(frozen=True, slots=True)
class Table:
    """A table the writer fills: its columns in COPY order and how a repeated key resolves."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    on_conflict: ConflictAction


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("candles", ("product_id", "interval_s", "time", "open", "high", "low", "close",
                      "volume"), ("product_id", "interval_s", "time"), "update"),
    Table("signals", ("time", "strategy", "product_id", "action", "score", "stop",
                      "take_profit", "reason"), ("strategy", "product_id", "time"), "update"),
    Table("orders", ("client_order_id", "order_id", "strategy", "product_id", "side", "kind",
                     "order_type", "limit_price", "size", "quote_size", "status",
                     "filled_size", "average_filled_price", "total_fees", "created_at",
                     "updated_at", "reason"), ("client_order_id",), "update"),
    Table("fills", ("product_id", "trade_id", "order_id", "client_order_id", "side", "price",
                    "size", "fee", "liquidity", "time"), ("product_id", "trade_id"), "nothing"),
    Table("equity", ("time", "mode", "cash", "equity", "realized_pnl", "unrealized_pnl",
                     "fees"), ("mode", "time"), "update"),
)}

_CREATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS candles (
        product_id text NOT NULL,
        interval_s integer NOT NULL,
        time timestamptz NOT NULL,
        open double precision NOT NULL,
        high double precision NOT NULL,
        low double precision NOT NULL,
        close double precision NOT NULL,
        volume double precision NOT NULL,
        PRIMARY KEY (product_id, interval_s, time))""",
    """CREATE TABLE IF NOT EXISTS signals (
        time timestamptz NOT NULL,
        strategy text NOT NULL,
        product_id text NOT NULL,
        action text NOT NULL,
        score double precision NOT NULL,
        stop double precision,
        take_profit double precision,
        reason text NOT NULL DEFAULT '',
        PRIMARY KEY (strategy, product_id, time))""",
    """CREATE TABLE IF NOT EXISTS orders (
        client_order_id text PRIMARY KEY,
        order_id text,
        strategy text NOT NULL,
        product_id text NOT NULL,
        side text NOT NULL,
        kind text NOT NULL,
        order_type text NOT NULL,
        limit_price numeric,
        size numeric,
        quote_size numeric,
        status text NOT NULL,
        filled_size numeric NOT NULL DEFAULT 0,
        average_filled_price numeric,
        total_fees numeric NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        reason text NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS fills (
        product_id text NOT NULL,
        trade_id text NOT NULL,
        order_id text NOT NULL,
        client_order_id text,
        side text NOT NULL,
        price numeric NOT NULL,
        size numeric NOT NULL,
        fee numeric NOT NULL,
        liquidity text NOT NULL,
        time timestamptz NOT NULL,
        PRIMARY KEY (product_id, trade_id))""",
    """CREATE TABLE IF NOT EXISTS equity (
        time timestamptz NOT NULL,
        mode text NOT NULL,
        cash numeric NOT NULL,
        equity numeric NOT NULL,
        realized_pnl numeric NOT NULL,
        unrealized_pnl numeric NOT NULL,
        fees numeric NOT NULL,
        PRIMARY KEY (mode, time))""",
    "CREATE INDEX IF NOT EXISTS orders_created_at ON orders (created_at)",
    "CREATE INDEX IF NOT EXISTS fills_time ON fills (time)",
)

_PLAIN_TIME_INDEXES = tuple(
    f"CREATE INDEX IF NOT EXISTS {table}_time_brin ON {table} USING brin (time)"
    for table in ("candles", "signals", "equity"))

_HYPERTABLES = (
    "SELECT create_hypertable('candles', 'time', chunk_time_interval => INTERVAL '7 days', "
    "if_not_exists => TRUE, migrate_data => TRUE)",
    "SELECT create_hypertable('signals', 'time', chunk_time_interval => INTERVAL '30 days', "
    "if_not_exists => TRUE, migrate_data => TRUE)",
    "SELECT create_hypertable('equity', 'time', chunk_time_interval => INTERVAL '30 days', "
    "if_not_exists => TRUE, migrate_data => TRUE)",
    "ALTER TABLE candles SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'product_id, interval_s', "
    "timescaledb.compress_orderby = 'time')",
    "SELECT add_compression_policy('candles', INTERVAL '30 days', if_not_exists => TRUE)",
    # Continuous aggregates cannot be created inside a transaction block: see `Migration`.
    """CREATE MATERIALIZED VIEW IF NOT EXISTS candles_1h WITH (timescaledb.continuous) AS
        SELECT product_id, time_bucket(INTERVAL '1 hour', time) AS time,
               first(open, time) AS open, max(high) AS high, min(low) AS low,
               last(close, time) AS close, sum(volume) AS volume
        FROM candles WHERE interval_s = 60
        GROUP BY product_id, time_bucket(INTERVAL '1 hour', time)
        WITH NO DATA""",
    "SELECT add_continuous_aggregate_policy('candles_1h', start_offset => INTERVAL '3 days', "
    "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', "
    "if_not_exists => TRUE)",
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step; `statements[mode]` run in order, idempotent each.

    In one transaction unless `autocommit` holds for the mode (TimescaleDB's continuous
    aggregates refuse a transaction block).
    """

    version: int
    name: str
    statements: dict[str, tuple[str, ...]]
    autocommit: frozenset[str] = frozenset()


_BACKFILL_RANGES = (
    """CREATE TABLE IF NOT EXISTS backfill_ranges (
        product_id text NOT NULL,
        interval_s integer NOT NULL,
        start_time timestamptz NOT NULL,
        end_time timestamptz NOT NULL,
        fetched_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (product_id, interval_s, start_time))""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables", {"postgresql": _CREATE_TABLES + _PLAIN_TIME_INDEXES,
                            "timescaledb": _CREATE_TABLES + _HYPERTABLES},
              autocommit=frozenset({"timescaledb"})),
    # the spans `trader backfill` fetched, so a quiet stretch is not asked for again
    Migration(2, "backfill ranges", {"postgresql": _BACKFILL_RANGES,
                                     "timescaledb": _BACKFILL_RANGES}),
)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    mode text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    mode: Mode
    version: int
    applied: tuple[int, ...]  # by this call


async def migrate(conn: asyncpg.Connection) -> SchemaInfo:
    """Bring the schema up to the newest migration; safe to run on every start."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_VERSION_TABLE)
        done = {r["version"]: r["mode"] for r in
                await conn.fetch("SELECT version, mode FROM schema_migrations")}
        mode = done[min(done)] if done else await _choose_mode(conn)
        applied = []
        for migration in MIGRATIONS:
            if migration.version not in done:
                await _apply(conn, migration, mode)
                applied.append(migration.version)
        return SchemaInfo(mode, MIGRATIONS[-1].version, tuple(applied))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _choose_mode(conn: asyncpg.Connection) -> Mode:
    """TimescaleDB when its extension is installed or can be; plain PostgreSQL otherwise."""
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not available:
        return "postgresql"
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError:
        return "postgresql"  # packaged but not preloaded (shared_preload_libraries)
    return "timescaledb"


async def _apply(conn: asyncpg.Connection, migration: Migration, mode: Mode) -> None:
    record = ("INSERT INTO schema_migrations (version, name, mode) VALUES ($1, $2, $3) "
              "ON CONFLICT (version) DO NOTHING")
    if mode in migration.autocommit:
        for statement in migration.statements[mode]:
            await conn.execute(statement)
        await conn.execute(record, migration.version, migration.name, mode)
        return
    async with conn.transaction():
        for statement in migration.statements[mode]:
            await conn.execute(statement)
        await conn.execute(record, migration.version, migration.name, mode)


async def current_mode(conn: asyncpg.Connection) -> Mode | None:
    """The mode recorded by the first migration, or None on an empty database."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return None
    return await conn.fetchval("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1")
