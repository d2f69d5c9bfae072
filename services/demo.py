"""`make run`'s demo: a new ATO uploads the bundled sample through the gateway, waits for the
outcome, then waits for the grant stand-in to receive the claims (the stack runs with a short
amendment window for the demo)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from services.core.settings import CommonSettings
from services.core.states import UploadState
from services.upload_client import upload_file
from services.upload_gateway.keys import create_ato

GATEWAY_URL = os.environ.get("DEMO_GATEWAY_URL", "http://127.0.0.1:8080")
STANDIN_URL = os.environ.get("GRANT_BRIDGE_GRANT_API_URL", "http://127.0.0.1:8090")
TOKEN = os.environ.get("GRANT_BRIDGE_TOKEN", "dev-grant-token")


_NINO_LETTERS = "ABCEGHJKLMNPRSTWXYZ"  # never D, F, I, Q, U, V; O only ever first
# Never issued (NINO_02) or administrative (NINO_03), scheme §3.2.
_NINO_NEVER_ISSUED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ", "CR", "MW", "NC", "PP", "PY", "PZ"}


def random_uln() -> str:
    """Ten digits with a right check digit (scheme §3.1)."""
    while True:
        digits = str(random.randint(100_000_000, 999_999_999))
        remainder = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if remainder:
            return digits + str((10 - remainder) % 10)


def random_ni_number() -> str:
    while (prefix := "".join(random.choices(_NINO_LETTERS, k=2))) in _NINO_NEVER_ISSUED:
        pass
    return f"{prefix}{random.randint(0, 999_999):06d}{random.choice('ABCD')}"


def write_sample(folder: Path, today: date) -> Path:
    """The bundled sample with achievement dates in the last week and learner identifiers of
    this run alone, so it passes today however often the demo has run before."""
    template = resources.files("services.demo_data").joinpath("sample-template.csv").read_text()
    values = {f"days_ago_{n}": (today - timedelta(days=n)).strftime("%d/%m/%Y") for n in range(8)}
    for n in range(1, 9):
        values |= {
            f"uln_{n}": random_uln(),
            f"nino_{n}": random_ni_number(),
            f"citb_{n}": f"CITB{random.randint(0, 99_999_999):08d}",
        }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"achievements-{today.isoformat()}.csv"
    path.write_text(template.format(**values), encoding="utf-8")
    return path


async def wait_for_claims(upload_id: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    claims: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        while time.monotonic() < deadline:
            async with session.get(
                f"{STANDIN_URL}/v1/claims", params={"upload_id": upload_id}
            ) as response:
                claims = (await response.json())["claims"]
            if len(claims) >= expected:
                break
            await asyncio.sleep(1)
    return claims


async def main() -> int:
    settings = CommonSettings()
    connection = await asyncpg.connect(settings.postgres.database_url.get_secret_value())
    try:
        key = await create_ato(connection, "Demo Training Ltd")
    finally:
        await connection.close()
    print(f"demo ATO {key.ato_id} created")
    sample = write_sample(Path(".local/demo"), date.today())
    upload = await upload_file(
        sample, api_key=key.api_key, gateway_url=GATEWAY_URL, policy=None, wait=True, timeout_s=300
    )
    print(
        f"upload {upload['upload_id']}: {upload['status']} — file {upload['file_name']},"
        f" rows {upload['rows_total']} (valid {upload['rows_valid']},"
        f" invalid {upload['rows_invalid']}, warned {upload['rows_warned']})"
    )
    if upload["status"] == UploadState.PASSED:
        print("The data is valid.")
    eligible = upload["rows_valid"]
    window_s = settings.amendment.amendment_window_s
    print(f"waiting for the amendment window ({window_s:g} s) and the grant claims…")
    claims = await wait_for_claims(upload["upload_id"], eligible, timeout_s=window_s + 120)
    print(f"the grant stand-in holds {len(claims)} claim(s) for this upload:")
    for claim in claims:
        print(
            json.dumps(
                {
                    "row_number": claim.get("row_number"),
                    "course_code": claim.get("course_code"),
                    "levy_registration_number": claim.get("levy_registration_number"),
                    "status": claim.get("status"),
                    "grant_amount_pence": claim.get("grant_amount_pence"),
                    "notes": claim.get("notes"),
                }
            )
        )
    return 0 if upload["status"] == UploadState.PASSED and len(claims) == eligible else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
