"""`achievements dlq list|show|replay` and `watch` against the real broker: a record the
consumer loop dead-lettered is listed, shown, and replayed to its source topic with a header
saying so."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services import cli
from services.cli.dlq import REPLAY_HEADER
from services.core.consumer import ConsumerLoop, Handled, Unusable
from services.core.events import Topics
from services.core.kafka import make_consumer, make_producer
from services.core.settings import KafkaSettings

pytestmark = pytest.mark.stack

STAGE = "test.consume"


async def dead_letter_one(kafka_settings: KafkaSettings, topics: Topics) -> bytes:
    """Publishes an unusable record and runs the consumer loop until it is dead-lettered."""
    value = json.dumps({"event_type": "achievements.accepted", "broken": True}).encode()
    producer = make_producer(kafka_settings, "dlq-test")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.accepted, value=value, key=b"upload-1", headers=[("event_type", b"x")]
        )
        stop = asyncio.Event()

        async def handler(_: object) -> Handled:
            stop.set()
            return Unusable("not a valid event: missing")

        loop = ConsumerLoop(handler, producer=producer, topics=topics, stage=STAGE)
        consumer = make_consumer(
            kafka_settings,
            topics.accepted,
            group_id=f"dlq-test-{uuid.uuid4().hex[:6]}",
            client_id="dlq-test",
            listener=loop.listener,
        )
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                await loop.run(consumer, stop)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return value


async def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kafka_settings: KafkaSettings,
    *argv: str,
) -> tuple[int, str]:
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    capsys.readouterr()
    # The command runs its own event loop, as it does from a shell.
    code = await asyncio.to_thread(cli.main, list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def operator(database_url: str, operator_token: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A replay is an operator command: the operator is identified (and audited) in PostgreSQL."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    monkeypatch.setenv("ACHIEVEMENTS_OPERATOR_TOKEN", operator_token)
    return database_url


async def test_a_dead_letter_is_listed_shown_and_replayed_to_its_source_topic(
    kafka_settings: KafkaSettings,
    topics: Topics,
    operator: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    value = await dead_letter_one(kafka_settings, topics)

    code, out = await run_cli(monkeypatch, capsys, kafka_settings, "dlq", "list", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert listed["count"] == 1
    letter = listed["dead_letters"][0]
    assert letter["source_topic"] == "accepted"
    assert letter["stage"] == STAGE
    assert letter["error"] == "not a valid event: missing"
    assert letter["event_type"] == "achievements.accepted"

    code, out = await run_cli(
        monkeypatch, capsys, kafka_settings, "dlq", "show", letter["id"], "--json"
    )
    assert code == 0
    shown = json.loads(out)
    assert shown["value"] == json.loads(value)
    assert shown["headers"]["dlq.source_topic"] == topics.accepted

    code, out = await run_cli(
        monkeypatch, capsys, kafka_settings, "dlq", "replay", letter["id"], "--json"
    )
    assert code == 0
    replayed = json.loads(out)["replayed"][0]
    assert replayed["topic"] == "accepted"

    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.bootstrap_servers, enable_auto_commit=False
    )
    await reader.start()
    try:
        partition = TopicPartition(topics.accepted, replayed["partition"])
        reader.assign([partition])
        reader.seek(partition, replayed["offset"])
        record = await asyncio.wait_for(reader.getone(), timeout=30)
    finally:
        await reader.stop()
    headers = dict(record.headers)
    assert record.value == value
    assert record.key == b"upload-1"
    assert headers[REPLAY_HEADER] == letter["id"].encode()
    assert headers["event_type"] == b"x"  # the original headers travel with it
    assert not any(name.startswith("dlq.source") for name in headers)

    # The replay is the operator's, in the audit trail.
    code, out = await run_cli(monkeypatch, capsys, kafka_settings, "audit", "--json")
    assert code == 0
    assert [(e["operator"], e["action"], e["target"]) for e in json.loads(out)["events"]] == [
        ("test-operator", "operator_created", "operator:test-operator"),
        ("test-operator", "dead_letter_replayed", f"dead-letter:{letter['id']}"),
    ]


async def test_an_unknown_dead_letter_is_a_json_failure(
    kafka_settings: KafkaSettings,
    topics: Topics,
    operator: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = await run_cli(
        monkeypatch, capsys, kafka_settings, "dlq", "replay", "0:99", "--json"
    )
    assert code == cli.ExitCode.REFUSED, out
    assert json.loads(out)["code"] == "NO_SUCH_DEAD_LETTER"


async def test_watch_prints_one_line_per_event_filtered_by_type(
    kafka_settings: KafkaSettings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    producer = make_producer(kafka_settings, "watch-test")
    await producer.start()
    try:
        for event_type in ("upload.validation_started", "upload.progress"):
            event = {
                "event_id": str(uuid.uuid4()),
                "event_type": event_type,
                "schema_version": 1,
                "occurred_at": "2026-11-29T10:00:00+00:00",
                "upload_id": "u-1",
                "ato_id": "ATO1",
                "rows_processed": 5,
            }
            await producer.send_and_wait(
                topics.upload_status, value=json.dumps(event).encode(), key=b"u-1"
            )
    finally:
        await producer.stop()
    code, out = await run_cli(
        monkeypatch,
        capsys,
        kafka_settings,
        "watch",
        "--from-beginning",
        "--topic",
        "upload-status",
        "--type",
        "upload.prog*",
        "--limit",
        "1",
        "--for",
        "60",
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    assert "upload-status" in lines[0]
    assert "upload.progress" in lines[0]
    assert "rows_processed=5" in lines[0]
