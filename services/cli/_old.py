"""`achievements`: the operator's, the ATO's and the demo's command line.

Set-up commands (`admin`, `reference`, `ato`) and `upload` parse with argparse; `status`,
`errors`, `withdraw`, `watch` and `dlq` are a click group (`operations`). Every command with
`--json` prints one JSON object, on success and on failure (`code`, `message`), and ends with
one of the documented exit codes (`ExitCode`, docs/operations.md).

ATO commands (`upload`, `status`, `errors`, `withdraw`) use an ATO's API key, from
ACHIEVEMENTS_API_KEY or a prompt. Operator commands (`watch`, `dlq`) use the service's own
Kafka settings (`KAFKA_*`), never an ATO's key.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import fnmatch
import getpass
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn

import aiohttp
import asyncpg
import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from services.core import grant_states
from services.core.db import migrate, migration_files
from services.core.events import Topics
from services.core.kafka import connection_options, ensure_topics, make_producer
from services.core.settings import (
    CommonSettings,
    KafkaSettings,
    RetentionSettings,
    SchemeLimits,
    load_settings,
)
from services.core.states import ClaimState
from services.upload_gateway.keys import NewKey, create_ato, create_key, revoke_key


class ExitCode(enum.IntEnum):
    """The exit statuses of every command (docs/operations.md lists them for scripts)."""

    OK = 0
    # `upload --wait`: the upload ended rejected, failed or errored (no row accepted).
    NOTHING_ACCEPTED = 1
    # Bad arguments, no API key, invalid settings.
    USAGE = 2
    # The gateway refused the request (a 4xx: the file at once, the key, no such upload).
    REFUSED = 3
    # The gateway, Kafka or PostgreSQL could not be reached or answered 5xx.
    UNAVAILABLE = 4
    # `--wait` or `--timeout` ran out before the upload was final.
    TIMED_OUT = 5
    # The local file could not be read.
    FILE_UNREADABLE = 6
    # `reconcile`: our claim records and the grant system's differ (each difference listed).
    DIFFERENCES = 7


class CommandFailed(Exception):
    """A failure to report as `{"code", "message"}` with its exit status."""

    def __init__(
        self, exit_code: ExitCode, code: str, message: str, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.message = message
        self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.http_status is not None:
            body["http_status"] = self.http_status
        body["exit_code"] = int(self.exit_code)
        return body


def _translate(error: BaseException) -> CommandFailed:
    """The project's exit status and code for what a command ran into."""
    from services.upload_client import UploadError

    if isinstance(error, CommandFailed):
        return error
    if isinstance(error, UploadError):
        unavailable = error.status >= 500
        return CommandFailed(
            ExitCode.UNAVAILABLE if unavailable else ExitCode.REFUSED,
            error.code,
            error.message,
            http_status=error.status,
        )
    if isinstance(error, MissingApiKey):
        return CommandFailed(ExitCode.USAGE, "NO_API_KEY", str(error))
    if isinstance(error, TimeoutError):
        return CommandFailed(ExitCode.TIMED_OUT, "TIMED_OUT", str(error) or "timed out")
    if isinstance(error, aiohttp.ClientError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "GATEWAY_UNREACHABLE", f"gateway unreachable: {error}"
        )
    if isinstance(error, KafkaError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "KAFKA_UNREACHABLE", f"Kafka: {type(error).__name__}"
        )
    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "DATABASE_ERROR", f"PostgreSQL: {type(error).__name__}"
        )
    if isinstance(error, ConnectionError):  # an OSError, but no file's
        return CommandFailed(ExitCode.UNAVAILABLE, "UNREACHABLE", f"unreachable: {error}")
    if isinstance(error, OSError):
        return CommandFailed(
            ExitCode.FILE_UNREADABLE,
            "FILE_UNREADABLE",
            f"{error.filename}: {error.strerror}" if error.filename else str(error),
        )
    raise error


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str), flush=True)


def _fail(failed: CommandFailed, as_json: bool) -> int:
    if as_json:
        _print_json(failed.to_json())
    else:
        print(f"achievements: {failed.code}: {failed.message}", file=sys.stderr)
    return int(failed.exit_code)


async def _with_connection(
    action: Callable[[asyncpg.Connection], Awaitable[int]],
) -> int:
    settings = load_settings(CommonSettings, "achievements")
    connection = await asyncpg.connect(settings.postgres.database_url.get_secret_value())
    try:
        return await action(connection)
    finally:
        await connection.close()


async def _migrate(_: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        applied = await migrate(connection)
        print(f"migrations applied: {len(applied)}")
        return 0

    return await _with_connection(run)


async def _applied_migrations(connection: asyncpg.Connection) -> set[str]:
    if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return set()
    return {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}


async def _migrated(args: argparse.Namespace) -> int:
    """Exit 0 once every migration of this image is applied; waits up to `--wait-s` (an init
    container runs it so that no service starts on an older schema)."""
    wanted = {name for name, _ in migration_files("services.core.migrations")}
    deadline = time.monotonic() + args.wait_s
    settings = load_settings(CommonSettings, "achievements")
    while True:
        missing = set(wanted)
        try:
            connection = await asyncpg.connect(settings.postgres.database_url.get_secret_value())
            try:
                missing -= await _applied_migrations(connection)
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError) as error:
            print(f"database not reachable yet: {type(error).__name__}", file=sys.stderr)
        if not missing:
            print("migrations applied: all")
            return 0
        if time.monotonic() >= deadline:
            print(f"migrations missing: {', '.join(sorted(missing))}", file=sys.stderr)
            return 1
        await asyncio.sleep(2)


