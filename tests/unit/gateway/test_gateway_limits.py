"""The upload admission helpers: per-ATO slots, free disk, and the JSON body checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.storage import FolderStorage
from services.upload_gateway.bodies import json_depth, parse_json
from services.upload_gateway.domain_errors import StorageFull, TooManyUploads
from services.upload_gateway.errors import ApiError, answer_for
from services.upload_gateway.limits import UploadSlots, check_free_space


def test_slots_are_counted_per_ato_and_released_on_error() -> None:
    slots = UploadSlots(per_ato=2, retry_after_s=3)
    with slots.hold("A"), slots.hold("A"):
        with pytest.raises(TooManyUploads) as refused, slots.hold("A"):
            pass
        assert answer_for(refused.value).status == 429
        assert answer_for(refused.value).headers == {"Retry-After": "3"}
        with slots.hold("B"):
            assert slots.in_flight("B") == 1
    with pytest.raises(RuntimeError), slots.hold("A"):
        raise RuntimeError
    assert slots.in_flight("A") == 0


async def test_free_disk_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    not_yet = FolderStorage(tmp_path / "not" / "yet")
    capacity = await not_yet.capacity()
    assert capacity is not None
    assert capacity.free_bytes > 0
    await check_free_space(not_yet, 1)
    await check_free_space(FolderStorage(tmp_path), 0)  # 0 turns the check off
    with pytest.raises(StorageFull) as refused:
        await check_free_space(FolderStorage(tmp_path), 10**18)
    assert answer_for(refused.value).status == 507


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        (b"1", 0),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "\\"[[["]', 1),
        (b"[" * 50 + b"]" * 50, 50),
    ],
)
def test_json_depth_skips_strings(data: bytes, depth: int) -> None:
    assert json_depth(data) == depth


@pytest.mark.parametrize("data", [b"[" * 33 + b"]" * 33, b"{", b"\xff", b"[1,]"])
def test_parse_json_refuses_with_400(data: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        parse_json(data, max_depth=32)
    assert refused.value.status == 400


def test_parse_json_accepts_a_document_at_the_depth_limit() -> None:
    assert parse_json(b"[" * 32 + b"]" * 32, max_depth=32) is not None
