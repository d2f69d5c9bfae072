"""The stand-in's https settings: plain HTTP unless both files are set, and a server context
that serves the given certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.grant_standin.tls import TlsSettings


def test_neither_file_means_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANT_STANDIN_TLS_CERT_FILE", raising=False)
    monkeypatch.delenv("GRANT_STANDIN_TLS_KEY_FILE", raising=False)

    assert TlsSettings().server_context() is None


def test_a_certificate_without_its_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANT_STANDIN_TLS_CERT_FILE", "/somewhere/server.crt")
    monkeypatch.delenv("GRANT_STANDIN_TLS_KEY_FILE", raising=False)

    with pytest.raises(ValidationError, match="go together"):
        TlsSettings()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_both_files_give_a_tls_server_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("GRANT_STANDIN_TLS_CERT_FILE", str(cert))
    monkeypatch.setenv("GRANT_STANDIN_TLS_KEY_FILE", str(key))

    context = TlsSettings().server_context()

    assert context is not None
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.check_hostname is False  # a server does not check its clients' names
