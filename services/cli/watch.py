"""`achievements watch`: follow the event topics live, one readable line (or, with `--json`,
one JSON object) per event, with the service's own Kafka settings. It joins no consumer group,
so it takes nothing from the services and commits nothing."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.cli.context import CliContext, pass_cli
from services.cli.failures import ExitCode
from services.cli.options import CONTEXT_SETTINGS, json_lines_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.cli.topics import (
    TOPIC_NAMES,
    headers_of,
    operator_consumer_started,
    partitions_of,
    payload_of,
    short_name,
    topic_by_short_name,
)
from services.core.events import Topics
from services.core.settings import KafkaSettings

# Fields every event has, left out of a watched line (the line shows its time and type).
_ENVELOPE: Final = frozenset({"event_id", "schema_version", "occurred_at", "event_type"})
# How long one poll waits, so that `--for` and a signal are noticed.
POLL_MS: Final = 500


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
    payload = payload_of(record)
    topic = short_name(record.topic, topics)
    if payload is None:
        stamp = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds")
        size = len(record.value or b"")
        headers = headers_of(record)
        source = headers.get("dlq.source_topic")
        where = f" from {short_name(source, topics)}" if source else ""
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
        headers = headers_of(record)
        line += (
            f" [dead letter {record.partition}:{record.offset} from"
            f" {short_name(headers.get('dlq.source_topic', '?'), topics)}"
            f" stage={headers.get('dlq.stage', '?')} error={headers.get('dlq.error', '')!r}]"
        )
    return line


def event_json(record: ConsumerRecord, topics: Topics) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": short_name(record.topic, topics),
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode(errors="replace") if record.key is not None else None,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "event": payload_of(record),
    }
    if record.headers:
        body["headers"] = headers_of(record)
    return body


class _Watch:
    """What to show, and until when: `--limit` events or `--for` seconds, or a signal."""

    def __init__(self, wanted: EventFilter, limit: int | None, for_s: float | None) -> None:
        self.wanted = wanted
        self.limit = limit
        self.deadline = None if for_s is None else time.monotonic() + for_s
        self.shown = 0
        self.stop = asyncio.Event()

    def catch_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread may handle signals; elsewhere `--for`/`--limit` end it.
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(signum, self.stop.set)

    def over(self) -> bool:
        if self.stop.is_set():
            return True
        if self.limit is not None and self.shown >= self.limit:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline


async def _follow(
    consumer: AIOKafkaConsumer, watching: _Watch, topics: Topics, as_json: bool
) -> None:
    while not watching.over():
        batches = await consumer.getmany(timeout_ms=POLL_MS)
        records = sorted(
            (r for batch in batches.values() for r in batch), key=lambda r: r.timestamp
        )
        for record in records:
            if not watching.wanted.matches(payload_of(record)):
                continue
            if as_json:
                print_json(event_json(record, topics))
            else:
                print(event_line(record, topics), flush=True)
            watching.shown += 1
            if watching.over():
                return


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="Follow the event topics live, one line per event (Ctrl-C, --limit or --for end it).",
)
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
@json_lines_option
@pass_cli
def watch(
    context: CliContext,
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
        settings = build_settings(KafkaSettings)
        topics = Topics(settings.topic_prefix)
        by_name = topic_by_short_name(topics)
        chosen = [by_name[name] for name in (topic_names or TOPIC_NAMES)]
        watching = _Watch(EventFilter(types, ato, upload_id), limit, for_s)
        watching.catch_signals()
        async with operator_consumer_started(
            settings, "achievements-watch", context.connect_timeout_s
        ) as consumer:
            partitions = await partitions_of(consumer, chosen)
            consumer.assign(partitions)
            if from_beginning:
                await consumer.seek_to_beginning(*partitions)
            else:
                await consumer.seek_to_end(*partitions)
            await _follow(consumer, watching, topics, as_json)
        return ExitCode.OK

    return run(command, as_json)
