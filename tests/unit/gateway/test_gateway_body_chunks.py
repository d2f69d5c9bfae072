"""A body's reads (whatever the socket handed over) reach storage gathered into chunks of the
configured size, the last one shorter, the bytes unchanged."""

from __future__ import annotations

from services.upload_gateway.intake import _whole_chunks


class Reads:
    """Answers each read with at most the size asked for of the next piece the socket brought;
    what is left of a piece comes with the next read, as a stream reader does."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)
        self.asked: list[int] = []

    async def __call__(self, n: int) -> bytes:
        self.asked.append(n)
        if not self._pieces:
            return b""
        piece = self._pieces.pop(0)
        if len(piece) > n:
            self._pieces.insert(0, piece[n:])
        return piece[:n]


async def test_small_reads_are_gathered_into_whole_chunks() -> None:
    reads = Reads([b"a" * 3, b"b" * 4, b"c" * 5, b"d" * 2])

    chunks = [chunk async for chunk in _whole_chunks(reads, 8)]

    assert chunks == [b"aaabbbbc", b"ccccdd"]
    # Never more asked for than what completes the chunk in hand.
    assert reads.asked[:3] == [8, 5, 1]


async def test_an_empty_body_gives_no_chunk() -> None:
    assert [chunk async for chunk in _whole_chunks(Reads([]), 8)] == []