async def _topics(_: argparse.Namespace) -> int:
    settings = load_settings(CommonSettings, "achievements")
    await ensure_topics(settings.kafka, Topics(settings.kafka.topic_prefix))
    print("topics ready")
    return 0


async def _reference_load(args: argparse.Namespace) -> int:
    from services.core.reference_store import load_into_database

    async def run(connection: asyncpg.Connection) -> int:
        if args.if_missing:
            loaded = await connection.fetchval(
                "SELECT version FROM reference_versions WHERE id = 1"
            )
            if loaded is not None:
                print(f"reference data already loaded (version {loaded}); nothing done")
                return 0
        version = await load_into_database(connection, Path(args.dir) if args.dir else None)
        print(f"reference data loaded (version {version})")
        return 0

    return await _with_connection(run)


def _print_new_key(key: NewKey, as_json: bool, created: str) -> None:
    if as_json:
        print(json.dumps({"ato_id": key.ato_id, "api_key": key.api_key, "key_id": str(key.key_id)}))
    else:
        print(f"{created}; API key {key.key_id} (shown once): {key.api_key}")


async def _ato_create(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        key = await create_ato(connection, args.name, args.policy)
        _print_new_key(key, args.json, f"ATO {key.ato_id} created")
        return 0

    return await _with_connection(run)


async def _key_create(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        key = await create_key(connection, args.ato_id)
        _print_new_key(key, args.json, f"new key for {key.ato_id}")
        return 0

    return await _with_connection(run)


async def _key_revoke(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        revoked = await revoke_key(connection, uuid.UUID(args.key_id))
        print("revoked" if revoked else "no such active key")
        return 0 if revoked else 1

    return await _with_connection(run)


API_KEY_VARIABLE = "ACHIEVEMENTS_API_KEY"


class MissingApiKey(Exception):
    pass


def read_api_key() -> str:
    """The ATO API key: from ACHIEVEMENTS_API_KEY, else asked for (not echoed) on a terminal.

    Never an argument: a command line is visible to every user of the machine and kept in shell
    history.
    """
    api_key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not api_key and sys.stdin.isatty():
        api_key = getpass.getpass("ATO API key: ").strip()
    if not api_key:
        raise MissingApiKey(f"no API key: set {API_KEY_VARIABLE} (or run it on a terminal)")
    return api_key


async def _upload(args: argparse.Namespace) -> int:
    from services.upload_client import upload_file

    progress = UploadProgress.for_output(enabled=not args.json, wait=args.wait)
    try:
        with progress:
            progress.start_bytes(Path(args.file))
            result = await upload_file(
                Path(args.file),
                api_key=args.api_key,
                gateway_url=args.gateway,
                policy=args.policy,
                wait=args.wait,
                timeout_s=args.timeout,
                on_bytes=progress.bytes_sent,
                on_upload=progress.upload_seen,
            )
    except CommandFailed as failed:
        return _fail(failed, args.json)
    except Exception as error:
        return _fail(_translate(error), args.json)
    if args.json:
        _print_json(result)
    else:
        for name, value in result.items():
            print(f"{name}: {value}")
    if args.wait and result.get("status") in _ACCEPTING_NONE:
        return ExitCode.NOTHING_ACCEPTED
    return ExitCode.OK


# Final statuses in which no row was accepted (services.core.states: FINAL minus ACCEPTING).
_ACCEPTING_NONE: Final = frozenset({"rejected", "failed", "errored"})


class UploadProgress:
    """On a terminal: a bar for the bytes sent, then a count of the rows validated. Anywhere
    else (a pipe, `--json`): nothing, so the output stays one JSON object or plain lines."""

    def __init__(self, console: Console | None, wait: bool) -> None:
        self._console = console
        self._wait = wait
        self._bytes_bar: Progress | None = None
        self._rows_bar: Progress | None = None
        self._bytes: TaskID | None = None
        self._rows: TaskID | None = None

    @classmethod
    def for_output(cls, *, enabled: bool, wait: bool) -> UploadProgress:
        console = Console(stderr=True) if enabled and sys.stderr.isatty() else None
        return cls(console, wait)

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for bar in (self._bytes_bar, self._rows_bar):
            if bar is not None:
                bar.stop()

    def start_bytes(self, path: Path) -> None:
        if self._console is None:
            return
        self._bytes_bar = Progress(
            TextColumn("sending   "),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._bytes_bar.start()
        with contextlib.suppress(OSError):
            self._bytes = self._bytes_bar.add_task("sending", total=path.stat().st_size)

    def bytes_sent(self, count: int) -> None:
        if self._bytes_bar is not None and self._bytes is not None:
            self._bytes_bar.advance(self._bytes, count)

    def upload_seen(self, upload: dict[str, Any]) -> None:
        """Each state of the upload read while waiting: rows validated so far."""
        if self._console is None or not self._wait:
            return
        if self._rows_bar is None:
            if self._bytes_bar is not None:
                self._bytes_bar.stop()
            self._rows_bar = Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f} rows"),
                TimeElapsedColumn(),
                console=self._console,
            )
            self._rows_bar.start()
            self._rows = self._rows_bar.add_task("validating", total=None)
        assert self._rows is not None
        status = str(upload.get("status", ""))
        processed = int(upload.get("rows_processed") or 0)
        final = status not in ("received", "validating")
        self._rows_bar.update(
            self._rows,
            completed=processed,
            total=max(processed, 1) if final else None,
            description=status,
        )


def _check(argv: list[str]) -> int:
    from services.validator.offline_check import main as check_main

    # The same `SCHEME_*` limits as the gateway and the validator.
    return check_main(argv, SchemeLimits())


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error asked for as JSON (`--json` on the command line) is
    one JSON object on stdout too."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_requested:
            _fail(CommandFailed(ExitCode.USAGE, "USAGE", f"{self.prog}: {message}"), True)
            raise SystemExit(ExitCode.USAGE)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="achievements")
    commands = parser.add_subparsers(dest="command", required=True)

    admin = commands.add_parser("admin", help="set up the database and topics").add_subparsers(
        dest="admin_command", required=True
    )
    admin.add_parser("migrate").set_defaults(action=_migrate)
    admin.add_parser("topics").set_defaults(action=_topics)
    migrated = admin.add_parser("migrated", help="exit 0 once every migration is applied")
    migrated.add_argument("--wait-s", type=float, default=0.0, help="wait this long for them")
    migrated.set_defaults(action=_migrated)

    reference = commands.add_parser("reference", help="reference data").add_subparsers(
        dest="reference_command", required=True
    )
    load = reference.add_parser("load", help="load courses.csv and employers.csv from DIR")
    load.add_argument("dir", nargs="?", help="folder with the two CSVs (default: bundled copy)")
    load.add_argument(
        "--if-missing",
        action="store_true",
        help="only when no version is loaded yet (a deployment's first start)",
    )
    load.set_defaults(action=_reference_load)

    ato = commands.add_parser("ato", help="training organisations and API keys").add_subparsers(
        dest="ato_command", required=True
    )
    create = ato.add_parser("create")
    create.add_argument("name")
    create.add_argument(
        "--policy", default="all_or_nothing", choices=["all_or_nothing", "valid_rows"]
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(action=_ato_create)
    key = ato.add_parser("key").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create")
    key_create.add_argument("ato_id")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(action=_key_create)
    key_revoke = key.add_parser("revoke")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(action=_key_revoke)

    upload = commands.add_parser("upload", help="upload a CSV through the gateway")
    upload.add_argument("file")
    # Removed: the key is read from ACHIEVEMENTS_API_KEY or asked for. Still parsed (hidden) only
    # to explain that, rather than argparse's bare "unrecognized arguments".
    upload.add_argument("--api-key", dest="removed_api_key", help=argparse.SUPPRESS)
    upload.add_argument("--gateway", default="http://127.0.0.1:8080")
    upload.add_argument("--policy", choices=["all_or_nothing", "valid_rows"])
    upload.add_argument("--wait", action="store_true", help="wait for the final status")
    upload.add_argument("--timeout", type=float, default=600.0)
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(action=_upload)

    commands.add_parser("check", help="validate a file offline (see `achievements check -h`)")
    # The click group's commands, listed here so that `achievements -h` shows them.
    for name, summary in (
        ("status", "an upload's status (see `achievements status --help`)"),
        ("errors", "an upload's row issues, JSON or --csv"),
        ("withdraw", "withdraw an upload's achievements"),
        ("watch", "follow the event topics live"),
        ("dlq", "list, show and replay dead letters"),
        ("reconcile", "compare our claims with the grant system's"),
        ("purge", "delete learner data past the retention period"),
        ("learner", "one learner's records: find, export, erase"),
    ):
        commands.add_parser(name, help=summary)
    return parser


# --- ATO commands on one upload: status, errors, withdraw ---------------------------------------

DEFAULT_GATEWAY: Final = "http://127.0.0.1:8080"
GATEWAY_VARIABLE: Final = "ACHIEVEMENTS_GATEWAY_URL"


def _run(command: Callable[[], Coroutine[Any, Any, int]], as_json: bool) -> int:
    """Runs a command, turning what it ran into into the documented exit status (and, with
    `--json`, one JSON object)."""
    try:
        return asyncio.run(command())
    except CommandFailed as failed:
        return _fail(failed, as_json)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return _fail(_translate(error), as_json)


def _gateway_client(gateway: str) -> Any:
    from services.upload_client import GatewayClient

    return GatewayClient(gateway, read_api_key())


def _print_upload(upload: dict[str, Any]) -> None:
    for name, value in upload.items():
        print(f"{name}: {value}")


_gateway_option = click.option(
    "--gateway",
    envvar=GATEWAY_VARIABLE,
    default=DEFAULT_GATEWAY,
    show_default=True,
    help=f"the gateway's URL (or {GATEWAY_VARIABLE})",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="one JSON object out")


@click.group(name="achievements", help="Operations on uploads and on the event topics.")
def operations() -> None:
    pass


@operations.command(help="An upload's status and counts (with an ATO's API key).")
@click.argument("upload_id")
@_gateway_option
@_json_option
def status(upload_id: str, gateway: str, as_json: bool) -> int:
    async def command() -> int:
        upload = await _gateway_client(gateway).upload(upload_id)
        _print_json(upload) if as_json else _print_upload(upload)
        return ExitCode.OK

    return _run(command, as_json)


@operations.command(help="An upload's row issues: JSON (all pages) or, with --csv, the CSV report.")
@click.argument("upload_id")
@click.option("--csv", "as_csv", is_flag=True, help="the error report as CSV on stdout")
@_gateway_option
@_json_option
def errors(upload_id: str, as_csv: bool, gateway: str, as_json: bool) -> int:
    if as_csv and as_json:
        return _fail(
            CommandFailed(ExitCode.USAGE, "USAGE", "--csv and --json exclude each other"), True
        )

    async def command() -> int:
        client = _gateway_client(gateway)
        if as_csv:
            out = sys.stdout.buffer
            await client.errors_csv(upload_id, out.write)
            out.flush()
            return ExitCode.OK
        report = await client.errors(upload_id)
        if as_json:
            _print_json(report)
            return ExitCode.OK
        print(
            f"{report['issues_total']} issues"
            + (f" ({report['issues_stored']} stored)" if report.get("truncated") else "")
        )
        for issue in report["issues"]:
            where = f"row {issue.get('row')}" if issue.get("row") is not None else "file"
            column = f" {issue['column']}" if issue.get("column") else ""
            print(f"{where}{column}: {issue.get('code')} {issue.get('message', '')}")
        return ExitCode.OK

    return _run(command, as_json)


@operations.command(help="Withdraw an upload's achievements still in their amendment window.")
@click.argument("upload_id")
@_gateway_option
@_json_option
def withdraw(upload_id: str, gateway: str, as_json: bool) -> int:
    async def command() -> int:
        upload = await _gateway_client(gateway).withdraw(upload_id)
        _print_json(upload) if as_json else _print_upload(upload)
        return ExitCode.OK

    return _run(command, as_json)


# --- Operator commands on the topics: watch, dlq ------------------------------------------------

# Short names for `--topic`, as an operator types them.
TOPIC_NAMES: Final = ("uploads", "upload-status", "accepted", "grant-claims", "dead-letter")
# Headers `dlq replay` sets on what it re-publishes: the dead letter it came from, and when.
REPLAY_HEADER: Final = "dlq.replay_of"
REPLAYED_AT_HEADER: Final = "dlq.replayed_at"
# How long a snapshot of a topic (dlq list/show) may take before it is reported unavailable.
SNAPSHOT_TIMEOUT_S: Final = 30.0
METADATA_ATTEMPTS: Final = 6
# Fields every event has, left out of a watched line (the line shows its time and type).
_ENVELOPE: Final = frozenset({"event_id", "schema_version", "occurred_at", "event_type"})


def _kafka_settings() -> KafkaSettings:
    try:
        return KafkaSettings()
    except ValidationError as invalid:
        names = sorted({".".join(str(p) for p in e["loc"]) or "settings" for e in invalid.errors()})
        raise CommandFailed(
            ExitCode.USAGE, "INVALID_SETTINGS", f"invalid Kafka settings: {', '.join(names)}"
        ) from None


def _topic_by_short_name(topics: Topics) -> dict[str, str]:
    return dict(zip(TOPIC_NAMES, topics.all(), strict=True))


def _short_name(topic: str, topics: Topics) -> str:
    for short, full in _topic_by_short_name(topics).items():
        if full == topic:
            return short
    return topic


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers or ()}


def _payload(record: ConsumerRecord) -> dict[str, Any] | None:
    try:
        value = json.loads(record.value) if record.value is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class EventFilter:
    """Which records `watch` shows: by event type (a glob), ATO and upload."""

    def __init__(
        self, types: Iterable[str] = (), ato: str | None = None, upload: str | None = None
    ) -> None:
        self.types = list(types)
        self.ato = ato
        self.upload = upload

    def matches(self, payload: dict[str, Any] | None) -> bool:
        if payload is None:
            return not (self.types or self.ato or self.upload)
        event_type = str(payload.get("event_type", ""))
        if self.types and not any(fnmatch.fnmatchcase(event_type, t) for t in self.types):
            return False
        if self.ato is not None and payload.get("ato_id") != self.ato:
            return False
        return self.upload is None or payload.get("upload_id") == self.upload


def _brief(value: object) -> str:
    if isinstance(value, list):
        return f"[{len(value)}]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def event_line(record: ConsumerRecord, topics: Topics) -> str:
    """One readable line: time, topic, event type, then the event's fields (lists counted)."""
    payload = _payload(record)
    topic = _short_name(record.topic, topics)
    if payload is None:
        stamp = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds")
        size = len(record.value or b"")
        headers = _headers(record)
        source = headers.get("dlq.source_topic")
        where = f" from {_short_name(source, topics)}" if source else ""
        error = f" error={headers['dlq.error']!r}" if "dlq.error" in headers else ""
        return f"{stamp} {topic} <not an event: {size} bytes>{where}{error}"
    stamp = str(payload.get("occurred_at", ""))[:19].replace("T", " ")
    fields = " ".join(
        f"{name}={_brief(value)}"
        for name, value in payload.items()
        if name not in _ENVELOPE and value is not None
    )
    line = f"{stamp} {topic:<13} {payload.get('event_type', '?'):<26} {fields}"
    if record.topic == topics.dead_letter:
        headers = _headers(record)
        line += (
            f" [dead letter {record.partition}:{record.offset} from"
            f" {_short_name(headers.get('dlq.source_topic', '?'), topics)}"
            f" stage={headers.get('dlq.stage', '?')} error={headers.get('dlq.error', '')!r}]"
        )
    return line


def event_json(record: ConsumerRecord, topics: Topics) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": _short_name(record.topic, topics),
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode(errors="replace") if record.key is not None else None,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "event": _payload(record),
    }
    if record.headers:
        body["headers"] = _headers(record)
    return body


