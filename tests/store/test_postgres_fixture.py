"""The suite's own PostgreSQL: started from the server binaries, reachable with asyncpg."""

from __future__ import annotations

import asyncpg

from tests.pg import PostgresServer


async def test_the_throwaway_server_answers_and_keeps_data_across_a_restart(
        postgres: PostgresServer):
    conn = await asyncpg.connect(postgres.dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
        await conn.execute("CREATE TABLE fixture_probe (n int PRIMARY KEY)")
        await conn.execute("INSERT INTO fixture_probe VALUES (1), (2)")
    finally:
        await conn.close()
    postgres.stop()
    postgres.restart()
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("SELECT sum(n) FROM fixture_probe") == 3
        await conn.execute("DROP TABLE fixture_probe")
    finally:
        await conn.close()
