"""Reference data in PostgreSQL: loaded from the bundled CSVs, refreshed without a restart.

Workers keep an in-memory snapshot (a few hundred rows) and reload it when the version row
changes, so the rules read it at dictionary speed through the same interface as the offline check.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from services.core.scheme.reference import Course, Employer, InMemoryReference, load_reference_dir


async def load_into_database(connection: asyncpg.Connection, folder: Path | None = None) -> int:
    """Replaces the catalogue and levy register in one transaction; returns the new version."""
    reference = load_reference_dir(folder) if folder else None
    if reference is None:
        from services.core.scheme.reference import bundled_reference

        reference = bundled_reference()
    async with connection.transaction():
        await connection.execute("DELETE FROM courses")
        await connection.execute("DELETE FROM employers")
        await connection.copy_records_to_table(
            "courses",
            records=[
                (c.code, c.title, c.tier, c.duration_hours, c.grant_pence, c.valid_from, c.valid_to)
                for c in reference.courses()
            ],
        )
        await connection.copy_records_to_table(
            "employers",
            records=[
                (e.levy_number, e.employer_name, e.grant_eligible) for e in reference.employers()
            ],
        )
        version: int = await connection.fetchval(
            "INSERT INTO reference_versions (id, version) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE SET version = reference_versions.version + 1,"
            " loaded_at = now() RETURNING version"
        )
    return version


async def read_from_database(connection: asyncpg.Connection) -> tuple[int, InMemoryReference]:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        version = await connection.fetchval("SELECT version FROM reference_versions WHERE id = 1")
        courses = [
            Course(
                code=r["code"],
                title=r["title"],
                tier=r["tier"],
                duration_hours=r["duration_hours"],
                grant_pence=r["grant_pence"],
                valid_from=r["valid_from"],
                valid_to=r["valid_to"],
            )
            for r in await connection.fetch("SELECT * FROM courses")
        ]
        employers = [
            Employer(
                levy_number=r["levy_number"],
                employer_name=r["employer_name"],
                grant_eligible=r["grant_eligible"],
            )
            for r in await connection.fetch("SELECT * FROM employers")
        ]
    return int(version or 0), InMemoryReference(courses, employers)


class ReferenceCache:
    """The current reference snapshot; checks the version at most every `check_every_s`."""

    def __init__(self, pool: asyncpg.Pool, check_every_s: float = 5.0) -> None:
        self._pool = pool
        self._check_every_s = check_every_s
        self._version = -1
        self._reference = InMemoryReference([], [])
        self._checked_at = 0.0

    async def current(self) -> InMemoryReference:
        now = time.monotonic()
        if now - self._checked_at >= self._check_every_s or self._version < 0:
            async with self._pool.acquire(timeout=30) as connection:
                version = await connection.fetchval(
                    "SELECT version FROM reference_versions WHERE id = 1"
                )
                if version != self._version:
                    self._version, self._reference = await read_from_database(connection)
            self._checked_at = now
        return self._reference
