"""`make run`'s demo: a new ATO uploads the bundled sample through the gateway, waits for the
outcome, then waits for the grant stand-in to receive the claims (the stack runs with a short
amendment window for the demo)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import PostgresSettings, load_settings
from services.core.states import UploadState
from services.grant_bridge.settings import DEV_GRANT_TOKEN
from services.upload_client import upload_file
from services.upload_gateway.keys import create_ato
from services.validator.settings import AMENDMENT_WINDOW_VARIABLE


class DemoSettings(BaseSettings):
    """What the demo needs of the stack `make run` started: the gateway, the stand-in as the
    bridge reaches it (its URL and token), the amendment window the validators stamp, and the
    database (to create the demo's ATO). Read from the same variables as those services."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8080"
    grant_api_url: str = Field(
        default="http://127.0.0.1:8090",
        validation_alias=AliasChoices("grant_api_url", "GRANT_BRIDGE_GRANT_API_URL"),
    )
    grant_token: SecretStr = Field(
        default=SecretStr(DEV_GRANT_TOKEN),
        validation_alias=AliasChoices("grant_token", "GRANT_BRIDGE_TOKEN"),
    )
    amendment_window_s: float = Field(
        default=2 * 24 * 3600,
        validation_alias=AliasChoices("amendment_window_s", AMENDMENT_WINDOW_VARIABLE),
    )
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)


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


async def wait_for_claims(
    settings: DemoSettings, upload_id: str, expected: int, timeout_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    claims: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {settings.grant_token.get_secret_value()}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < deadline:
            async with session.get(
                f"{settings.grant_api_url}/v1/claims", params={"upload_id": upload_id}
            ) as response:
                claims = (await response.json())["claims"]
            if len(claims) >= expected:
                break
            await asyncio.sleep(1)
    return claims


async def main(settings: DemoSettings) -> int:
    connection = await asyncpg.connect(settings.postgres.database_url.get_secret_value())
    try:
        key = await create_ato(connection, "Demo Training Ltd")
    finally:
        await connection.close()
    print(f"demo ATO {key.ato_id} created")
    sample = write_sample(Path(".local/demo"), date.today())
    upload = await upload_file(
        sample,
        api_key=key.api_key,
        gateway_url=settings.gateway_url,
        policy=None,
        wait=True,
        timeout_s=300,
    )
    print(
        f"upload {upload['upload_id']}: {upload['status']} — file {upload['file_name']},"
        f" rows {upload['rows_total']} (valid {upload['rows_valid']},"
        f" invalid {upload['rows_invalid']}, warned {upload['rows_warned']})"
    )
    if upload["status"] == UploadState.PASSED:
        print("The data is valid.")
    eligible = upload["rows_valid"]
    window_s = settings.amendment_window_s
    print(f"waiting for the amendment window ({window_s:g} s) and the grant claims…")
    claims = await wait_for_claims(
        settings, upload["upload_id"], eligible, timeout_s=window_s + 120
    )
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
    sys.exit(asyncio.run(main(load_settings(DemoSettings, "demo"))))
