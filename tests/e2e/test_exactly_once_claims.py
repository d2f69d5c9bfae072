"""The issue's acceptance test: every eligible, not-withdrawn achievement is claimed exactly once,
end to end, while the grant system fails, times out and goes down and the bridges are killed.

Real processes (gateway, two validators, two bridges, the grant stand-in) on fresh databases
and a fresh topic prefix; the files are generated here, valid row by row, so that each row's
fate (claimed, not eligible, withdrawn) is known in advance.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from services.core.events import Topics
from services.core.scheme.columns import Column
from services.core.scheme.reference import bundled_reference
from tests.e2e.conftest import Pipeline, ServiceProcess

# The bundled reference data is a byte-for-byte copy of shared/spec/reference/*.csv, and is
# what the pipeline's database and the stand-in are loaded from.
REFERENCE = bundled_reference()
UK = ZoneInfo("Europe/London")

CLIENT_TIMEOUT_S = 1.0
WINDOW_S = 12.0
DOWN_FOR_S = 5.0

Key = tuple[str, int]  # (upload_id, row_number): how the stand-in's claims are matched


# --- Generating valid rows -----------------------------------------------------------------------


def uln_with_check_digit(prefix: int) -> str | None:
    """The ULN for a 9-digit prefix (csv-scheme.md §3.1), or None when no check digit fits."""
    digits = [int(d) for d in str(prefix)]
    remainder = sum(weight * d for weight, d in zip(range(10, 1, -1), digits, strict=True)) % 11
    if remainder == 0:
        return None
    return f"{prefix}{(10 - remainder) % 10}"


def ulns(start: int) -> Iterator[str]:
    for prefix in itertools.count(start):
        uln = uln_with_check_digit(prefix)
        if uln is not None:
            yield uln


def letters(number: int) -> str:
    """A name part from a number, without digits: 0 → A, 25 → Z, 26 → BA."""
    text = ""
    while True:
        number, digit = divmod(number, 26)
        text = chr(ord("A") + digit) + text
        if number == 0:
            return text


@dataclass
class GeneratedFile:
    name: str
    body: bytes
    eligible_rows: set[int] = field(default_factory=set)
    ineligible_rows: set[int] = field(default_factory=set)  # empty or not grant-eligible levy

    @property
    def rows(self) -> set[int]:
        return self.eligible_rows | self.ineligible_rows


def generate_file(
    name: str, rows: int, uln_source: Iterator[str], *, empty_levy: int, not_eligible_levy: int
) -> GeneratedFile:
    """`rows` valid rows of distinct learners (ULNs from `uln_source`, never reused across
    files, so neither DUP_01/DUP_02 nor the grant system's ALREADY_CLAIMED can apply). The rows
    with an empty or not grant-eligible levy number are spread evenly through the file."""
    today = datetime.now(UK).date()
    # Approved now and for the last ten days (the catalogue has some future-dated courses).
    courses = sorted(
        c.code
        for c in REFERENCE.courses()
        if c.valid_to is None and c.valid_from <= today - timedelta(days=10)
    )
    eligible_levies = sorted(e.levy_number for e in REFERENCE.employers() if e.grant_eligible)
    other_levies = sorted(e.levy_number for e in REFERENCE.employers() if not e.grant_eligible)
    stride = rows // (empty_levy + not_eligible_levy)
    kinds = {i * stride: "empty" for i in range(empty_levy)}
    kinds |= {(empty_levy + i) * stride: "other" for i in range(not_eligible_levy)}

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([column.value for column in Column])
    generated = GeneratedFile(name, b"")
    for index in range(rows):
        row_number = index + 2  # the header is row 1
        kind = kinds.get(index, "eligible")
        levy = {
            "empty": "",
            "other": other_levies[index % len(other_levies)],
            "eligible": eligible_levies[index % len(eligible_levies)],
        }[kind]
        (generated.eligible_rows if kind == "eligible" else generated.ineligible_rows).add(
            row_number
        )
        achieved = today - timedelta(days=1 + index % 8)
        record = {
            Column.PROVIDER_REFERENCE: f"{name}-{row_number}",
            Column.COURSE_CODE: courses[index % len(courses)],
            Column.ACHIEVEMENT_DATE: achieved.isoformat(),
            Column.LEARNER_FORENAME: f"Learner {letters(index)}",
            Column.LEARNER_SURNAME: f"Testperson {letters(index // 7)}",
            Column.DATE_OF_BIRTH: date(
                1970 + index % 30, 1 + index % 12, 1 + index % 28
            ).isoformat(),
            Column.ULN: next(uln_source),
            Column.NI_NUMBER: "",
            Column.CITB_INDIVIDUAL_ID: "",
            Column.EMPLOYER_LEVY_NUMBER: levy,
            Column.NOTES: "",
        }
        writer.writerow([record[column] for column in Column])
    generated.body = out.getvalue().encode("utf-8")
    return generated


# --- Talking to the pipeline ---------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def achievements_of(
    session: aiohttp.ClientSession, pipeline: Pipeline, api_key: str, upload_id: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        async with session.get(
            f"{pipeline.gateway_url}/v1/uploads/{upload_id}/achievements",
            params={"limit": "1000", "offset": str(offset)},
            headers=bearer(api_key),
        ) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        items.extend(page["items"])
        offset = page["next_offset"]
    return items


async def withdraw_achievements(
    session: aiohttp.ClientSession, pipeline: Pipeline, api_key: str, ids: list[str]
) -> None:
    async def withdraw(achievement_id: str) -> None:
        async with session.delete(
            f"{pipeline.gateway_url}/v1/achievements/{achievement_id}", headers=bearer(api_key)
        ) as response:
            assert response.status == 200, await response.text()

    await asyncio.gather(*(withdraw(a) for a in ids))


async def withdraw_upload(
    session: aiohttp.ClientSession, pipeline: Pipeline, api_key: str, upload_id: str
) -> None:
    async with session.post(
        f"{pipeline.gateway_url}/v1/uploads/{upload_id}/withdraw", headers=bearer(api_key)
    ) as response:
        assert response.status == 200, await response.text()


async def set_standin_down(session: aiohttp.ClientSession, pipeline: Pipeline, down: bool) -> None:
    async with session.put(
        f"{pipeline.standin_url}/admin/faults",
        json={"down": down},
        headers=bearer(pipeline.admin_token),
    ) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["down"] is down


async def grant_calls(
    session: aiohttp.ClientSession, pipeline: Pipeline, upload_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Per claim id, every request the stand-in received for it, in the order answered."""
    async with session.get(
        f"{pipeline.standin_url}/admin/calls",
        params={"upload_id": upload_id},
        headers=bearer(pipeline.admin_token),
    ) as response:
        assert response.status == 200, await response.text()
        calls: dict[str, list[dict[str, Any]]] = (await response.json())["calls"]
        return calls


def received_acceptance(call: dict[str, Any]) -> bool:
    """The call's answer told the bridge its claim is accepted (new, or replayed)."""
    return bool(call["delivered"] and call["status"] in (200, 201))


def resent_after_acceptance(calls: list[dict[str, Any]]) -> bool:
    """The claim was sent again after the bridge had received its acceptance."""
    first = next((n for n, call in enumerate(calls) if received_acceptance(call)), None)
    return first is not None and first < len(calls) - 1


async def claim_events(
    pipeline: Pipeline, wanted_claims: set[str], timeout_s: float
) -> dict[str, dict[str, list[str]]]:
    """Every event of the grant-claims topic, as {event type: {claim id: [event ids]}}, read
    from the start until `claim.accepted` has been seen for every claim of `wanted_claims`."""
    topic = Topics(pipeline.env["KAFKA_TOPIC_PREFIX"]).grant_claims
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    seen: dict[str, dict[str, list[str]]] = {}
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not wanted_claims <= set(seen.get("claim.accepted", {})):
            assert time.monotonic() < deadline, "claim.accepted events missing on Kafka"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = json.loads(record.value)
                    by_claim = seen.setdefault(event["event_type"], {})
                    if "claim_id" in event:
                        by_claim.setdefault(event["claim_id"], []).append(event["event_id"])
    finally:
        await consumer.stop()
    return seen


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, pipeline: Pipeline, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in pipeline.services.values())
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.2)


