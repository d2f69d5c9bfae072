"""The project's own S3 server for tests: SeaweedFS (`weed mini`), built once by
deploy/local/seaweedfs.sh into .cache/ and started here on free ports of 127.0.0.1 with a data
folder of its own, one bucket and one key pair. Not a mock: the S3 API as a real server
answers it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.core.storage import StorageSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "deploy" / "local" / "seaweedfs.sh"
BUCKET = "achievements-test"
# The build takes about 7 minutes on 2 cores; starting takes seconds.
BUILD_TIMEOUT_S = 1800
START_TIMEOUT_S = 90
GRPC_OFFSET = 10000  # weed's gRPC port is its HTTP port + 10000


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    filer_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def incomplete_uploads(self) -> list[str]:
        """The multipart uploads begun and neither completed nor aborted, as the server keeps
        them (the filer's `.uploads` folder of the bucket)."""
        url = f"{self.filer_url}/buckets/{self.bucket}/.uploads/?limit=1000"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
                listing = json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise
        return [entry["FullPath"] for entry in listing.get("Entries") or []]


def weed_binary() -> Path:
    """The cached binary, built by the project's script when it is missing."""
    found = subprocess.run(
        [str(SCRIPT), "path"], check=True, capture_output=True, text=True
    ).stdout.strip()
    binary = Path(found)
    if not binary.is_file():
        subprocess.run([str(SCRIPT), "build"], check=True, timeout=BUILD_TIMEOUT_S)
    return binary


def _free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` ports each free with its gRPC twin (+10000), none of the project's own."""
    ours = {8080, 8090, 8333, 8340, 8341, 8342, 8443, 9090, 9092, 9093, *range(9094, 9102)}
    chosen: list[int] = []
    port = 20000 + secrets.randbelow(8000)
    while len(chosen) < count:
        port += 1
        twin = port + GRPC_OFFSET
        if port in ours or twin in ours or not (_free(port) and _free(twin)):
            continue
        chosen.append(port)
    return chosen


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback)
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: it listens
    except OSError:
        return False


@contextmanager
def running_s3_server(data_dir: Path, extra_args: Sequence[str] = ()) -> Iterator[S3Server]:
    binary = weed_binary()
    s3_port, master_port, volume_port, filer_port = free_ports(4)
    access_key_id = "test-" + secrets.token_hex(4)
    secret_access_key = secrets.token_hex(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3.json"
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    log = (data_dir / "weed.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            "mini",
            f"-dir={data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={s3_port}",
            f"-s3.config={config}",
            f"-bucket={BUCKET}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
            # A put into a missing bucket must fail, not create it (the start check names it).
            "-s3.autoCreateBucket=false",
            f"-master.port={master_port}",
            f"-volume.port={volume_port}",
            f"-filer.port={filer_port}",
            "-filer.maxMB=1",  # as deploy/local/seaweedfs-lib.sh says why
            "-webdav=false",
            "-admin.ui=false",
            "-admin.port.legacy=0",
            "-master.telemetry=false",
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(data_dir)},
        start_new_session=True,
    )
    server = S3Server(
        endpoint=f"http://127.0.0.1:{s3_port}",
        bucket=BUCKET,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        filer_url=f"http://127.0.0.1:{filer_port}",
        data_dir=data_dir,
        process=process,
    )
    try:
        _wait_for_bucket(server)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_for_bucket(server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    bucket_url = f"{server.filer_url}/buckets/{server.bucket}/"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        if _answers(server.endpoint) and _bucket_exists(bucket_url):
            return
        time.sleep(0.2)
    log = (server.data_dir / "weed.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the S3 server did not start with its bucket; its log ends:\n{log}")


def _bucket_exists(url: str) -> bool:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2):  # noqa: S310 (loopback)
            return True
    except OSError:
        return False


def s3_settings_for(server: S3Server, prefix: str, **overrides: object) -> StorageSettings:
    values: dict[str, object] = {
        "backend": "s3",
        "s3_endpoint": server.endpoint,
        "s3_bucket": server.bucket,
        "s3_prefix": prefix,
        "s3_allow_http": True,
        # Quick answers when a test makes the server unreachable.
        "s3_max_retries": 1,
        "s3_retry_timeout_s": 2.0,
        "s3_connect_timeout_s": 2.0,
        **overrides,
    }
    return StorageSettings(**values)  # type: ignore[arg-type]


def closed_endpoint() -> str:
    """An address where nothing listens: the S3 server unreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
