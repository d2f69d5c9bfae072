"""Every service serves Prometheus metrics and probes during a real run, the figures move as an
upload goes through, `achievements watch` shows the upload's events live, and the validators
scale from two processes to four while uploads keep flowing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.demo import write_sample
from tests.e2e.conftest import REPO_ROOT, Pipeline, free_port, wait_for_port
from tests.service_env import service_env

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# A row whose course is in no catalogue: one issue, and the upload is partially accepted.
UNKNOWN_COURSE_ROW = "BK-9999,NO-SUCH-999,{day},Test,Row,01/01/1990,1915535866,,,M1286101,\n"


def sample_with_an_invalid_row(folder: Path) -> bytes:
    """The demo's eight valid rows and one invalid one."""
    sample = write_sample(folder, date.today()).read_bytes()
    day = date.today().strftime("%d/%m/%Y")
    return sample + UNKNOWN_COURSE_ROW.format(day=day).encode()


def figure(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def total(texts: Iterable[str], name: str, **labels: str) -> float:
    return sum(figure(text, name, **labels) for text in texts)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def wait_ready(port: int, timeout_s: float = 60) -> None:
    await wait_for_port(port, timeout_s)
    for _ in range(int(timeout_s * 5)):
        status, _ = await get(f"http://127.0.0.1:{port}/readyz")
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready on port {port}")


class Workers:
    def __init__(self, pipeline: Pipeline, logs: Path) -> None:
        self.pipeline = pipeline
        self.logs = logs
        self.ports: dict[str, int] = {}

    async def start(self, name: str, module: str, port_variable: str, **env: str) -> None:
        port = free_port()
        self.pipeline.add(name, module, self.logs, **{port_variable: str(port)}, **env).start()
        self.ports[name] = port

    async def scrape(self) -> dict[str, str]:
        texts = {}
        for name, port in self.ports.items():
            status, text = await get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200, name
            texts[name] = text
        return texts

    def validators(self, texts: dict[str, str]) -> list[str]:
        return [text for name, text in texts.items() if name.startswith("validator")]


async def start_watch(pipeline: Pipeline, ato_id: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "watch",
        "--ato",
        ato_id,
        "--from-beginning",
        "--json",
        "--for",
        "120",
        cwd=REPO_ROOT,
        env=service_env(pipeline.env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def watched_until(
    watch: asyncio.subprocess.Process, upload_id: str, event_type: str
) -> list[dict[str, object]]:
    """The watched events (JSON lines) up to `event_type` of the upload."""
    assert watch.stdout is not None
    seen: list[dict[str, object]] = []
    async with asyncio.timeout(120):
        while True:
            line = await watch.stdout.readline()
            assert line, "watch ended before the event came"
            seen.append(json.loads(line))
            event = seen[-1]["event"]
            assert isinstance(event, dict)
            if event.get("upload_id") == upload_id and event.get("event_type") == event_type:
                return seen


async def run_cli(pipeline: Pipeline, *argv: str, **env: str) -> tuple[int, dict[str, object]]:
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *argv,
        cwd=REPO_ROOT,
        env=service_env({**pipeline.env, **env}),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await command.communicate()
    assert command.returncode is not None
    return command.returncode, json.loads(out)


async def test_every_service_serves_figures_that_move_and_validators_scale(
    make_pipeline, tmp_path: Path
) -> None:
    pipeline: Pipeline = await make_pipeline(
        validators=0, bridges=0, GRANT_BRIDGE_AMENDMENT_WINDOW_S="1"
    )
    workers = Workers(pipeline, tmp_path)
    for n in (1, 2):
        await workers.start(
            f"validator-{n}",
            "services.validator",
            "VALIDATOR_HTTP_PORT",
            VALIDATOR_WORKER_NAME=f"validator-{n}",
        )
    await workers.start("bridge-1", "services.grant_bridge", "GRANT_BRIDGE_HTTP_PORT")
    for port in workers.ports.values():
        await wait_ready(port)
    for port in workers.ports.values():
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    gateway_metrics = f"{pipeline.gateway_url}/metrics"
    before = await workers.scrape()
    gateway_before = (await get(gateway_metrics))[1]

    ato_id, api_key = await pipeline.create_ato()
    watch = await start_watch(pipeline, ato_id)
    try:
        body = sample_with_an_invalid_row(tmp_path)
        accepted = await pipeline.upload(
            body, api_key, file_name="Learner Name.csv", policy="valid_rows"
        )
        upload = await pipeline.wait_final(accepted["upload_id"], api_key)
        assert upload["status"] == "partially_accepted"
        events = await watched_until(watch, upload["upload_id"], "upload.validated")
    finally:
        watch.kill()
        await watch.wait()
    watched = {str(event["event"]["event_type"]) for event in events}  # type: ignore[index]
    assert {"upload.received", "upload.validation_started", "upload.validated"} <= watched

    # Claims are sent once the one-second amendment window ends.
    for _ in range(120):
        after = await workers.scrape()
        if figure(after["bridge-1"], "grant_bridge_claims_total", outcome="accepted") >= 8:
            break
        await asyncio.sleep(0.5)
    gateway_after = (await get(gateway_metrics))[1]

    validators_before, validators_after = workers.validators(before), workers.validators(after)
    rows = "validator_rows_validated_total"
    assert (
        total(validators_after, rows, result="valid")
        - total(validators_before, rows, result="valid")
        == 8
    )
    assert (
        total(validators_after, rows, result="invalid")
        - total(validators_before, rows, result="invalid")
        == 1
    )
    assert total(validators_after, "validator_issues_total") > total(
        validators_before, "validator_issues_total"
    )
    assert (
        total(validators_after, "validator_uploads_decided_total", status="partially_accepted") == 1
    )
    assert total(validators_after, "validator_upload_duration_seconds_count") == 1
    assert total(validators_after, "validator_chunk_duration_seconds_count") >= 1
    assert total(validators_after, "kafka_consumer_records_total", outcome="done") >= 1
    assert total(validators_after, "kafka_consumer_assigned_partitions") == 4
    assert "kafka_consumer_lag_messages{" in "".join(validators_after)
    assert "validator_chunk_tasks{" in validators_after[0]

    bridge = after["bridge-1"]
    assert figure(bridge, "grant_bridge_claims_total", outcome="accepted") == 8
    assert figure(bridge, "grant_bridge_request_duration_seconds_count") >= 1
    assert figure(bridge, "grant_bridge_breaker_state", state="closed") == 1
    assert figure(bridge, "kafka_consumer_records_total", outcome="done") >= 1
    assert figure(bridge, "db_pool_acquire_wait_seconds_count") > figure(
        before["bridge-1"], "db_pool_acquire_wait_seconds_count"
    )
    assert figure(bridge, "outbox_backlog_events") >= 0

    assert figure(gateway_after, "gateway_uploads_total", outcome="created") == 1
    published = "outbox_events_published_total"
    everyone_after = [*after.values(), gateway_after]
    everyone_before = [*before.values(), gateway_before]
    assert total(everyone_after, published) > total(everyone_before, published)

    # The command line on the same run: the ATO's status, and the operator's reconciliation
    # with the grant system (nothing differs once every claim is accepted).
    status = await run_cli(
        pipeline, "status", upload["upload_id"], "--json", "--gateway", pipeline.gateway_url,
        ACHIEVEMENTS_API_KEY=api_key,
    )  # fmt: skip
    assert (status[0], status[1]["status"]) == (0, "partially_accepted")
    reconciled = await run_cli(pipeline, "reconcile", upload["upload_id"], "--json")
    assert reconciled == (0, {"uploads_checked": 1, "differences": [], "requeued": []})

    # No identifier or file name becomes a label.
    for text in everyone_after:
        assert upload["upload_id"] not in text
        assert ato_id not in text
        assert "Learner Name" not in text

    # Scaling from two validators to four while uploads keep flowing (each of another ATO, so
    # the same rows are no duplicates of the first upload's).
    _, second_key = await pipeline.create_ato("Second Training Ltd")
    _, third_key = await pipeline.create_ato("Third Training Ltd")
    body = sample_with_an_invalid_row(tmp_path)
    second = await pipeline.upload(body, second_key, policy="valid_rows")
    for n in (3, 4):
        await workers.start(
            f"validator-{n}",
            "services.validator",
            "VALIDATOR_HTTP_PORT",
            VALIDATOR_WORKER_NAME=f"validator-{n}",
        )
    third = await pipeline.upload(body, third_key, policy="valid_rows")
    for name in ("validator-3", "validator-4"):
        await wait_ready(workers.ports[name])
    for created, key in ((second, second_key), (third, third_key)):
        final = await pipeline.wait_final(created["upload_id"], key)
        assert final["status"] == "partially_accepted"
    # The group rebalances over four members: every partition ends up someone's, once.
    for _ in range(300):
        scaled = workers.validators(await workers.scrape())
        if total(scaled, "kafka_consumer_assigned_partitions") == 4:
            break
        await asyncio.sleep(0.2)
    assert len(scaled) == 4
    assert total(scaled, "kafka_consumer_assigned_partitions") == 4
    assert total(scaled, "validator_uploads_decided_total") == 3
