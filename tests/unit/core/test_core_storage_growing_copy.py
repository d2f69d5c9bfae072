"""The local copy of an object that readers read while it arrives (`GrowingCopy`): its parts
come from an iterator the test controls, so "not there yet" is a state, not a race."""

from __future__ import annotations

import errno
import gc
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.storage import StorageUnavailable
from services.core.storage.s3 import GrowingCopy, KeptCopies, LocalCopy

BODY = 'Prénom,Notes\r\nZoë,"PO 4471, cohort B"\r\nSeán,"said ""thanks"""\r\n'.encode()


@pytest.fixture(autouse=True)
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_reader_gets_the_bytes_that_arrived_and_waits_for_the_rest() -> None:
    first, second = BODY[:20], BODY[20:]
    first_read = threading.Event()

    def parts() -> Iterator[bytes]:
        yield first
        first_read.wait(timeout=30)  # the second part only after the reader had the first
        yield second

    copy = GrowingCopy(len(BODY), parts)
    copy.start()
    with copy.reader() as reader:
        assert reader.read1(len(BODY)) == first  # all there was: no wait for the whole object
        first_read.set()
        assert reader.read() == second
        assert reader.read() == b""
    with copy.reader() as again:  # a later pass reads the copy from any point
        again.seek(-9, os.SEEK_END)
        assert again.read() == b'anks"""\r\n'


def test_a_fill_that_fails_gives_its_error_after_the_bytes_that_arrived() -> None:
    def parts() -> Iterator[bytes]:
        yield BODY[:20]
        raise StorageUnavailable(errno.EIO, "object storage: GenericError")

    copy = GrowingCopy(len(BODY), parts)
    copy.start()
    with copy.reader() as reader:
        assert reader.read(20) == BODY[:20]
        with pytest.raises(StorageUnavailable):
            reader.read()


def test_an_object_that_ends_early_is_an_outage_not_a_short_file() -> None:
    copy = GrowingCopy(len(BODY), lambda: iter([BODY[:30]]))
    copy.start()
    with copy.reader() as reader, pytest.raises(StorageUnavailable):
        reader.read()


def test_an_empty_object_reads_as_empty() -> None:
    copy = GrowingCopy(0, lambda: iter([]))
    copy.start()
    with copy.reader() as reader:
        assert reader.read() == b""


def test_a_reader_outlives_the_copy_it_came_from_and_the_file_goes_with_the_last(
    scratch: Path,
) -> None:
    copy = GrowingCopy(len(BODY), lambda: iter([BODY[:20], BODY[20:]]))
    copy.start()
    reader = copy.reader()
    del copy  # as `storage.opener(key)()` drops its opener at once
    gc.collect()
    assert reader.read() == BODY
    [file] = scratch.iterdir()
    reader.close()
    del reader
    for thread in threading.enumerate():  # the fill's thread holds the copy until it ends
        if thread.name == "object-copy":
            thread.join(timeout=30)
    gc.collect()
    assert not file.exists()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local_copy(body: bytes = BODY) -> LocalCopy:
    return LocalCopy(GrowingCopy(len(body), lambda: iter([body])))


def test_kept_copies_keep_the_latest_few_and_forget_the_idle_ones() -> None:
    clock = FakeClock()
    kept = KeptCopies(keep=2, idle_s=60.0, clock=clock)
    first, second, third = local_copy(), local_copy(), local_copy()
    kept.add("uploads/1.csv", first)
    kept.add("uploads/2.csv", second)
    kept.add("uploads/3.csv", third)
    assert kept.keys() == ["uploads/2.csv", "uploads/3.csv"]  # the oldest went
    assert kept.get("uploads/1.csv") is None

    clock.now += 59.0
    assert kept.get("uploads/2.csv") is second  # a read keeps it another minute
    clock.now += 2.0
    kept.drop_idle()
    assert kept.keys() == ["uploads/2.csv"]
    clock.now += 60.0
    assert kept.get("uploads/2.csv") is None
    assert kept.keys() == []


def test_a_kept_copy_whose_fill_failed_is_forgotten_and_a_deleted_one_dropped() -> None:
    kept = KeptCopies(keep=2, idle_s=60.0, clock=FakeClock())

    def failing() -> Iterator[bytes]:
        raise StorageUnavailable(errno.EIO, "object storage: GenericError")
        yield b""

    broken = LocalCopy(GrowingCopy(len(BODY), failing))
    with broken() as reader, pytest.raises(StorageUnavailable):
        reader.read()
    kept.add("uploads/broken.csv", broken)
    assert kept.get("uploads/broken.csv") is None  # the next chunk task reads the store
    kept.add("uploads/d.csv", local_copy())
    kept.drop("uploads/d.csv")
    assert kept.keys() == []


def test_keeping_none_keeps_nothing() -> None:
    kept = KeptCopies(keep=0, idle_s=60.0, clock=FakeClock())
    kept.add("uploads/1.csv", local_copy())
    assert kept.get("uploads/1.csv") is None
