"""Every request the grant API received for each claim, and what came of it.

The claims table cannot show a claim sent twice: its unique keys make the second send a replay
(200) or a refusal. This log can: per claim id, one entry per request that carried it (alone or
in a batch, faults and `down` included), with the answer sent for it, the answer the store had
decided before an injected fault replaced it, and whether the caller was still there to read
it. Tests check what the contract allows: accepted once, and never asked again once the
acceptance reached the client. In memory for the process's life; ids and statuses only, never
the claim's personal data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Call:
    status: int  # the answer sent for this claim (its entry's status in a batch)
    stored_status: int | None  # what the store decided; None when the request never reached it
    delivered: bool  # False when the caller had gone before the answer (it timed out)


class CallLog:
    def __init__(self) -> None:
        self._calls: dict[str, list[Call]] = {}
        self._claims_of_upload: dict[str, set[str]] = {}

    def record(self, claim_id: str, upload_id: str | None, call: Call) -> None:
        self._calls.setdefault(claim_id, []).append(call)
        if upload_id is not None:
            self._claims_of_upload.setdefault(upload_id, set()).add(claim_id)

    def of_upload(self, upload_id: str) -> dict[str, list[dict[str, Any]]]:
        """Per claim id of the upload, its calls in the order they were answered."""
        return {
            claim_id: [asdict(call) for call in self._calls[claim_id]]
            for claim_id in sorted(self._claims_of_upload.get(upload_id, ()))
        }


def claim_refs(body: object) -> list[tuple[str, str | None]]:
    """(claim_id, upload_id) of each claim in a request body, single or batch, in order;
    claims without a string claim_id are left out (they are refused as invalid)."""
    items = body.get("claims") if isinstance(body, dict) and "claims" in body else [body]
    refs: list[tuple[str, str | None]] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("claim_id"), str):
            continue
        upload_id = item.get("upload_id")
        refs.append((item["claim_id"], upload_id if isinstance(upload_id, str) else None))
    return refs


def statuses_by_claim(status: int, body: object) -> dict[str, int]:
    """The status each claim got from an answer: a batch's own per-claim statuses (207), or
    the answer's status for every claim."""
    if status != 207 or not isinstance(body, dict):
        return {}
    results = body.get("results")
    entries = results if isinstance(results, list) else []
    return {
        entry["claim_id"]: entry["status"]
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("claim_id"), str)
        and isinstance(entry.get("status"), int)
    }
