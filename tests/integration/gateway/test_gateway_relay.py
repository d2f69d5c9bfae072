"""The gateway process relays its outbox: an upload's `upload.received` reaches Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from gateway_helpers import VALID_CSV, ClientFactory, bearer

from services.core.events import Topics, UploadReceived, parse_event
from services.core.kafka import make_consumer
from services.core.settings import KafkaSettings
from services.upload_gateway.keys import NewKey


async def test_upload_received_reaches_the_uploads_topic_through_the_relay(
    make_client: ClientFactory,
    kafka_settings: KafkaSettings,
    topics: Topics,
    ato: NewKey,
    pool: asyncpg.Pool,
) -> None:
    client = await make_client(run_outbox_relay=True, kafka=kafka_settings)
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params={"file_name": "june.csv", "terms_accepted": "true"},
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    upload_id = (await response.json())["upload_id"]

    consumer = make_consumer(kafka_settings, topics.uploads, group_id="t", client_id="t")
    await consumer.start()
    try:
        records: list[Any] = []
        async with asyncio.timeout(30):
            while not records:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    [record] = records
    assert record.key == upload_id.encode()
    event = parse_event(record.value)
    assert isinstance(event, UploadReceived)
    assert str(event.upload_id) == upload_id
    assert event.ato_id == ato.ato_id
    assert event.size_bytes == len(VALID_CSV)
    # Never the file name (shared/spec/events.md): it stays in `uploads` and the HTTP API.
    assert b'"file_name"' not in record.value
    assert b"june.csv" not in record.value
    # The relay marks the row sent just after Kafka acknowledged it, so this may take a moment.
    async with pool.acquire() as connection, asyncio.timeout(10):
        while await connection.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            await asyncio.sleep(0.05)
