"""Learner data stays in PostgreSQL and file storage: an upload with valid and invalid rows goes
through every service, and no log line, Kafka message or report echoes a learner's values."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.events import Topics
from tests.e2e.conftest import Pipeline

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
# Grant-eligible rows: (reference, course, days ago, forename, surname, dob, uln, ni, citb, levy,
# notes). ULNs with right check digits (csv-scheme §3.1); identifiers written as an ATO might,
# spaced and lower-cased, so the normalised forms differ from the raw ones.
VALID_ROWS = [
    ("R-1", "SD-WAH-101", 1, "Zebedee", "Quenby", "17/05/1963", "731 820 4652", "", "", "M1286101",
     "Secret-note-4471"),
    ("R-2", "SD-MSF-102", 2, "Ximena", "Thistlewood", "1971-08-23", "", "jh 48 27 19 b", "",
     "T6837969", "Secret-note-5582"),
    ("R-3", "SD-ABR-103", 2, "Ottoline", "Pargeter", "3/9/1984", "", "", "citb 90817 q",
     "S8121088", '"=HYPERLINK(""http://x"",""Secret-formula-7731"")"'),
    ("R-4", "SD-CSK-104", 3, "Leofric", "Wigglesworth", "1990-02-11", "6041738297", "", "",
     "79049946", "Secret-note-6693"),
]  # fmt: skip
# Each row breaks one rule, so the error paths (and the masking of the report) run.
INVALID_ROWS = [
    # ULN_03: no check digit fits this ULN.
    ("R-5", "SD-WAH-101", 1, "Barnaby", "Ffoulkes", "29/02/1960", "4829517363", "", "",
     "M1286101", "Secret-note-7704"),
    # NINO_02: a prefix that is never issued.
    ("R-6", "SD-MSF-102", 1, "Perpetua", "Gribble", "1955-12-01", "", "QQ739164C", "",
     "T6837969", "Secret-note-8815"),
    # NAME_01: a digit in the forename.
    ("R-7", "SD-ABR-103", 1, "Marm4duke", "Honeysett", "08/10/1977", "9182736455", "", "",
     "S8121088", "Secret-note-9926"),
]  # fmt: skip

# Every form a value could take once read, normalised, parsed or printed.
PERSONAL_VALUES = [
    # names
    "Zebedee", "Quenby", "Ximena", "Thistlewood", "Ottoline", "Pargeter", "Leofric",
    "Wigglesworth", "Barnaby", "Ffoulkes", "Perpetua", "Gribble", "Marm4duke", "Honeysett",
    # ULNs, raw and normalised
    "731 820 4652", "7318204652", "6041738297", "4829517363", "9182736455",
    # NI numbers, raw and normalised
    "jh 48 27 19 b", "JH482719B", "QQ739164C",
    # CITB ids, raw and normalised
    "citb 90817 q", "CITB90817Q",
    # dates of birth: as written, d/m/yyyy, dd/mm/yyyy, ISO, and Python's date repr
    "17/05/1963", "17/5/1963", "1963-05-17", "1963, 5, 17",
    "23/08/1971", "23/8/1971", "1971-08-23", "1971, 8, 23",
    "3/9/1984", "03/09/1984", "1984-09-03", "1984, 9, 3",
    "11/02/1990", "11/2/1990", "1990-02-11", "1990, 2, 11",
    "29/02/1960", "29/2/1960", "1960-02-29", "1960, 2, 29",
    "01/12/1955", "1/12/1955", "1955-12-01", "1955, 12, 1",
    "08/10/1977", "8/10/1977", "1977-10-08", "1977, 10, 8",
    # notes
    "Secret-note-4471", "Secret-note-5582", "Secret-formula-7731", "HYPERLINK",
    "Secret-note-6693", "Secret-note-7704", "Secret-note-8815", "Secret-note-9926",
]  # fmt: skip
# The upload's file name: ATOs sometimes name a file after a learner, so it never goes on a topic
# (shared/spec/events.md); it stays in PostgreSQL and the HTTP API.
FILE_NAME = "june-achievements.csv"
# Lines a validator writes about itself rather than about an upload.
# Lines about the process, its partitions and outbox slots rather than about one upload.
VALIDATOR_PROCESS_EVENTS = {
    "validator_started",
    "validator_stopped",
    "validator_draining",
    "kafka_connected",
    "partitions_assigned",
    "partitions_revoked",
    "outbox_slots_taken",
}


def csv_body() -> bytes:
    today = datetime.now(ZoneInfo("Europe/London")).date()
    lines = [HEADER]
    for ref, course, days_ago, *learner in VALID_ROWS + INVALID_ROWS:
        achieved = (today - timedelta(days=days_ago)).strftime("%d/%m/%Y")
        lines.append(",".join([ref, course, achieved, *learner]))
    return ("\r\n".join(lines) + "\r\n").encode()


def personal_values_in(text: str) -> list[str]:
    folded = text.casefold()
    return [value for value in PERSONAL_VALUES if value.casefold() in folded]


async def get_json(url: str, api_key: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {api_key}"}) as response,
    ):
        return response.status, await response.text()


async def wait_for_claims(pipeline: Pipeline, upload_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while True:
        claims = await pipeline.standin_claims(upload_id)
        if len(claims) >= count or time.monotonic() > deadline:
            return claims
        await asyncio.sleep(0.5)


async def read_topics(bootstrap_servers: str, topics: Topics) -> dict[str, list[bytes]]:
    """Every message of every topic, from the beginning: key, value and headers as raw bytes."""
    consumer = AIOKafkaConsumer(
        *topics.all(),
        bootstrap_servers=bootstrap_servers,
        group_id=f"no-personal-data-{uuid.uuid4().hex}",  # throwaway: nothing is committed
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        messages: dict[str, list[bytes]] = {topic: [] for topic in topics.all()}
        end_offsets: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 60
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    headers = (name.encode() + value for name, value in record.headers or ())
                    raw = b"".join([record.key or b"", record.value or b"", *headers])
                    messages[partition.topic].append(raw)
            # The group's single member is given every partition of the subscription.
            assigned = consumer.assignment()
            if len(assigned) > len(end_offsets):
                end_offsets = await consumer.end_offsets(list(assigned))
            positions = {p: await consumer.position(p) for p in end_offsets}
            if end_offsets and all(positions[p] >= end for p, end in end_offsets.items()):
                return messages
            assert time.monotonic() < deadline, "could not read the topics to their end"
    finally:
        await consumer.stop()


async def wait_for_claim_events(
    bootstrap_servers: str, topics: Topics, count: int
) -> dict[str, list[bytes]]:
    """The topics, once the bridge has published `count` claim events (it does so after the
    stand-in has stored the claims, through its outbox)."""
    deadline = time.monotonic() + 60
    while True:
        messages = await read_topics(bootstrap_servers, topics)
        if len(messages[topics.grant_claims]) >= count or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.5)


async def test_no_log_line_event_or_report_carries_a_learners_personal_data(
    make_pipeline: Callable[..., Awaitable[Pipeline]],
) -> None:
    pipeline: Pipeline = await make_pipeline(GRANT_BRIDGE_AMENDMENT_WINDOW_S="1")
    _, api_key = await pipeline.create_ato()

    accepted = await pipeline.upload(csv_body(), api_key, file_name=FILE_NAME, policy="valid_rows")
    upload_id = accepted["upload_id"]
    upload = await pipeline.wait_final(upload_id, api_key)
    assert upload["status"] == "partially_accepted", upload
    assert upload["file_name"] == FILE_NAME
    assert (upload["rows_total"], upload["rows_valid"], upload["rows_invalid"]) == (7, 4, 3)
    errors_status, errors_report = await get_json(
        f"{pipeline.gateway_url}/v1/uploads/{upload_id}/errors", api_key
    )
    csv_status, csv_report = await get_json(
        f"{pipeline.gateway_url}/v1/uploads/{upload_id}/errors?format=csv", api_key
    )
    achievements_status, achievements = await get_json(
        f"{pipeline.gateway_url}/v1/uploads/{upload_id}/achievements", api_key
    )
    claims = await wait_for_claims(pipeline, upload_id, len(VALID_ROWS))
    prefix = pipeline.env["KAFKA_TOPIC_PREFIX"]
    topics = Topics(prefix)
    messages = await wait_for_claim_events(
        pipeline.env["KAFKA_BOOTSTRAP_SERVERS"], topics, len(VALID_ROWS)
    )
    for service in pipeline.services.values():
        service.stop()  # so the shutdown lines are in the logs too

    # The run went where the error and claim paths are: these assertions keep the test honest.
    assert (errors_status, csv_status, achievements_status) == (200, 200, 200)
    codes = {issue["code"] for issue in json.loads(errors_report)["issues"]}
    assert {"ULN_03", "NINO_02", "NAME_01", "NOTES_02"} <= codes
    assert json.loads(achievements)["total"] == len(VALID_ROWS)
    assert sorted(claim["row_number"] for claim in claims) == [2, 3, 4, 5]
    assert messages[topics.accepted]
    assert len(messages[topics.grant_claims]) >= len(VALID_ROWS)

    # The grant system is sent the learner's data, normalised: the search finds those forms.
    sent = personal_values_in(json.dumps(claims))
    assert {"Zebedee", "7318204652", "JH482719B", "CITB90817Q", "1963-05-17"} <= set(sent)
    assert {"Secret-note-4471", "Secret-formula-7731"} <= set(sent)

    # The reports the ATO reads mask identifiers and omit names, dates of birth and notes.
    assert personal_values_in(errors_report) == []
    assert personal_values_in(csv_report) == []
    assert personal_values_in(achievements) == []

    for topic, raw_messages in messages.items():
        for raw in raw_messages:
            found = personal_values_in(raw.decode("utf-8", errors="replace"))
            assert found == [], f"{topic} carries {found}: {raw[:300]!r}"
            assert b'"file_name"' not in raw, f"{topic} carries a file_name key: {raw[:300]!r}"
            assert FILE_NAME.encode() not in raw, f"{topic} carries the file name: {raw[:300]!r}"

    upload_lines = 0
    for name, service in pipeline.services.items():
        text = service.log_path.read_text(encoding="utf-8", errors="replace")
        assert text.strip(), f"{name} logged nothing"
        for line in filter(str.strip, text.splitlines()):
            assert personal_values_in(line) == [], f"{name} logged personal data: {line}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{name} wrote a line that is not JSON: {line}") from None
            assert isinstance(entry, dict), f"{name}: not an object: {line}"
            assert entry.get("event"), f"{name}: no event in {line}"
            # Lines of third-party libraries (named by `logger`) are about connections.
            own_line = "logger" not in entry
            if (
                name.startswith("validator")
                and own_line
                and entry["event"] not in VALIDATOR_PROCESS_EVENTS
            ):
                assert "upload_id" in entry, f"{name}: no upload_id in {line}"
                upload_lines += entry["upload_id"] == upload_id
    assert upload_lines > 0, "no validator line was about the upload"
