"""`achievements dlq list|show|replay`: the dead-letter topic, read by a consumer in no group;
a replay re-publishes a record to its source topic (only a topic of this pipeline).

A replay is an operator command: it runs with an operator's token (ACHIEVEMENTS_OPERATOR_TOKEN,
checked in PostgreSQL before Kafka is touched), and each dead letter re-published is audited
as that operator's action once the broker has acknowledged it."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import click
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.cli.connect import start_kafka
from services.cli.context import CliContext, pass_cli
from services.cli.failures import CommandFailed, ExitCode, usage
from services.cli.operator_token import operator_session
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.cli.topics import (
    headers_of,
    operator_consumer_started,
    partitions_of,
    payload_of,
    short_name,
)
from services.core import audit
from services.core.events import Topics
from services.core.kafka import make_producer
from services.core.settings import KafkaSettings

# Headers `dlq replay` sets on what it re-publishes: the dead letter it came from, and when.
REPLAY_HEADER: Final = "dlq.replay_of"
REPLAYED_AT_HEADER: Final = "dlq.replayed_at"
# How long reading a snapshot of the topic (once connected) may take before it is reported
# unavailable.
SNAPSHOT_TIMEOUT_S: Final = 30.0


async def _read_topic(
    settings: KafkaSettings,
    topic: str,
    connect_timeout_s: float,
    only: Iterable[tuple[int, int]] | None = None,
) -> list[ConsumerRecord]:
    """The topic's records up to its end as it was when asked, or only those at `only`'s
    (partition, offset) pairs; read by a consumer in no group."""
    async with operator_consumer_started(
        settings, "achievements-dlq", connect_timeout_s
    ) as consumer:
        partitions = await partitions_of(consumer, [topic])
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


def _dead_letter_summary(record: ConsumerRecord, topics: Topics) -> dict[str, Any]:
    headers = headers_of(record)
    payload = payload_of(record)
    summary = {
        "id": f"{record.partition}:{record.offset}",
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "source_topic": short_name(headers.get("dlq.source_topic", ""), topics),
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
            raise usage(f"a dead letter is PARTITION:OFFSET, not {text!r}")
        parsed.append((int(partition), int(offset)))
    return parsed


@click.group(
    context_settings=CONTEXT_SETTINGS,
    help="The dead-letter topic: list, show and replay what consumers gave up on.",
)
def dlq() -> None:
    pass


@dlq.command(name="list", help="Every dead letter on the topic, oldest first per partition.")
@click.option("--stage", help="only those this stage gave up on (e.g. grant_bridge.consume)")
@json_option
@pass_cli
def dlq_list(context: CliContext, stage: str | None, as_json: bool) -> int:
    async def command() -> int:
        settings = build_settings(KafkaSettings)
        topics = Topics(settings.topic_prefix)
        records = await _read_topic(settings, topics.dead_letter, context.connect_timeout_s)
        summaries = [
            summary
            for summary in (_dead_letter_summary(r, topics) for r in records)
            if stage is None or summary["stage"] == stage
        ]
        if as_json:
            print_json({"count": len(summaries), "dead_letters": summaries})
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

    return run(command, as_json)


@dlq.command(name="show", help="One dead letter: its headers and payload. ID is PARTITION:OFFSET.")
@click.argument("dead_letter_id")
@json_option
@pass_cli
def dlq_show(context: CliContext, dead_letter_id: str, as_json: bool) -> int:
    async def command() -> int:
        settings = build_settings(KafkaSettings)
        topics = Topics(settings.topic_prefix)
        wanted = _parse_ids([dead_letter_id])
        records = await _read_topic(settings, topics.dead_letter, context.connect_timeout_s, wanted)
        if not records:
            raise CommandFailed(ExitCode.REFUSED, "NO_SUCH_DEAD_LETTER", dead_letter_id)
        record = records[0]
        payload = payload_of(record)
        shown = {
            **_dead_letter_summary(record, topics),
            "key": record.key.decode(errors="replace") if record.key is not None else None,
            "headers": headers_of(record),
            "value": payload
            if payload is not None
            else {"base64": base64.b64encode(record.value or b"").decode()},
        }
        if as_json:
            print_json(shown)
        else:
            for name, value in shown.items():
                if name == "value":
                    print("value:")
                    print(json.dumps(value, indent=2, default=str))
                else:
                    print(f"{name}: {value}")
        return ExitCode.OK

    return run(command, as_json)


@dlq.command(
    name="replay",
    help="Re-publish dead letters (PARTITION:OFFSET ...) to their source topic, with a"
    f" {REPLAY_HEADER} header naming the dead letter.",
)
@click.argument("dead_letter_ids", nargs=-1, required=True)
@json_option
@pass_cli
def dlq_replay(context: CliContext, dead_letter_ids: tuple[str, ...], as_json: bool) -> int:
    async def command() -> int:
        wanted = _parse_ids(dead_letter_ids)
        async with operator_session(context) as session:
            connection, by = session.connection, session.by
            replayed = await _replay_dead_letters(
                session.settings.kafka, wanted, context.connect_timeout_s
            )
            for item in replayed:
                partition, _, offset = item["id"].partition(":")
                await audit.record_operator_action(
                    connection,
                    audit.AuditKind.DEAD_LETTER_REPLAYED,
                    by.operator_id,
                    audit.Target(dead_letter=(int(partition), int(offset))),
                    datetime.now(UTC),
                )
        if as_json:
            print_json({"replayed": replayed})
        else:
            for item in replayed:
                print(
                    f"replayed {item['id']} to {item['topic']} {item['partition']}:{item['offset']}"
                )
        return ExitCode.OK

    return run(command, as_json)


async def _replay_dead_letters(
    settings: KafkaSettings, wanted: list[tuple[int, int]], connect_timeout_s: float
) -> list[dict[str, Any]]:
    """The dead letters at `wanted` re-published; refused whole when one is missing or names
    no topic of this pipeline."""
    topics = Topics(settings.topic_prefix)
    records = await _read_topic(settings, topics.dead_letter, connect_timeout_s, wanted)
    missing = set(wanted) - {(r.partition, r.offset) for r in records}
    if missing:
        ids = ", ".join(f"{p}:{o}" for p, o in sorted(missing))
        raise CommandFailed(ExitCode.REFUSED, "NO_SUCH_DEAD_LETTER", ids)
    # Only the pipeline's own topics: a header is data, and must not steer a replay
    # anywhere else.
    sources = set(topics.all()) - {topics.dead_letter}
    for record in records:
        if headers_of(record).get("dlq.source_topic") not in sources:
            raise CommandFailed(
                ExitCode.REFUSED,
                "UNKNOWN_SOURCE_TOPIC",
                f"{record.partition}:{record.offset} names no topic of this pipeline",
            )
    producer = make_producer(settings, "achievements-dlq-replay")
    await start_kafka(producer, settings, connect_timeout_s)
    try:
        return await _replay(producer, records, topics)
    finally:
        await producer.stop()


async def _replay(
    producer: AIOKafkaProducer, records: list[ConsumerRecord], topics: Topics
) -> list[dict[str, Any]]:
    """Each record's bytes and key to its source topic, with its headers less the `dlq.*` ones
    plus where it came from and when."""
    replayed = []
    replayed_at = datetime.now(UTC).isoformat().encode()
    for record in records:
        source = headers_of(record)["dlq.source_topic"]
        headers = [
            (name, value) for name, value in record.headers or () if not name.startswith("dlq.")
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
                "topic": short_name(source, topics),
                "partition": sent.partition,
                "offset": sent.offset,
            }
        )
    return replayed