# --- The test ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_every_eligible_achievement_is_claimed_exactly_once_through_faults_and_crashes(
    make_pipeline: Callable[..., Awaitable[Pipeline]], pool: asyncpg.Pool
) -> None:
    started = time.monotonic()
    pipeline = await make_pipeline(
        bridges=2,
        validators=2,
        GRANT_BRIDGE_AMENDMENT_WINDOW_S=str(WINDOW_S),
        GRANT_BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S),
        GRANT_BRIDGE_LEASE_S="5",  # a killed bridge's claims come back after this
        GRANT_BRIDGE_BATCH_SIZE="50",  # more requests, so more of them meet a fault
        GRANT_BRIDGE_BACKOFF_BASE_S="0.2",
        GRANT_BRIDGE_BACKOFF_CAP_S="2",
        GRANT_BRIDGE_BREAKER_COOLDOWN_S="1",
        GRANT_BRIDGE_POLL_INTERVAL_S="0.2",
        GRANT_STANDIN_FAIL_BEFORE_STORE="0.2",
        GRANT_STANDIN_FAIL_AFTER_STORE="0.2",
        GRANT_STANDIN_SLOW="0.05",
        GRANT_STANDIN_SLOW_DELAY_S=str(CLIENT_TIMEOUT_S + 0.5),
    )
    _, api_key = await pipeline.create_ato()
    learners = ulns(100_000_000)
    files = [
        generate_file(f"cohort-{n}.csv", 1_100, learners, empty_levy=15, not_eligible_levy=15)
        for n in (1, 2)
    ]
    # A small upload the ATO withdraws whole during its window.
    withdrawn_file = generate_file("withdrawn.csv", 40, learners, empty_levy=2, not_eligible_levy=2)

    async with aiohttp.ClientSession() as session:
        uploads = await asyncio.gather(
            *(pipeline.upload(f.body, api_key, file_name=f.name) for f in files),
            pipeline.upload(withdrawn_file.body, api_key, file_name=withdrawn_file.name),
        )
        upload_ids = [u["upload_id"] for u in uploads]

        async def withdraw_some(upload_id: str) -> set[Key]:
            """Every 40th achievement of the upload, one by one, as soon as it is final."""
            final = await pipeline.wait_final(upload_id, api_key)
            assert final["status"] == "passed_with_warnings", final
            items = await achievements_of(session, pipeline, api_key, upload_id)
            chosen = [a for a in items if a["row_number"] % 40 == 3]
            await withdraw_achievements(
                session, pipeline, api_key, [a["achievement_id"] for a in chosen]
            )
            return {(upload_id, a["row_number"]) for a in chosen}

        async def withdraw_all(upload_id: str) -> set[Key]:
            final = await pipeline.wait_final(upload_id, api_key)
            assert final["status"] == "passed_with_warnings", final
            await withdraw_upload(session, pipeline, api_key, upload_id)
            return {(upload_id, r) for r in withdrawn_file.rows}

        withdrawals = await asyncio.gather(
            *(withdraw_some(u) for u in upload_ids[:2]), withdraw_all(upload_ids[2])
        )
        validated_s = time.monotonic() - started

        # What should become of each row, by (upload_id, row_number).
        withdrawn: set[Key] = set().union(*withdrawals)
        eligible: set[Key] = set()
        not_eligible: set[Key] = set()
        for upload_id, generated in zip(upload_ids, [*files, withdrawn_file], strict=True):
            eligible |= {(upload_id, r) for r in generated.eligible_rows}
            not_eligible |= {(upload_id, r) for r in generated.ineligible_rows}
        to_claim = eligible - withdrawn
        assert len(to_claim) >= 2_000

        # Chaos while the claims flow: each bridge is SIGKILLed while claims are leased (so a
        # lease may be orphaned mid-request), and the grant system is down for a while between.
        async def busy_at(fraction: float) -> bool:
            accepted = await accepted_claims(pool)
            return accepted >= fraction * len(to_claim) and await leased_claims(pool) > 0

        async def crash(bridge: ServiceProcess) -> int:
            leased = await leased_claims(pool)
            bridge.kill()
            await asyncio.sleep(0.5)
            bridge.start()
            return leased

        bridges = pipeline.services["bridge-1"], pipeline.services["bridge-2"]
        await wait_for(lambda: busy_at(0.15), "claims in flight", pipeline, 90)
        leased_at_crash = [await crash(bridges[0])]
        await wait_for(lambda: busy_at(0.35), "claims in flight after a crash", pipeline, 90)
        await set_standin_down(session, pipeline, True)
        await asyncio.sleep(DOWN_FOR_S)
        accepted_before_up = await accepted_claims(pool)
        await set_standin_down(session, pipeline, False)
        assert accepted_before_up < len(to_claim), "all claimed before the outage ended"
        await wait_for(lambda: busy_at(0.0), "claims in flight after the outage", pipeline, 30)
        leased_at_crash.append(await crash(bridges[1]))
        chaos_done_s = time.monotonic() - started

        await wait_for(lambda: all_settled(pool, len(eligible)), "claims settled", pipeline, 150)

    # The grant system holds exactly one claim per eligible, not-withdrawn achievement.
    standin_claims = [c for u in upload_ids for c in await pipeline.standin_claims(u)]
    held = Counter((c["upload_id"], c["row_number"]) for c in standin_claims)
    assert [key for key, n in held.items() if n > 1] == [], "claimed more than once"
    assert set(held) & withdrawn == set(), "withdrawn achievements claimed"
    assert set(held) & not_eligible == set(), "ineligible achievements claimed"
    assert to_claim - set(held) == set(), "eligible achievements never claimed"
    assert set(held) == to_claim
    standin_amounts = {
        (c["upload_id"], c["row_number"]): c["grant_amount_pence"] for c in standin_claims
    }

    # The grant API's side of it: every request that carried each claim. Faults make the
    # bridge send a claim again (the contract allows it: same claim id, same key), but the
    # store accepted each claim once, and a claim whose acceptance had reached the bridge is
    # sent again only if that bridge was killed before it could record it.
    claim_ids = {c["claim_id"] for c in standin_claims}
    async with aiohttp.ClientSession() as session:
        calls = {
            claim_id: claim_calls
            for upload_id in upload_ids
            for claim_id, claim_calls in (await grant_calls(session, pipeline, upload_id)).items()
        }
    assert set(calls) == claim_ids, "claims sent that the grant system did not store, or none"
    created = Counter(
        claim_id
        for claim_id, claim_calls in calls.items()
        for c in claim_calls
        if c["stored_status"] == 201
    )
    assert [claim_id for claim_id in claim_ids if created[claim_id] != 1] == []
    calls_per_claim = Counter(len(claim_calls) for claim_calls in calls.values())
    resent = [
        claim_id for claim_id, claim_calls in calls.items() if resent_after_acceptance(claim_calls)
    ]
    assert len(resent) <= sum(leased_at_crash), f"sent again after acceptance: {resent[:5]}"
    assert calls_per_claim[1] > 0, "no claim went through in one call: the faults are too many"

    # Kafka: one claim.accepted per claim (its copies, if a relay resent one after a crash,
    # share its event id), and none for a claim that was not accepted.
    on_kafka = await claim_events(pipeline, claim_ids, timeout_s=60)
    accepted_on_kafka = on_kafka.get("claim.accepted", {})
    assert set(accepted_on_kafka) == claim_ids
    assert [c for c, event_ids in accepted_on_kafka.items() if len(set(event_ids)) != 1] == []
    assert on_kafka.get("claim.refused", {}) == {}

    # The pipeline's records agree with the grant system's.
    rows = await pool.fetch(
        "SELECT upload_id::text, row_number, grant_state, grant_amount_pence, claimed_at"
        " FROM achievements"
    )
    states = {(r["upload_id"], r["row_number"]): r["grant_state"] for r in rows}
    assert {key for key, state in states.items() if state == "withdrawn"} == withdrawn
    assert {key for key, state in states.items() if state == "not_eligible"} == (
        not_eligible - withdrawn
    )
    assert {
        (r["upload_id"], r["row_number"]): r["grant_amount_pence"]
        for r in rows
        if r["grant_state"] == "claimed" and r["claimed_at"] is not None
    } == standin_amounts
    assert len(rows) == len(eligible | not_eligible)

    # One claim.accepted per claim; one claim.withdrawn per withdrawn achievement, the one the
    # gateway wrote with the withdrawal (the bridge closes withdrawn claims without an event).
    events = Counter(
        (e["event_type"], e["achievement_id"])
        for e in await pool.fetch(
            "SELECT payload::json->>'event_type' AS event_type,"
            " payload::json->>'achievement_id' AS achievement_id"
            " FROM outbox WHERE payload::json->>'event_type' LIKE 'claim.%'"
        )
    )
    assert [event for event, n in events.items() if n > 1] == [], "an event written twice"
    by_type = Counter(event_type for event_type, _ in events)
    assert by_type["claim.accepted"] == len(to_claim)
    assert by_type["claim.withdrawn"] == len(withdrawn)
    assert by_type["claim.refused"] == 0

    print(
        f"claimed={len(to_claim)} withdrawn={len(withdrawn)}"
        f" not_eligible={len(not_eligible - withdrawn)} validated_s={validated_s:.1f}"
        f" leased_at_crash={leased_at_crash} chaos_done_s={chaos_done_s:.1f}"
        f" calls_per_claim={dict(sorted(calls_per_claim.items()))} resent={len(resent)}"
        f" total_s={time.monotonic() - started:.1f}"
    )


async def accepted_claims(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'accepted'")
    return count


async def leased_claims(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM grant_claims WHERE state = 'pending' AND lease_until > now()"
    )
    return count


async def all_settled(pool: asyncpg.Pool, eligible_total: int) -> bool:
    """Every eligible achievement has a claim row, none pending, no achievement still held."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM grant_claims) AS claims,"
        " (SELECT count(*) FROM grant_claims WHERE state = 'pending') AS pending,"
        " (SELECT count(*) FROM achievements WHERE grant_state = 'held') AS held"
    )
    return bool(row["claims"] == eligible_total and row["pending"] == 0 and row["held"] == 0)
