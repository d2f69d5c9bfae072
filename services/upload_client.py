"""Uploading a file through the gateway, as `achievements upload FILE` does.

The file is streamed (never read whole into memory) as `text/csv`. Its SHA-256 is the
Idempotency-Key, so re-running the command after a dropped connection returns the same upload
instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from services.core.states import FINAL

FINAL_STATUSES = frozenset(state.value for state in FINAL)
CHUNK_BYTES = 256 * 1024


class UploadError(Exception):
    """The gateway refused the request; `code` is its error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk


async def _json_or_error(response: aiohttp.ClientResponse, ok: tuple[int, ...]) -> dict[str, Any]:
    try:
        body: dict[str, Any] = await response.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError):
        body = {}
    if response.status not in ok:
        raise UploadError(
            response.status,
            str(body.get("code", "HTTP_ERROR")),
            str(body.get("message", response.reason or "")),
        )
    return body


async def upload_file(
    path: Path,
    *,
    api_key: str,
    gateway_url: str,
    policy: str | None = None,
    wait: bool = False,
    timeout_s: float = 600.0,
    poll_interval_s: float = 1.0,
) -> dict[str, Any]:
    """Returns the upload object: as received, or (with `wait`) once its status is final."""
    deadline = time.monotonic() + timeout_s
    sha256 = await asyncio.to_thread(_sha256_of, path)
    base = gateway_url.rstrip("/")
    params = {"file_name": path.name, "terms_accepted": "true"}
    if policy:
        params["policy"] = policy
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "text/csv",
        "Idempotency-Key": f"sha256:{sha256}",
    }
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            f"{base}/v1/uploads", data=_chunks(path), params=params, headers=headers
        ) as response:
            upload = await _json_or_error(response, (200, 202))
        if not wait:
            return upload
        auth = {"Authorization": f"Bearer {api_key}"}
        url = f"{base}/v1/uploads/{upload['upload_id']}"
        while upload["status"] not in FINAL_STATUSES:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"upload {upload['upload_id']} still {upload['status']}")
            await asyncio.sleep(poll_interval_s)
            async with session.get(url, headers=auth) as response:
                upload = await _json_or_error(response, (200,))
        return upload