def _operator_consumer(settings: KafkaSettings, client_id: str) -> AIOKafkaConsumer:
    """A consumer in no group: it commits nothing and takes no partition from the services."""
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    # The consumer's own `topics()` reads the metadata without keeping it, and
    # `partitions_for_topic` only answers from what is kept: read it from the cluster's answer.
    topics = list(topics)
    found: list[TopicPartition] = []
    # A topic created a moment ago may not be in every broker's metadata yet.
    for attempt in range(METADATA_ATTEMPTS):
        cluster = await consumer._client.fetch_all_metadata()
        found = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        if found or attempt == METADATA_ATTEMPTS - 1:
            break
        await asyncio.sleep(0.5)
    if not found:
        raise CommandFailed(
            ExitCode.UNAVAILABLE, "NO_SUCH_TOPIC", "the topics do not exist (KAFKA_TOPIC_PREFIX?)"
        )
    return found


@operations.command(help="Follow the event topics live, one line per event.")
@click.option(
    "--topic",
    "topic_names",
    multiple=True,
    type=click.Choice(TOPIC_NAMES),
    help="only this topic (repeatable; default: all)",
)
@click.option("--type", "types", multiple=True, help="only this event type, e.g. 'claim.*'")
@click.option("--ato", help="only events of this ATO")
@click.option("--upload", "upload_id", help="only events of this upload")
@click.option("--from-beginning", is_flag=True, help="from the start of the topics, not now")
@click.option("--limit", type=click.IntRange(min=1), help="stop after this many events")
@click.option("--for", "for_s", type=click.FloatRange(min=0), help="stop after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per event (JSON lines)")
def watch(
    topic_names: tuple[str, ...],
    types: tuple[str, ...],
    ato: str | None,
    upload_id: str | None,
    from_beginning: bool,
    limit: int | None,
    for_s: float | None,
    as_json: bool,
) -> int:
    async def command() -> int:
        settings = _kafka_settings()
        topics = Topics(settings.topic_prefix)
        by_name = _topic_by_short_name(topics)
        chosen = [by_name[name] for name in (topic_names or TOPIC_NAMES)]
        wanted = EventFilter(types, ato, upload_id)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread may handle signals; elsewhere `--for`/`--limit` end it.
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        deadline = None if for_s is None else time.monotonic() + for_s
        consumer = _operator_consumer(settings, "achievements-watch")
        await consumer.start()
        shown = 0
        try:
            partitions = await _partitions(consumer, chosen)
            consumer.assign(partitions)
            if from_beginning:
                await consumer.seek_to_beginning(*partitions)
            else:
                await consumer.seek_to_end(*partitions)
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                batches = await consumer.getmany(timeout_ms=500)
                records = sorted(
                    (r for batch in batches.values() for r in batch), key=lambda r: r.timestamp
                )
                for record in records:
                    if not wanted.matches(_payload(record)):
                        continue
                    if as_json:
                        _print_json(event_json(record, topics))
                    else:
                        print(event_line(record, topics), flush=True)
                    shown += 1
                    if limit is not None and shown >= limit:
                        return ExitCode.OK
        finally:
            await consumer.stop()
        return ExitCode.OK

    return _run(command, as_json)


