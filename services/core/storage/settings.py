"""Where uploaded files live: `STORAGE_*` variables (docs/storage.md).

`STORAGE_BACKEND=folder` (the default) needs only `STORAGE_ROOT`. `STORAGE_BACKEND=s3` needs
the endpoint (unless it is AWS itself), the region and the bucket; the credentials come from
the usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), or
from a shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, profile `AWS_PROFILE`), or from
the platform (a web identity token, the instance metadata) when neither is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")

    backend: Literal["folder", "s3"] = "folder"

    # folder: a folder every worker can reach: local disk on one machine, a shared mount beyond.
    root: Path = Path(".local/storage")

    # s3: any S3-compatible server. No endpoint means AWS S3 in `s3_region`.
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    # Keys are `<prefix>uploads/<upload id>.csv`: one bucket can serve several deployments.
    s3_prefix: str = ""
    # Path-style addressing (`endpoint/bucket/key`), which most servers besides AWS need.
    s3_path_style: bool = True
    # A PEM file of the CA that signed the server's certificate, for a private CA.
    s3_ca_file: Path | None = None
    # Plain HTTP is refused unless asked for (a server on the same machine or pod).
    s3_allow_http: bool = False
    # Each part of a multipart upload, and how many are sent at once: an upload holds at most
    # (concurrency + 1) parts in memory. S3 needs parts of at least 5 MiB.
    s3_part_bytes: int = 8 * 1024 * 1024
    s3_part_concurrency: int = 2
    # A process keeps its latest local copies (made to plan an upload) this long after their
    # last read, so the chunk tasks it leases next read the copy instead of range GETs. Each
    # is up to the largest upload in TMPDIR; a delete by this process drops its copy at once.
    s3_kept_copies: int = Field(default=2, ge=0)
    s3_copy_idle_s: float = Field(default=60.0, gt=0)
    # Short, so an outage answers a request with 503 in seconds; retried by the caller later.
    s3_connect_timeout_s: float = 5.0
    s3_timeout_s: float = 60.0
    s3_max_retries: int = 2
    s3_retry_timeout_s: float = 10.0

    # The usual AWS variables, read here with the rest of the settings: nothing below the
    # settings reads the environment. Left unset, the S3 client falls back to the platform's own
    # credentials (a web identity token, the instance metadata).
    aws_access_key_id: str | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY"
    )
    aws_session_token: SecretStr | None = Field(default=None, validation_alias="AWS_SESSION_TOKEN")
    aws_shared_credentials_file: Path = Field(
        default=Path("~/.aws/credentials"), validation_alias="AWS_SHARED_CREDENTIALS_FILE"
    )
    aws_profile: str = Field(default="default", validation_alias="AWS_PROFILE")

    @model_validator(mode="after")
    def _s3_complete(self) -> StorageSettings:
        if self.backend == "s3":
            if not self.s3_bucket:
                raise ValueError("STORAGE_S3_BUCKET is required with STORAGE_BACKEND=s3")
            if self.s3_part_bytes < 5 * 1024 * 1024:
                raise ValueError("STORAGE_S3_PART_BYTES must be at least 5 MiB (5242880)")
            if self.s3_part_concurrency < 1:
                raise ValueError("STORAGE_S3_PART_CONCURRENCY must be at least 1")
        return self
