"""The gateway's domain refusals: each a class with its error code, no HTTP in sight.

The domain (uploads, achievements, intake, admission) raises these; each edge translates them
once: the JSON API in `errors.py` (`answer_for`: status, code, message, headers) and the pages in
`pages/` (their words in `pages/texts.py`). The attributes are what the words are built from:
limits, names of things, a status; never a learner's data or a value from the file.
"""

from __future__ import annotations

from typing import Literal

from services.core.scheme.codes import FileError

# What a refusal is about, where it can be either.
Thing = Literal["upload", "achievement"]


class DomainError(Exception):
    """A refusal the caller can act on. `code` is the error code the API answers with."""

    code: str = ""

    def __init__(self) -> None:
        super().__init__(self.code)


# Reading and changing uploads and achievements.


class NotFound(DomainError):
    """No such resource for this ATO: another ATO's is exactly as absent as a missing one."""

    code = "NOT_FOUND"

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


class AlreadyWithdrawn(DomainError):
    code = "ALREADY_WITHDRAWN"

    def __init__(self, what: Thing) -> None:
        super().__init__()
        self.what = what


class UploadNotAccepted(DomainError):
    """Only an accepted upload's achievements can be withdrawn."""

    code = "UPLOAD_NOT_ACCEPTED"

    def __init__(self, what: Thing, upload_status: str) -> None:
        super().__init__()
        self.what = what
        self.upload_status = upload_status


class NoRowsToFix(DomainError):
    """The rows to fix are made only for a partially accepted upload (scheme section 9)."""

    code = "NO_ROWS_TO_FIX"

    def __init__(self, upload_status: str) -> None:
        super().__init__()
        self.upload_status = upload_status


class StoredFilePurged(DomainError):
    """The upload's stored file is no longer kept (the retention purge), so its rows to fix
    cannot be read from it."""

    code = "FILE_PURGED"


class AmendmentWindowClosed(DomainError):
    """The achievement has been, or is being, sent for a grant."""

    code = "AMENDMENT_WINDOW_CLOSED"


class InvalidCursor(DomainError):
    """A page cursor this gateway did not issue."""

    code = "INVALID_CURSOR"


class InvalidIdempotencyKey(DomainError):
    code = "INVALID_IDEMPOTENCY_KEY"

    def __init__(self, max_chars: int) -> None:
        super().__init__()
        self.max_chars = max_chars


class IdempotencyKeyReused(DomainError):
    """The key names an earlier upload of different bytes."""

    code = "IDEMPOTENCY_KEY_REUSED"


# Taking an upload in.


class TooManyUploads(DomainError):
    """This ATO has `per_ato` uploads in flight in this process already."""

    code = "TOO_MANY_UPLOADS"

    def __init__(self, per_ato: int, retry_after_s: int) -> None:
        super().__init__()
        self.per_ato = per_ato
        self.retry_after_s = retry_after_s


class TermsNotAccepted(DomainError):
    code = "TERMS_NOT_ACCEPTED"


class InvalidPolicy(DomainError):
    code = "INVALID_POLICY"


class FileTooLarge(DomainError):
    """FILE_03: the file passes the size limit."""

    code = "FILE_03"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__()
        self.limit_bytes = limit_bytes


class TooManyParts(DomainError):
    """FILE_03 too: a multipart body of more parts than a file and its fields."""

    code = "FILE_03"

    def __init__(self, max_parts: int) -> None:
        super().__init__()
        self.max_parts = max_parts


class FileRefused(DomainError):
    """The whole file is refused with a scheme file-level code (a workbook, NUL bytes, bytes no
    encoding reads); nothing is recorded. The code and message are the scheme's."""

    def __init__(self, error: FileError) -> None:
        self.code = error.code
        self.message = error.message
        super().__init__()


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"


MalformedKind = Literal["field_too_long", "field_not_utf8", "nested", "unreadable"]


class MalformedBody(DomainError):
    """The multipart body cannot be read as a form: `kind` says how; `field` is the form
    field's name (a name from the form, never its value)."""

    code = "BAD_REQUEST"

    def __init__(self, kind: MalformedKind, field: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.field = field


class MultipleFiles(DomainError):
    code = "MULTIPLE_FILES"


class FileMissing(DomainError):
    code = "FILE_MISSING"


class BodyTimedOut(DomainError):
    """No byte of the body came for `timeout_s`."""

    code = "REQUEST_TIMEOUT"

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s


class StorageFull(DomainError):
    """No room to store the file: nothing was kept."""

    code = "INSUFFICIENT_STORAGE"


class StorageOutage(DomainError):
    """The file storage cannot be reached: nothing was kept; retry with the same key."""

    code = "STORAGE_UNAVAILABLE"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s