async def _read_topic(
    settings: KafkaSettings,
    topic: str,
    only: Iterable[tuple[int, int]] | None = None,
) -> list[ConsumerRecord]:
    """The topic's records up to its end as it was when asked, or only those at `only`'s
    (partition, offset) pairs; read by a consumer in no group."""
    consumer = _operator_consumer(settings, "achievements-dlq")
    await consumer.start()
    try:
        partitions = await _partitions(consumer, [topic])
        ends = await consumer.end_offsets(partitions)
        if only is None:
            starts = await consumer.beginning_offsets(partitions)
            wanted = {(p.partition, o) for p in partitions for o in range(starts[p], ends[p])}
        else:
            wanted = set(only)
        found: dict[tuple[int, int], ConsumerRecord] = {}
        async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
            for partition in partitions:
                offsets = sorted(o for p, o in wanted if p == partition.partition)
                offsets = [o for o in offsets if o < ends[partition]]
                if not offsets:
                    continue
                consumer.assign([partition])
                consumer.seek(partition, offsets[0])
                last = offsets[-1]
                while await consumer.position(partition) <= last:
                    batches = await consumer.getmany(partition, timeout_ms=1000)
                    for record in batches.get(partition, []):
                        if (record.partition, record.offset) in wanted:
                            found[(record.partition, record.offset)] = record
        return [found[key] for key in sorted(found)]
    finally:
        await consumer.stop()


