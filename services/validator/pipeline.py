"""Validating one stored upload: stream the file through the scheme's rules in batches, store
row results as they come, then decide the outcome in one transaction.

The rules are the same code the offline check runs (`services.core.scheme`); what differs is
where the cross-row state lives: here `DUP_01` runs over the keys stored in PostgreSQL, so a
worker's memory does not grow with the file and a crash loses nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from services.core.events import Topics, UploadProgress, UploadValidated, ValidationStarted
from services.core.logging import get_logger
from services.core.masking import mask_value
from services.core.outbox import enqueue
from services.core.scheme.codes import Code, FileError, Policy
from services.core.scheme.columns import Column, HeaderMap
from services.core.scheme.file_inspection import inspect_stream
from services.core.scheme.outcome import decide_status, file_error_after_reading, issue_position
from services.core.scheme.records import (
    HEADER_ROW,
    Layout,
    RecordReader,
    detect_layout,
    path_opener,
)
from services.core.scheme.reference import ReferenceData
from services.core.scheme.validation import (
    Achievement,
    RowResult,
    RowValidator,
    duplicate_issue,
    duplicate_key_text,
)
from services.core.storage import FolderStorage
from services.validator import results_store as store
from services.validator.settings import ValidatorSettings

log = get_logger()

# A payload's achievement columns for a row that is not valid.
_NO_ACHIEVEMENT = (None,) * len(Achievement._fields)

_FILE_07_MESSAGE = (
    "This exact file was already uploaded and accepted. Withdraw that upload first if you"
    " mean to send it again."
)


@dataclass
class UploadValidation:
    upload_id: uuid.UUID
    pool: asyncpg.Pool
    storage: FolderStorage
    reference: ReferenceData
    settings: ValidatorSettings
    topics: Topics

    async def run(self) -> None:
        async with self.pool.acquire(timeout=30) as connection:
            upload = await store.load_upload(connection, self.upload_id)
            if upload is None or upload.status in store.FINAL_STATUSES:
                log.info("upload_skipped", reason="unknown" if upload is None else "already_final")
                return
            async with connection.transaction():
                if await store.start_validation(connection, self.upload_id):
                    await enqueue(
                        connection,
                        self.topics,
                        ValidationStarted(upload_id=self.upload_id, ato_id=upload.ato_id),
                    )
            started = time.monotonic()
            outcome = await self._read_rows(connection, upload)
            await self._finish(connection, upload, *outcome)
            log.info("upload_validated", seconds=round(time.monotonic() - started, 3))

    async def _read_rows(
        self, connection: asyncpg.Connection, upload: store.UploadToValidate
    ) -> tuple[str | None, FileError | None]:
        """Stores every row's result; returns the encoding and the file-level error, if any."""
        path = self.storage.path(upload.storage_key)
        with path.open("rb") as stream:
            inspection = inspect_stream(stream, size_limit_bytes=self.settings.max_upload_bytes)
        encoding = inspection.encoding
        if inspection.error is not None or encoding is None:
            return (encoding.value if encoding else None), inspection.error
        if await store.same_bytes_accepted(connection, upload):
            return encoding.value, FileError(Code.FILE_07, _FILE_07_MESSAGE)
        opener = path_opener(path)
        layout = detect_layout(opener, encoding)
        if isinstance(layout, FileError):
            return encoding.value, layout
        reader = RecordReader(opener, encoding, layout.delimiter)
        if isinstance(layout.header, FileError):
            # FILE_01 (unparseable) outranks FILE_04, and is only known at the end of the file.
            return encoding.value, reader.drain(reader.records()) or layout.header
        error = await self._validate_records(connection, upload, layout, reader)
        return encoding.value, error

    async def _validate_records(
        self,
        connection: asyncpg.Connection,
        upload: store.UploadToValidate,
        layout: Layout,
        reader: RecordReader,
    ) -> FileError | None:
        assert isinstance(layout.header, HeaderMap)
        validator = RowValidator(layout.header, upload.upload_date, self.reference)
        done = await store.progress(connection, self.upload_id)
        if done.last_row:
            log.info("validation_resumed", after_row=done.last_row, rows_stored=done.rows_stored)
        rows_seen = done.rows_stored
        issues_room = self.settings.max_stored_issues - done.issues_stored
        last_progress = time.monotonic()
        records = reader.records(after_row=max(done.last_row, HEADER_ROW))
        for batch in _batches(records, validator, self.settings.batch_rows):
            rows_seen += len(batch)
            if rows_seen > self.settings.max_rows:
                reader.drain(records)
                break
            results = [result for result, _ in batch]
            issues = self._issue_records(batch, layout.header, issues_room)
            issues_room -= len(issues)
            await store.store_batch(
                connection,
                self.upload_id,
                [self._row_record(result) for result in results],
                self._payload_records(results),
                issues,
                rows_seen,
            )
            if time.monotonic() - last_progress >= self.settings.progress_interval_s:
                last_progress = time.monotonic()
                async with connection.transaction():
                    await enqueue(
                        connection,
                        self.topics,
                        UploadProgress(upload_id=self.upload_id, rows_processed=rows_seen),
                    )
        return file_error_after_reading(
            unparseable=reader.error,
            header=None,
            rows_total=rows_seen,
            row_limit=self.settings.max_rows,
        )

    def _row_record(self, result: RowResult) -> store.RowRecord:
        return (
            self.upload_id,
            result.row_number,
            result.is_valid,
            result.has_warning,
            [str(issue.code) for issue in result.issues],
        )

    def _payload_records(self, results: list[RowResult]) -> list[store.PayloadRecord]:
        """What the cross-row rules and the achievements need; nothing for a row with neither."""
        upload_id = self.upload_id
        return [
            (
                upload_id,
                result.row_number,
                [duplicate_key_text(key) for key in result.duplicate_keys],
                *(result.achievement or _NO_ACHIEVEMENT),
            )
            for result in results
            if result.achievement is not None or result.duplicate_keys
        ]

    def _issue_records(
        self, batch: list[tuple[RowResult, list[str]]], header: HeaderMap, room: int
    ) -> list[store.IssueRecord]:
        records: list[store.IssueRecord] = []
        for result, cells in batch:
            for issue in result.issues:
                if len(records) >= room:
                    return records
                records.append(
                    (
                        self.upload_id,
                        result.row_number,
                        issue_position(issue),
                        issue.column,
                        str(issue.code),
                        str(issue.severity),
                        issue.message,
                        _masked_cell(cells, header, issue.column),
                    )
                )
        return records

    async def _finish(
        self,
        connection: asyncpg.Connection,
        upload: store.UploadToValidate,
        encoding: str | None,
        file_error: FileError | None,
    ) -> None:
        async with connection.transaction():
            if file_error is None:
                await self._cross_row_rules(connection)
                counts = await store.count(connection, self.upload_id)
            else:
                await store.discard_rows(connection, self.upload_id)
                counts = store.Counts(0, 0, 0, {})
            status = str(
                decide_status(
                    Policy(upload.policy),
                    counts.rows_total,
                    counts.rows_invalid,
                    counts.rows_warned,
                    file_error.code if file_error else None,
                )
            )
            if status in store.ACCEPTED_STATUSES:
                await store.accept_valid_rows(
                    connection,
                    upload,
                    self.topics,
                    self.settings.common.amendment.amendment_window_s,
                    self.settings.accepted_event_chunk,
                )
            await store.forget_row_payloads(connection, self.upload_id)
            await store.finish(
                connection,
                self.upload_id,
                status=status,
                encoding=encoding,
                counts=counts,
                file_error_code=str(file_error.code) if file_error else None,
                file_error_message=file_error.message if file_error else None,
            )
            await enqueue(
                connection,
                self.topics,
                UploadValidated(
                    upload_id=self.upload_id,
                    ato_id=upload.ato_id,
                    status=status,
                    encoding=encoding,
                    rows_total=counts.rows_total,
                    rows_valid=counts.rows_valid,
                    rows_invalid=counts.rows_invalid,
                    rows_warned=counts.rows_warned,
                    counts_by_code=counts.by_code,
                    file_error_code=str(file_error.code) if file_error else None,
                ),
            )
        log.info(
            "upload_outcome",
            status=status,
            rows_total=counts.rows_total,
            rows_invalid=counts.rows_invalid,
            file_error_code=str(file_error.code) if file_error else None,
        )

    async def _cross_row_rules(self, connection: asyncpg.Connection) -> None:
        stored = await store.progress(connection, self.upload_id)
        room = self.settings.max_stored_issues - stored.issues_stored
        for code, mark in (
            (Code.DUP_01, store.mark_in_file_duplicates),
            (Code.DUP_02, store.mark_earlier_upload_duplicates),
        ):
            rows = await mark(connection, self.upload_id, max(room, 0))
            issues: list[store.IssueRecord] = []
            for row_number in rows:
                issue = duplicate_issue(row_number, code)
                issues.append(
                    (
                        self.upload_id,
                        row_number,
                        issue_position(issue),
                        None,
                        str(issue.code),
                        str(issue.severity),
                        issue.message,
                        None,
                    )
                )
            room -= len(issues)
            await store.store_row_level_issues(connection, issues)


def _masked_cell(cells: list[str], header: HeaderMap, column: str | None) -> str | None:
    if column is None:
        return None
    index = header.index(Column(column))
    return mask_value(column, cells[index]) if index < len(cells) else None


def _batches(
    records: Iterator[tuple[int, list[str]]], validator: RowValidator, size: int
) -> Iterator[list[tuple[RowResult, list[str]]]]:
    batch: list[tuple[RowResult, list[str]]] = []
    for record in records:
        result = validator.validate(record)
        if result is None:
            continue  # a blank row: skipped, not counted
        batch.append((result, record[1]))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
