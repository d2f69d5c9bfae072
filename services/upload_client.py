"""The gateway's API as the `achievements` ATO commands use it: `upload`, `status`, `errors`,
`withdraw`.

The file is streamed (never read whole into memory) as `text/csv`. Its SHA-256 is the
Idempotency-Key, so re-running the command after a dropped connection returns the same upload
instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from services.core.states import FINAL

FINAL_STATUSES = frozenset(state.value for state in FINAL)
CHUNK_BYTES = 256 * 1024
# The guided workbook's content type, as the gateway takes it (upload_gateway.intake).
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


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


BytesSent = Callable[[int], None]
UploadSeen = Callable[[dict[str, Any]], None]


async def _chunks(path: Path, on_bytes: BytesSent | None = None) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk
            # Handed to the connection: counted once the next chunk is asked for.
            if on_bytes is not None:
                on_bytes(len(chunk))


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
    on_bytes: BytesSent | None = None,
    on_upload: UploadSeen | None = None,
) -> dict[str, Any]:
    """Returns the upload object: as received, or (with `wait`) once its status is final.

    `on_bytes(n)` is told of every `n` bytes sent; `on_upload(upload)` of every state of the
    upload read while waiting (for a progress display)."""
    deadline = time.monotonic() + timeout_s
    sha256 = await asyncio.to_thread(_sha256_of, path)
    base = gateway_url.rstrip("/")
    params = {"file_name": path.name, "terms_accepted": "true"}
    if policy:
        params["policy"] = policy
    headers = {
        "Authorization": f"Bearer {api_key}",
        # The guided workbook goes as it is (scheme section 9); the gateway judges the bytes.
        "Content-Type": XLSX_CONTENT_TYPE if path.suffix.lower() == ".xlsx" else "text/csv",
        "Idempotency-Key": f"sha256:{sha256}",
    }
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            f"{base}/v1/uploads", data=_chunks(path, on_bytes), params=params, headers=headers
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
            if on_upload is not None:
                on_upload(upload)
        return upload


class GatewayClient:
    """An ATO's calls on one upload: its status, its errors, its withdrawal."""

    def __init__(self, gateway_url: str, api_key: str, timeout_s: float = 60.0) -> None:
        self._base = gateway_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def upload(self, upload_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/uploads/{upload_id}")

    async def withdraw(self, upload_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/uploads/{upload_id}/withdraw")

    async def errors(self, upload_id: str, page_size: int = 1000) -> dict[str, Any]:
        """Every stored issue of the upload (all pages), with the totals of the first page."""
        first = await self._json(
            "GET", f"/v1/uploads/{upload_id}/errors", {"limit": str(page_size), "offset": "0"}
        )
        issues: list[Any] = list(first["issues"])
        next_offset = first.get("next_offset")
        while next_offset is not None:
            page = await self._json(
                "GET",
                f"/v1/uploads/{upload_id}/errors",
                {"limit": str(page_size), "offset": str(next_offset)},
            )
            issues.extend(page["issues"])
            next_offset = page.get("next_offset")
        return {**first, "issues": issues, "offset": 0, "next_offset": None}

    async def errors_csv(self, upload_id: str, write: Callable[[bytes], object]) -> None:
        """The error report as CSV, streamed to `write` as it arrives."""
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.get(
                f"{self._base}/v1/uploads/{upload_id}/errors",
                params={"format": "csv"},
                headers=self._headers,
            ) as response,
        ):
            if response.status != 200:
                await _json_or_error(response, (200,))
            async for block in response.content.iter_chunked(64 * 1024):
                write(block)

    async def _json(
        self, method: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.request(
                method, f"{self._base}{path}", params=params, headers=self._headers
            ) as response,
        ):
            return await _json_or_error(response, (200,))