def _dead_letter_summary(record: ConsumerRecord, topics: Topics) -> dict[str, Any]:
    headers = _headers(record)
    payload = _payload(record)
    summary = {
        "id": f"{record.partition}:{record.offset}",
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "source_topic": _short_name(headers.get("dlq.source_topic", ""), topics),
        "source_partition": headers.get("dlq.source_partition"),
        "source_offset": headers.get("dlq.source_offset"),
        "stage": headers.get("dlq.stage"),
        "error": headers.get("dlq.error"),
        "event_type": (payload or {}).get("event_type") or headers.get("event_type"),
        "size_bytes": len(record.value or b""),
    }
    if REPLAY_HEADER in headers:
        summary["replay_of"] = headers[REPLAY_HEADER]
    return summary


def _parse_ids(ids: Iterable[str]) -> list[tuple[int, int]]:
    parsed = []
    for text in ids:
        partition, _, offset = text.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise CommandFailed(
                ExitCode.USAGE, "USAGE", f"a dead letter is PARTITION:OFFSET, not {text!r}"
            )
        parsed.append((int(partition), int(offset)))
    return parsed


@operations.group(help="The dead-letter topic: list, show and replay what consumers gave up on.")
def dlq() -> None:
    pass


@dlq.command(name="list", help="Every dead letter on the topic, oldest first per partition.")
@click.option("--stage", help="only those this stage gave up on (e.g. grant_bridge.consume)")
@_json_option
def dlq_list(stage: str | None, as_json: bool) -> int:
    async def command() -> int:
        settings = _kafka_settings()
        topics = Topics(settings.topic_prefix)
        records = await _read_topic(settings, topics.dead_letter)
        summaries = [
            summary
            for summary in (_dead_letter_summary(r, topics) for r in records)
            if stage is None or summary["stage"] == stage
        ]
        if as_json:
            _print_json({"count": len(summaries), "dead_letters": summaries})
            return ExitCode.OK
        for item in summaries:
            print(
                f"{item['id']:<8} {item['timestamp'][:19]} {item['source_topic']}"
                f" {item['source_partition']}:{item['source_offset']} stage={item['stage']}"
                f" type={item['event_type']} error={item['error']!r}"
                + (f" (replay of {item['replay_of']})" if "replay_of" in item else "")
            )
        print(f"{len(summaries)} dead letters", file=sys.stderr)
        return ExitCode.OK

    return _run(command, as_json)


