"""A throwaway CA, a server certificate it signed (localhost, 127.0.0.1), another CA that signed
nothing here, and a tiny TLS server: enough for a real client (asyncpg, aiokafka, aiohttp) to
meet a certificate it cannot verify, without any real server behind it.

The server completes the handshake when the client trusts it, then closes the connection: a
client that trusted it sees a lost connection (transient), one that did not sees a refused
certificate (a setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl makes the test certificates"
)

# PostgreSQL's SSLRequest: length 8, code 80877103. The server answers "S", then TLS begins.
_SSL_REQUEST_BYTES = 8


@dataclass(frozen=True)
class Certificates:
    ca_file: Path  # the CA that signed the server's certificate
    other_ca_file: Path  # a CA that signed nothing the server shows
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "1", "-subj",
        f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(cert),
    )  # fmt: skip
    return key, cert


def make_certificates(folder: Path) -> Certificates:
    ca_key, ca_cert = _make_ca(folder, "test-ca")
    _, other_ca_cert = _make_ca(folder, "other-ca")
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n", encoding="utf-8")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", "/CN=localhost", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-sha256", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return Certificates(ca_cert, other_ca_cert, cert, key)


@asynccontextmanager
async def tls_server(certificates: Certificates, *, postgres: bool = False) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1; yields its port. `postgres`: TLS begins after PostgreSQL's
    SSLRequest, as a PostgreSQL server's does."""
    context = certificates.server_context()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            if postgres:
                await reader.readexactly(_SSL_REQUEST_BYTES)
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(context)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    if postgres:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
