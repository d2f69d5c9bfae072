"""Admission for uploads: how many of one ATO's uploads run at once, and room in the storage.

The per-ATO count lives in this gateway process (like an asyncio semaphore per ATO that is
never waited on): with N gateway processes an ATO can have N times the limit in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.core.storage import Storage
from services.upload_gateway.domain_errors import StorageFull, TooManyUploads


class UploadSlots:
    """At most `per_ato` uploads of one ATO in flight; the next is refused at once (429)."""

    def __init__(self, per_ato: int, retry_after_s: int) -> None:
        self.per_ato = per_ato
        self.retry_after_s = retry_after_s
        self._in_flight: dict[str, int] = {}

    def in_flight(self, ato_id: str) -> int:
        return self._in_flight.get(ato_id, 0)

    @contextmanager
    def hold(self, ato_id: str) -> Iterator[None]:
        if self.in_flight(ato_id) >= self.per_ato:
            raise TooManyUploads(self.per_ato, self.retry_after_s)
        self._in_flight[ato_id] = self.in_flight(ato_id) + 1
        try:
            yield
        finally:
            left = self._in_flight[ato_id] - 1
            if left:
                self._in_flight[ato_id] = left
            else:
                del self._in_flight[ato_id]


async def check_free_space(storage: Storage, minimum_bytes: int) -> None:
    """507 before a byte is written when the storage volume is nearly full (a backend without
    a volume, a bucket, has no such limit)."""
    if not minimum_bytes:
        return
    capacity = await storage.capacity()
    if capacity is not None and capacity.free_bytes < minimum_bytes:
        raise StorageFull()
