"""Throwaway databases on the local stack's PostgreSQL, for benchmarks that need their own."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

# Benchmarks run on the local stack, with its development password: local mode unless told
# otherwise (the processes they start inherit it).
os.environ.setdefault("DEPLOYMENT_MODE", "local")

import asyncpg

from services.core.settings import PostgresSettings

STACK_DSN = PostgresSettings().database_url.get_secret_value()


def database_url(database: str) -> str:
    return urlunsplit(urlsplit(STACK_DSN)._replace(path=f"/{database}"))


async def admin(sql: str) -> None:
    """Runs one statement (CREATE/DROP DATABASE) on the server's `postgres` database."""
    connection = await asyncpg.connect(database_url("postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()
