"""Reference data in PostgreSQL: loaded from the bundled CSVs, refreshed without a restart.

Workers keep an in-memory snapshot (a few hundred rows) and reload it when the version row
changes, so the rules read it at dictionary speed through the same interface as the offline check.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from services.core.scheme.reference import Course, Employer, InMemoryReference, load_reference_dir
from services.core.states import IN_PROGRESS


async def load_into_database(connection: asyncpg.Connection, folder: Path | None = None) -> int:
    """Adds the catalogue and levy register as a new version; returns that version.

    Versions are never changed in place: an upload is validated chunk by chunk against the
    version current when it was planned, so a refresh in the middle of an upload (or a chunk
    retried later) still sees the same data. Versions no upload still needs are removed.
    """
    reference = load_reference_dir(folder) if folder else None
    if reference is None:
        from services.core.scheme.reference import bundled_reference

        reference = bundled_reference()
    async with connection.transaction():
        # Serialises concurrent loads: each gets a version of its own.
        version: int = await connection.fetchval(
            "INSERT INTO reference_versions (id, version) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE SET version = reference_versions.version + 1,"
            " loaded_at = now() RETURNING version"
        )
        await connection.copy_records_to_table(
            "courses",
            columns=_COURSE_COLUMNS,
            records=[
                (
                    version,
                    c.code,
                    c.title,
                    c.tier,
                    c.duration_hours,
                    c.grant_pence,
                    c.valid_from,
                    c.valid_to,
                )
                for c in reference.courses()
            ],
        )
        await connection.copy_records_to_table(
            "employers",
            columns=_EMPLOYER_COLUMNS,
            records=[
                (version, e.levy_number, e.employer_name, e.grant_eligible)
                for e in reference.employers()
            ],
        )
        for table in ("courses", "employers"):
            await connection.execute(
                f"DELETE FROM {table} WHERE version < $1 AND version NOT IN"
                " (SELECT reference_version FROM uploads WHERE reference_version IS NOT NULL"
                " AND status = ANY($2::text[]))",
                version,
                sorted(IN_PROGRESS),
            )
    return version


_COURSE_COLUMNS = [
    "version",
    "code",
    "title",
    "tier",
    "duration_hours",
    "grant_pence",
    "valid_from",
    "valid_to",
]
_EMPLOYER_COLUMNS = ["version", "levy_number", "employer_name", "grant_eligible"]


async def current_version(connection: asyncpg.Connection) -> int:
    version = await connection.fetchval("SELECT version FROM reference_versions WHERE id = 1")
    return int(version or 0)


async def read_version(connection: asyncpg.Connection, version: int) -> InMemoryReference:
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
        for r in await connection.fetch("SELECT * FROM courses WHERE version = $1", version)
    ]
    employers = [
        Employer(
            levy_number=r["levy_number"],
            employer_name=r["employer_name"],
            grant_eligible=r["grant_eligible"],
        )
        for r in await connection.fetch("SELECT * FROM employers WHERE version = $1", version)
    ]
    return InMemoryReference(courses, employers)


async def read_from_database(connection: asyncpg.Connection) -> tuple[int, InMemoryReference]:
    """The current version and its data."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        version = await current_version(connection)
        return version, await read_version(connection, version)


class ReferenceCache:
    """Reference snapshots by version: the current one (its version checked at most every
    `check_every_s`), and the few versions that uploads being validated were planned with."""

    def __init__(self, pool: asyncpg.Pool, check_every_s: float = 5.0, keep: int = 4) -> None:
        self._pool = pool
        self._check_every_s = check_every_s
        self._keep = keep
        self._version = -1
        self._checked_at = 0.0
        self._versions: dict[int, InMemoryReference] = {}

    async def current_version(self) -> int:
        now = time.monotonic()
        if now - self._checked_at >= self._check_every_s or self._version < 0:
            async with self._pool.acquire(timeout=30) as connection:
                self._version = await current_version(connection)
            self._checked_at = now
        return self._version

    async def current(self) -> InMemoryReference:
        return await self.at(await self.current_version())

    async def at(self, version: int) -> InMemoryReference:
        reference = self._versions.get(version)
        if reference is None:
            async with self._pool.acquire(timeout=30) as connection:
                reference = await read_version(connection, version)
            if len(self._versions) >= self._keep:
                self._versions.pop(next(iter(self._versions)))
            self._versions[version] = reference
        return reference
