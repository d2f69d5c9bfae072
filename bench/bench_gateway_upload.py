"""Upload throughput of the gateway against raw disk writes, and the process's peak memory.

Serves the gateway app in this process on a free port as production serves it (its runner
options; outbox relay off, so Kafka is not involved) against a fresh database migrated for the
run and dropped afterwards, then uploads a generated CSV (as spreadsheets write them: accented
names, quoted cells) several times with curl, which streams the file from a process of its own.
Before each upload it writes the same bytes straight to a file in the same folder (same chunk
size, fsync'd like the gateway's storage), so the gateway's MB/s can be read as a share of what
the disk allows, measured side by side; each file is removed once written, the raw one and the
upload's stored one alike. Each upload's CPU seconds are this process's (the gateway's event
loop and its writing threads), which on a loaded machine say more than the wall clock.

    .venv/bin/python bench/bench_gateway_upload.py [--mb 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestServer
from bench_files import write_mixed_file
from pydantic import SecretStr
from scratch_database import admin, database_url

from services.core.db import migrate_dsn
from services.core.settings import (
    CommonSettings,
    PostgresSettings,
    SchemeLimits,
    StorageSettings,
)
from services.upload_gateway.app import create_app, runner_options
from services.upload_gateway.keys import create_ato
from services.upload_gateway.settings import GatewaySettings

MB = 1024 * 1024


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generate(path: Path, size_bytes: int) -> int:
    """A CSV of about `size_bytes` as spreadsheets write them (`bench_files`, style `quoted`:
    accented names, half the rows with quoted cells holding commas, doubled quotes or line
    breaks), its rows counted from a sample's bytes per row."""
    write_mixed_file(path, SAMPLE_ROWS, style="quoted")
    rows = max(1, round(size_bytes * SAMPLE_ROWS / path.stat().st_size))
    write_mixed_file(path, rows, style="quoted")
    return path.stat().st_size


SAMPLE_ROWS = 10_000


def raw_disk_write_s(source: Path, target: Path, chunk_bytes: int) -> float:
    started = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(chunk_bytes):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    elapsed_s = time.perf_counter() - started
    target.unlink()
    return elapsed_s


async def run(size_mb: int, runs: int, chunk_kb: int, tmp_root: str | None) -> None:
    chunk_bytes = chunk_kb * 1024
    database = f"bench_gateway_{uuid.uuid4().hex[:10]}"
    await admin(f"CREATE DATABASE {database}")
    try:
        await migrate_dsn(database_url(database))
        with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
            folder = Path(tmp)
            source = folder / "bench.csv"
            size_bytes = generate(source, size_mb * MB)
            disk_s: list[float] = []
            disk_cpu_s: list[float] = []
            settings = GatewaySettings(
                run_outbox_relay=False,
                limits=SchemeLimits(max_upload_bytes=size_bytes + MB),
                read_chunk_bytes=chunk_bytes,
                common=CommonSettings(
                    postgres=PostgresSettings(database_url=SecretStr(database_url(database))),
                    storage=StorageSettings(root=folder / "storage"),
                ),
            )
            connection = await asyncpg.connect(database_url(database))
            try:
                key = await create_ato(connection, "Bench ATO")
            finally:
                await connection.close()
            server = TestServer(create_app(settings), port=0)
            await server.start_server(**runner_options(settings))
            rss_before_mb = _peak_rss_mb()
            upload_s: list[float] = []
            upload_cpu_s: list[float] = []
            try:
                for _ in range(runs):
                    # Side by side: a raw write, then an upload, in turn.
                    cpu_before = _own_cpu_s()
                    disk_s.append(raw_disk_write_s(source, folder / "raw.bin", chunk_bytes))
                    disk_cpu_s.append(_own_cpu_s() - cpu_before)
                    started = time.perf_counter()
                    cpu_before = _own_cpu_s()
                    # curl, in a process of its own, streams the file: this process serves.
                    curl = await asyncio.create_subprocess_exec(
                        "curl",
                        "-sS",
                        "-X",
                        "POST",
                        "-T",
                        str(source),
                        "-H",
                        f"Authorization: Bearer {key.api_key}",
                        "-H",
                        "Content-Type: text/csv",
                        # No `Expect: 100-continue` (curl's default for a large body).
                        "-H",
                        "Expect:",
                        str(
                            server.make_url("/v1/uploads").with_query(
                                file_name="bench.csv", terms_accepted="true"
                            )
                        ),
                        stdout=asyncio.subprocess.PIPE,
                    )
                    out, _ = await curl.communicate()
                    body = json.loads(out)
                    assert body["size_bytes"] == size_bytes, body
                    upload_s.append(time.perf_counter() - started)
                    upload_cpu_s.append(_own_cpu_s() - cpu_before)
                    # The stored file goes, as the raw write's does: files left behind made
                    # each later write cost about twice the CPU here (0.2 s -> 0.45 s per
                    # 100 MB from the third upload on), for the gateway alone.
                    for stored in (folder / "storage").rglob("*"):
                        if stored.is_file():
                            stored.unlink()
            finally:
                await server.close()
    finally:
        await admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    size_mb_f = size_bytes / MB
    gateway_mb_s = [size_mb_f / s for s in upload_s]
    disk_mb_s = [size_mb_f / s for s in disk_s]
    print(f"file: {size_mb_f:.0f} MB, {runs} uploads, {chunk_kb} KiB chunks")
    print("gateway MB/s per upload: " + ", ".join(f"{v:.0f}" for v in gateway_mb_s))
    print("gateway CPU s per upload: " + ", ".join(f"{v:.2f}" for v in upload_cpu_s))
    print(
        "raw fsync'd write MB/s, each before an upload: " + ", ".join(f"{v:.0f}" for v in disk_mb_s)
    )
    print("raw write CPU s per write: " + ", ".join(f"{v:.2f}" for v in disk_cpu_s))
    gateway_median, disk_median = statistics.median(gateway_mb_s), statistics.median(disk_mb_s)
    print(f"gateway MB/s median: {gateway_median:.0f}  best: {max(gateway_mb_s):.0f}")
    print(f"raw write MB/s median: {disk_median:.0f}  best: {max(disk_mb_s):.0f}")
    print(
        f"gateway / raw write: {gateway_median / disk_median:.2f} (medians),"
        f" {max(gateway_mb_s) / max(disk_mb_s):.2f} (bests) (target ≥ 0.5)"
    )
    print(
        f"peak RSS: {_peak_rss_mb():.0f} MB (before the uploads: {rss_before_mb:.0f} MB),"
        f" i.e. {_peak_rss_mb() - rss_before_mb:.0f} MB grown while uploading"
        f" {runs} x {size_mb_f:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the generated file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-kb", type=int, default=256, help="read and write size")
    args = parser.parse_args()
    # The project's own scratch folder when there is one: the same disk as the stack's storage.
    tmp_root = ".local" if Path(".local").is_dir() else None
    asyncio.run(run(args.mb, args.runs, args.chunk_kb, tmp_root))


if __name__ == "__main__":
    main()