@dlq.command(name="show", help="One dead letter: its headers and payload. ID is PARTITION:OFFSET.")
@click.argument("dead_letter_id")
@_json_option
def dlq_show(dead_letter_id: str, as_json: bool) -> int:
    async def command() -> int:
        settings = _kafka_settings()
        topics = Topics(settings.topic_prefix)
        records = await _read_topic(settings, topics.dead_letter, _parse_ids([dead_letter_id]))
        if not records:
            raise CommandFailed(ExitCode.REFUSED, "NO_SUCH_DEAD_LETTER", dead_letter_id)
        record = records[0]
        payload = _payload(record)
        shown = {
            **_dead_letter_summary(record, topics),
            "key": record.key.decode(errors="replace") if record.key is not None else None,
            "headers": _headers(record),
            "value": payload
            if payload is not None
            else {"base64": base64.b64encode(record.value or b"").decode()},
        }
        if as_json:
            _print_json(shown)
        else:
            for name, value in shown.items():
                if name == "value":
                    print("value:")
                    print(json.dumps(value, indent=2, default=str))
                else:
                    print(f"{name}: {value}")
        return ExitCode.OK

    return _run(command, as_json)


@dlq.command(
    name="replay",
    help="Re-publish dead letters (PARTITION:OFFSET ...) to their source topic, with a"
    f" {REPLAY_HEADER} header naming the dead letter.",
)
@click.argument("dead_letter_ids", nargs=-1, required=True)
@_json_option
def dlq_replay(dead_letter_ids: tuple[str, ...], as_json: bool) -> int:
    async def command() -> int:
        settings = _kafka_settings()
        topics = Topics(settings.topic_prefix)
        wanted = _parse_ids(dead_letter_ids)
        records = await _read_topic(settings, topics.dead_letter, wanted)
        missing = set(wanted) - {(r.partition, r.offset) for r in records}
        if missing:
            ids = ", ".join(f"{p}:{o}" for p, o in sorted(missing))
            raise CommandFailed(ExitCode.REFUSED, "NO_SUCH_DEAD_LETTER", ids)
        # Only the pipeline's own topics: a header is data, and must not steer a replay
        # anywhere else.
        sources = set(topics.all()) - {topics.dead_letter}
        for record in records:
            if _headers(record).get("dlq.source_topic") not in sources:
                raise CommandFailed(
                    ExitCode.REFUSED,
                    "UNKNOWN_SOURCE_TOPIC",
                    f"{record.partition}:{record.offset} names no topic of this pipeline",
                )
        producer = make_producer(settings, "achievements-dlq-replay")
        await producer.start()
        replayed = []
        try:
            replayed_at = datetime.now(UTC).isoformat().encode()
            for record in records:
                source = _headers(record)["dlq.source_topic"]
                headers = [
                    (name, value)
                    for name, value in record.headers or ()
                    if not name.startswith("dlq.")
                ]
                headers += [
                    (REPLAY_HEADER, f"{record.partition}:{record.offset}".encode()),
                    (REPLAYED_AT_HEADER, replayed_at),
                ]
                sent = await producer.send_and_wait(
                    source, value=record.value, key=record.key, headers=headers
                )
                replayed.append(
                    {
                        "id": f"{record.partition}:{record.offset}",
                        "topic": _short_name(source, topics),
                        "partition": sent.partition,
                        "offset": sent.offset,
                    }
                )
        finally:
            await producer.stop()
        if as_json:
            _print_json({"replayed": replayed})
        else:
            for item in replayed:
                print(
                    f"replayed {item['id']} to {item['topic']} {item['partition']}:{item['offset']}"
                )
        return ExitCode.OK

    return _run(command, as_json)


# --- Operator command: reconcile our claims with the grant system's -----------------------------

# Our claim states in which the grant system should hold nothing.
_UNSENT_HERE: Final = frozenset({"pending", "withdrawn", "skipped"})
_OUR_CLAIMS: Final = """
SELECT c.claim_id, c.upload_id, c.row_number, c.state, c.grant_amount_pence, a.levy_number
FROM grant_claims c JOIN achievements a USING (achievement_id)
WHERE c.upload_id = $1
"""
_UPLOADS_WITH_CLAIMS_SINCE: Final = """
SELECT DISTINCT upload_id FROM grant_claims WHERE created_at >= $1 ORDER BY upload_id
"""


