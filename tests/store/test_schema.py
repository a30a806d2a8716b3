"""Migrations against the suite's real PostgreSQL (plain mode), and the TimescaleDB path as SQL."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg

from trader.store import schema


async def _columns(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position", table)
    return [(r["column_name"], r["data_type"]) for r in rows]


async def test_migrating_an_empty_database_creates_every_table_in_plain_mode(database: str):
    conn = await asyncpg.connect(database)
    try:
        info = await schema.migrate(conn)
        assert info == schema.SchemaInfo("postgresql", schema.MIGRATIONS[-1].version,
                                         tuple(m.version for m in schema.MIGRATIONS))
        for table in schema.TABLES.values():
            assert [name for name, _ in await _columns(conn, table.name)] == list(table.columns)
        candles = dict(await _columns(conn, "candles"))
        assert candles["time"] == "timestamp with time zone"
        assert candles["close"] == "double precision"
        for table, column in [("orders", "limit_price"), ("orders", "size"),
                              ("fills", "price"), ("fills", "fee"), ("equity", "equity")]:
            assert dict(await _columns(conn, table))[column] == "numeric"
        brin = await conn.fetch("SELECT tablename FROM pg_indexes "
                                "WHERE indexdef LIKE '%USING brin (\"time\")%'")
        assert {r["tablename"] for r in brin} == {"candles", "signals", "equity"}
        assert await schema.current_mode(conn) == "postgresql"
    finally:
        await conn.close()


async def test_running_the_migrations_again_changes_nothing_and_keeps_rows(database: str):
    conn = await asyncpg.connect(database)
    try:
        await schema.migrate(conn)
        await conn.execute("INSERT INTO fills VALUES ('BTC-USD', '7', 'o1', 'c1', 'BUY', "
                           "'100.01', '0.5', '0.03', 'MAKER', now())")
        again = await schema.migrate(conn)
        assert again.applied == ()
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(
            schema.MIGRATIONS)
        assert await conn.fetchval("SELECT price FROM fills") == Decimal("100.01")
    finally:
        await conn.close()


async def test_a_migration_cut_short_is_finished_by_the_next_start(database: str):
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(schema._CREATE_TABLES[0])  # candles only, nothing recorded
        info = await schema.migrate(conn)
        assert info.applied == (1, 2)
        assert await conn.fetchval("SELECT to_regclass('equity') IS NOT NULL")
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_step_once(database: str):
    conns = [await asyncpg.connect(database) for _ in range(2)]
    try:
        infos = await asyncio.gather(*(schema.migrate(c) for c in conns))
        assert sorted(len(i.applied) for i in infos) == [0, len(schema.MIGRATIONS)]
    finally:
        for conn in conns:
            await conn.close()


async def test_fills_are_unique_on_product_and_trade_id(database: str):
    conn = await asyncpg.connect(database)
    try:
        await schema.migrate(conn)
        insert = ("INSERT INTO fills VALUES ($1, '7', 'o1', 'c1', 'BUY', 1, 1, 0, 'MAKER', "
                  "now())")
        await conn.execute(insert, "BTC-USD")
        await conn.execute(insert, "ETH-USD")  # the same trade id on another product
        try:
            await conn.execute(insert, "BTC-USD")
        except asyncpg.UniqueViolationError:
            pass
        else:
            raise AssertionError("a repeated (product, trade id) was accepted")
    finally:
        await conn.close()


def test_the_timescaledb_path_makes_weekly_candle_hypertables_compressed_by_product():
    statements = schema.MIGRATIONS[0].statements["timescaledb"]
    text = "\n".join(statements)
    assert ("create_hypertable('candles', 'time', chunk_time_interval => INTERVAL '7 days'"
            in text)
    assert "timescaledb.compress_segmentby = 'product_id, interval_s'" in text
    assert "add_compression_policy('candles'" in text
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS candles_1h WITH (timescaledb.continuous)" in text
    assert "add_continuous_aggregate_policy('candles_1h'" in text
    assert "USING brin" not in text  # hypertables index time themselves
    # the tables themselves are the same in both modes
    plain = schema.MIGRATIONS[0].statements["postgresql"]
    assert [s for s in statements if s.startswith("CREATE TABLE")] == [
        s for s in plain if s.startswith("CREATE TABLE")]
    assert "timescaledb" in schema.MIGRATIONS[0].autocommit


def test_every_hypertable_key_contains_its_time_column():
    # TimescaleDB refuses unique indexes without the partitioning column.
    for name in ("candles", "signals", "equity"):
        assert "time" in schema.TABLES[name].key


async def test_the_timescaledb_function_calls_match_the_extension_signatures(database: str):
    """Run each TimescaleDB function call against stubs with the extension's parameter names,
    so a misspelt named argument in the path these machines cannot run still fails here."""
    stubs = (
        "create_hypertable(relation regclass, time_column_name name, "
        "chunk_time_interval interval DEFAULT NULL, if_not_exists boolean DEFAULT false, "
        "migrate_data boolean DEFAULT false)",
        "add_compression_policy(hypertable regclass, compress_after interval, "
        "if_not_exists boolean DEFAULT false)",
        "add_continuous_aggregate_policy(continuous_aggregate text, start_offset interval, "
        "end_offset interval, schedule_interval interval, if_not_exists boolean DEFAULT false)",
    )
    conn = await asyncpg.connect(database)
    try:
        await schema.migrate(conn)
        for stub in stubs:
            await conn.execute(f"CREATE FUNCTION {stub} RETURNS int LANGUAGE sql AS 'SELECT 1'")
        calls = [s for s in schema.MIGRATIONS[0].statements["timescaledb"]
                 if s.startswith("SELECT")]
        assert len(calls) == 5
        for statement in calls:
            assert await conn.fetchval(statement) == 1
    finally:
        await conn.close()
