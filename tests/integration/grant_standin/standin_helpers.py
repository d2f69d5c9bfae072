"""Claim bodies and headers shared by the grant stand-in's integration tests."""

from __future__ import annotations

import itertools
from typing import Any

TOKEN = "test-grant-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The admin endpoints (/admin/faults) take their own token.
ADMIN_TOKEN = "test-standin-admin-token"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MIGRATIONS = "services.grant_standin.migrations"

# From the stand-in's bundled reference data.
COURSE = "SD-WAH-101"
COURSE_GRANT_PENCE = 6000
ELIGIBLE_LEVY = "M1286101"
INELIGIBLE_LEVY = "P8533900"

_serial = itertools.count(1)


def claim_body(**overrides: Any) -> dict[str, Any]:
    """A valid claim for a learner no other call of this function uses."""
    n = next(_serial)
    learner = {
        "forename": "Ada",
        "surname": "Lovelace",
        "date_of_birth": "1990-04-01",
        "uln": f"{1_000_000_000 + n}",
        "ni_number": None,
        "citb_individual_id": None,
    }
    learner.update(overrides.pop("learner", {}))
    body: dict[str, Any] = {
        "claim_id": f"claim-{n:06d}",
        "ato_id": "ATO-0042",
        "levy_registration_number": ELIGIBLE_LEVY,
        "course_code": COURSE,
        "achievement_date": "2026-11-20",
        "provider_reference": "BK-991",
        "learner": learner,
        "notes": "PO 4471 / cohort B",
        "upload_id": "upload-1",
        "row_number": n + 1,
    }
    body.update(overrides)
    return body


def key_headers(key: str) -> dict[str, str]:
    return {**AUTH, "Idempotency-Key": key}