# Only a pending claim no bridge holds is moved: the next lease sends it, with its own key, and
# the grant system answers with what it stored.
class Difference(enum.StrEnum):
    """What `reconcile` reports, per claim."""

    # They hold a claim we have not recorded as sent (pending, withdrawn or skipped here).
    HELD_THERE_UNSENT_HERE = "held_there_unsent_here"
    # We recorded it accepted; they have no such claim.
    ACCEPTED_HERE_MISSING_THERE = "accepted_here_missing_there"
    # We recorded a refusal; they hold it accepted.
    REFUSED_HERE_HELD_THERE = "refused_here_held_there"
    # They hold a claim id of this upload that we never created.
    UNKNOWN_HERE = "unknown_here"
    AMOUNT_DIFFERS = "amount_differs"
    LEVY_NUMBER_DIFFERS = "levy_number_differs"


def _levy(value: object) -> str | None:
    return str(value).strip().upper() if value else None


def compare_claims(
    ours: Iterable[dict[str, Any]], theirs: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every difference between our claim records and the grant system's for one upload.

    `ours`: `claim_id`, `row_number`, `state`, `grant_amount_pence`, `levy_number`; `theirs`:
    the grant API's stored claims (`claim_id`, `row_number`, `status`, `grant_amount_pence`,
    `levy_registration_number`)."""
    mine = {str(claim["claim_id"]): claim for claim in ours}
    held = {str(claim["claim_id"]): claim for claim in theirs}
    found: list[dict[str, Any]] = []

    def report(kind: Difference, claim_id: str) -> None:
        here, there = mine.get(claim_id), held.get(claim_id)
        found.append(
            {
                "kind": kind.value,
                "claim_id": claim_id,
                "row_number": (here or there or {}).get("row_number"),
                "ours": None
                if here is None
                else {
                    "state": here["state"],
                    "grant_amount_pence": here["grant_amount_pence"],
                    "levy_number": here["levy_number"],
                },
                "theirs": None
                if there is None
                else {
                    "status": there.get("status"),
                    "grant_amount_pence": there.get("grant_amount_pence"),
                    "levy_number": there.get("levy_registration_number"),
                },
            }
        )

    for claim_id in sorted(mine.keys() | held.keys()):
        here, there = mine.get(claim_id), held.get(claim_id)
        if here is None:
            report(Difference.UNKNOWN_HERE, claim_id)
        elif there is None:
            if here["state"] == "accepted":
                report(Difference.ACCEPTED_HERE_MISSING_THERE, claim_id)
        elif here["state"] in _UNSENT_HERE:
            report(Difference.HELD_THERE_UNSENT_HERE, claim_id)
        elif here["state"] == "refused" and there.get("status") == "accepted":
            report(Difference.REFUSED_HERE_HELD_THERE, claim_id)
        else:
            if here["state"] == "accepted" and here["grant_amount_pence"] != there.get(
                "grant_amount_pence"
            ):
                report(Difference.AMOUNT_DIFFERS, claim_id)
            if _levy(here["levy_number"]) != _levy(there.get("levy_registration_number")):
                report(Difference.LEVY_NUMBER_DIFFERS, claim_id)
    return found


async def _their_claims(
    session: aiohttp.ClientSession, base_url: str, upload_id: uuid.UUID
) -> list[dict[str, Any]]:
    from services.upload_client import UploadError

    async with session.get(f"{base_url}/v1/claims", params={"upload_id": str(upload_id)}) as got:
        if got.status != 200:
            raise UploadError(got.status, f"GRANT_API_{got.status}", "the grant API refused")
        claims: list[dict[str, Any]] = (await got.json())["claims"]
        return claims


@operations.command(
    help="Compare our claim records with the grant system's for one upload or every upload"
    " with claims since DATE, and report every difference; --repair re-queues the pending"
    " claims the grant system already holds (a resend carries the same key)."
)
@click.argument("upload_id", required=False)
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="YYYY-MM-DD (UTC)")
@click.option("--repair", is_flag=True, help="re-queue what is safe to resend")
@_json_option
def reconcile(upload_id: str | None, since: datetime | None, repair: bool, as_json: bool) -> int:
    if (upload_id is None) == (since is None):
        failure = CommandFailed(ExitCode.USAGE, "USAGE", "give UPLOAD_ID or --since DATE")
        return _fail(failure, as_json)

    async def command() -> int:
        from services.grant_bridge.settings import GrantBridgeSettings

        try:
            settings = GrantBridgeSettings()
        except ValidationError as invalid:
            names = sorted({".".join(str(p) for p in e["loc"]) for e in invalid.errors()})
            raise CommandFailed(
                ExitCode.USAGE, "INVALID_SETTINGS", f"invalid settings: {', '.join(names)}"
            ) from None
        try:
            wanted = [uuid.UUID(upload_id)] if upload_id else []
        except ValueError:
            raise CommandFailed(ExitCode.USAGE, "USAGE", "UPLOAD_ID is not a UUID") from None
        postgres = settings.common.postgres
        connection = await asyncpg.connect(postgres.database_url.get_secret_value())
        differences: list[dict[str, Any]] = []
        repaired: list[str] = []
        try:
            if since is not None:
                rows = await connection.fetch(_UPLOADS_WITH_CLAIMS_SINCE, since.replace(tzinfo=UTC))
                wanted = [row["upload_id"] for row in rows]
            headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
            timeout = aiohttp.ClientTimeout(total=settings.client_timeout_s * 3)
            base_url = settings.grant_api_url.rstrip("/")
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
                for upload in wanted:
                    ours = [dict(r) for r in await connection.fetch(_OUR_CLAIMS, upload)]
                    theirs = await _their_claims(session, base_url, upload)
                    for difference in compare_claims(ours, theirs):
                        differences.append({"upload_id": str(upload), **difference})
            if repair:
                safe = [
                    d["claim_id"]
                    for d in differences
                    if d["kind"] == Difference.HELD_THERE_UNSENT_HERE
                    and d["ours"]["state"] == ClaimState.PENDING
                ]
                if safe:
                    requeued = await grant_states.requeue_pending_claims(connection, safe)
                    repaired = sorted(str(claim_id) for claim_id in requeued)
        finally:
            await connection.close()
        if as_json:
            _print_json(
                {
                    "uploads_checked": len(wanted),
                    "differences": differences,
                    "requeued": repaired,
                }
            )
        else:
            for d in differences:
                print(
                    f"{d['upload_id']} row {d['row_number']} claim {d['claim_id']}: {d['kind']}"
                    f" (ours {d['ours']}, theirs {d['theirs']})"
                )
            print(
                f"{len(wanted)} uploads checked, {len(differences)} differences"
                + (f", {len(repaired)} claims re-queued" if repair else "")
            )
        return ExitCode.DIFFERENCES if differences else ExitCode.OK

    return _run(command, as_json)


# --- Operator commands on learner data: the retention purge, one learner's requests ------------


def _retention_settings() -> tuple[CommonSettings, RetentionSettings]:
    try:
        return (
            load_settings(CommonSettings, "achievements"),
            load_settings(RetentionSettings, "achievements"),
        )
    except SystemExit:  # load_settings has said which setting is wrong
        raise CommandFailed(ExitCode.USAGE, "INVALID_SETTINGS", "invalid settings") from None


@operations.command(
    help="Delete learner data past RETENTION_DAYS (files, masked values, learner fields of"
    " settled claims) and orphaned .part files; counts, codes and states stay."
)
@click.option("--dry-run", is_flag=True, help="count what would go, change nothing")
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=60),
    help="run again every this many seconds until stopped (the schedule of the compose file"
    " and the local stack; Kubernetes runs it as a CronJob instead)",
)
@_json_option
def purge(dry_run: bool, every_s: float | None, as_json: bool) -> int:
    async def command() -> int:
        from services.core.retention import purge_command

        common, retention = _retention_settings()
        while True:
            report = await purge_command(common, retention, dry_run=dry_run)
            if as_json:
                _print_json(report)
            else:
                for name, value in report.items():
                    print(f"{name}: {value}")
            if every_s is None:
                return ExitCode.OK
            await asyncio.sleep(every_s)  # SIGTERM ends the process between runs

    return _run(command, as_json)


@operations.group(help="One learner's records within one ATO: find, export, erase.")
def learner() -> None:
    pass


def _learner_command(action: str, help_text: str) -> None:
    @learner.command(name=action, help=help_text)
    @click.option("--ato", "ato_id", required=True, help="the ATO whose uploads are searched")
    @click.option("--uln", help="the learner's ULN")
    @click.option("--ni", "ni_number", help="the learner's NI number")
    @click.option("--citb-id", "citb_id", help="the learner's CITB individual id")
    @_json_option
    def run(
        ato_id: str,
        uln: str | None,
        ni_number: str | None,
        citb_id: str | None,
        as_json: bool,
    ) -> int:
        async def command() -> int:
            from services.core.learner_requests import learner_command

            common, retention = _retention_settings()
            try:
                found = await learner_command(
                    common,
                    retention,
                    action=action,
                    ato_id=ato_id,
                    uln=uln,
                    ni_number=ni_number,
                    citb_id=citb_id,
                )
            except ValueError as bad:
                raise CommandFailed(ExitCode.USAGE, "USAGE", str(bad)) from None
            _print_json(found)  # always JSON: a record, not a table
            return ExitCode.OK

        return _run(command, as_json)


_learner_command("find", "The learner's achievements and rows across the ATO's uploads.")
_learner_command("export", "Everything held about the learner, as one JSON object.")
_learner_command(
    "erase",
    "Erase the learner's personal data: claims still in their window are withdrawn, the rest"
    " erased now or as soon as their claim is answered.",
)


OPERATIONS_COMMANDS: Final = frozenset(operations.commands)


def _run_operations(argv: list[str]) -> int:
    try:
        result = operations.main(args=argv, prog_name="achievements", standalone_mode=False)
    except click.UsageError as error:
        if "--json" in argv:
            return _fail(CommandFailed(ExitCode.USAGE, "USAGE", error.format_message()), True)
        error.show()
        return ExitCode.USAGE
    except click.Abort:
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The offline check owns its own argument parsing (section 7 of the scheme).
    if argv[:1] == ["check"]:
        return _check(argv[1:])
    if argv[:1] and argv[0] in OPERATIONS_COMMANDS:
        return _run_operations(argv)
    parser = build_parser()
    _Parser.json_requested = "--json" in argv
    args = parser.parse_args(argv)
    if args.command == "upload":
        if args.removed_api_key is not None:
            parser.error(f"--api-key was removed: set {API_KEY_VARIABLE} instead (or be asked)")
        try:
            args.api_key = read_api_key()
        except MissingApiKey as missing:
            if args.json:
                return _fail(_translate(missing), as_json=True)
            parser.error(str(missing))
    result: int = asyncio.run(args.action(args))
    return result


if __name__ == "__main__":
    sys.exit(main())
