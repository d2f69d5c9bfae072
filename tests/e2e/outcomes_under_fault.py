"""What the fault tests expect of uploads sent while a process is killed: each file's counts
as the offline check finds them, and each eligible achievement held once at the stand-in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from services.core.scheme.check import CheckReport, check_file
from tests.e2e.conftest import Pipeline
from tests.e2e.test_exactly_once_claims import GeneratedFile, grant_calls


def offline_reports(files: Iterable[GeneratedFile], folder: Path, today: date) -> list[CheckReport]:
    """The offline check of each file, written into `folder` first: what its upload must end
    with."""
    reports = []
    for generated in files:
        path = folder / generated.name
        path.write_bytes(generated.body)
        reports.append(check_file(path, today=today))
    return reports


def eligible_achievements(
    upload_ids: list[str], files: list[GeneratedFile]
) -> set[tuple[str, int]]:
    """(upload id, row number) of each achievement eligible for a claim, the files in the
    order of their uploads."""
    return {
        (upload_id, row)
        for upload_id, generated in zip(upload_ids, files, strict=True)
        for row in generated.eligible_rows
    }


async def calls_of_claims_held_once(
    pipeline: Pipeline, upload_ids: list[str], eligible: set[tuple[str, int]]
) -> dict[str, list[dict[str, Any]]]:
    """Asserts the stand-in holds each eligible (upload, row) once and nothing else; returns,
    per claim id, every request the stand-in received for it."""
    standin_claims = [
        c for upload_id in upload_ids for c in await pipeline.standin_claims(upload_id)
    ]
    held = Counter((claim["upload_id"], claim["row_number"]) for claim in standin_claims)
    assert [key for key, n in held.items() if n > 1] == [], "claimed more than once"
    assert set(held) == eligible
    async with aiohttp.ClientSession() as session:
        return {
            claim_id: claim_calls
            for upload_id in upload_ids
            for claim_id, claim_calls in (await grant_calls(session, pipeline, upload_id)).items()
        }


def creations(calls: dict[str, list[dict[str, Any]]]) -> Counter[str]:
    """Per claim id, how many of its calls created it (the stand-in stored it: 201)."""
    return Counter(
        claim_id
        for claim_id, claim_calls in calls.items()
        for call in claim_calls
        if call["stored_status"] == 201
    )


def neither_created_once_nor_replayed(calls: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The claims not created by exactly one call, nor, when the database went down while the
    stand-in committed it, by a call whose store's answer was lost with the connection
    (`stored_status` None) and then replayed (200). Empty when every claim was stored once."""
    created = creations(calls)
    return [
        claim_id
        for claim_id, claim_calls in calls.items()
        if not (
            created[claim_id] == 1
            or (
                created[claim_id] == 0
                and any(call["stored_status"] is None for call in claim_calls)
                and any(call["stored_status"] == 200 for call in claim_calls)
            )
        )
    ]
