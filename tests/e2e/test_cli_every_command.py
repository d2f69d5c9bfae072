"""Every `achievements` command, run as an operator runs it (a process, its environment built
here) against a running pipeline: with `--json` each prints exactly one JSON object on stdout
(the streaming ones one per line), never a traceback, and exits with the status
docs/operations.md documents for what happened.

The commands run in the order an operator would use them, from the first operator to the
learner's erasure, so that each has real data to work on."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.demo import write_sample
from tests.e2e.conftest import Pipeline
from tests.service_env import service_env

REPO_ROOT = Path(__file__).resolve().parents[2]
# A hang is a failure: far above what any of these commands needs.
PROCESS_LIMIT_S = 120

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Run:
    status: int
    lines: list[dict[str, Any]]
    stderr: str

    @property
    def only(self) -> dict[str, Any]:
        """The one JSON object a non-streaming command prints."""
        assert len(self.lines) == 1, (self.lines, self.stderr[-2000:])
        return self.lines[0]


class Operator:
    """The shell an operator runs commands in: the pipeline's settings, the gateway's URL, the
    ATO's key and the operator's token once they exist."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.env: dict[str, str] = {
            **pipeline.env,
            "ACHIEVEMENTS_GATEWAY_URL": pipeline.gateway_url,
            "ACHIEVEMENTS_CONNECT_TIMEOUT_S": "10",
        }

    def __call__(self, *argv: str, stdin: str = "", streaming: bool = False) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", *argv, "--json"],
            cwd=REPO_ROOT,
            env=service_env(self.env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=PROCESS_LIMIT_S,
            check=False,
        )
        assert "Traceback" not in done.stdout, done.stdout
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        if not streaming:
            # One object, which may span lines when pretty-printed.
            lines = [json.loads(done.stdout)] if done.stdout.strip() else []
        return Run(done.returncode, lines, done.stderr)

    def until_first_line(self, *argv: str) -> Run:
        """A long-running command (`purge --every`): its first JSON line, then Ctrl-C."""
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *argv, "--json"],
            cwd=REPO_ROOT,
            env=service_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=PROCESS_LIMIT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return Run(process.returncode, [json.loads(first)], stderr)


async def wait_for_claims(pipeline: Pipeline, upload_id: str, count: int) -> None:
    for _ in range(600):
        if len(await pipeline.standin_claims(upload_id)) >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the claims did not all reach the grant stand-in")


async def test_every_command_prints_one_json_object_and_exits_as_documented(
    make_pipeline: Any, tmp_path: Path
) -> None:
    pipeline: Pipeline = await make_pipeline(GRANT_BRIDGE_AMENDMENT_WINDOW_S="1")
    sample = write_sample(tmp_path, date.today())
    with sample.open(encoding="utf-8", newline="") as file:
        learner_uln = next(csv.DictReader(file))["ULN"]
    run = Operator(pipeline)

    # The first operator, on the database's credentials alone.
    created = run("operator", "create", "Ops Lead")
    assert created.status == 0
    assert created.only["operator"] == "Ops Lead"
    run.env["ACHIEVEMENTS_OPERATOR_TOKEN"] = created.only["token"]
    second = run("operator", "create", "Night Purge")
    assert (second.status, second.only["operator"]) == (0, "Night Purge")

    migrate = run("admin", "migrate")  # already migrated: nothing to do, still one object
    assert migrate.status == 0, migrate
    migrated = run("admin", "migrated")
    assert migrated.status == 0, migrated
    topics = run("admin", "topics")
    assert topics.status == 0, topics
    loaded = run("reference", "load")
    assert loaded.status == 0, loaded

    ato = run("ato", "create", "Example Training Ltd")
    assert ato.status == 0, ato
    ato_id = ato.only["ato_id"]
    key = run("ato", "key", "create", ato_id)
    assert key.status == 0, key
    run.env["ACHIEVEMENTS_API_KEY"] = key.only["api_key"]

    checked = run("check", str(sample))
    assert (checked.status, checked.only["status"]) == (0, "passed")

    uploaded = run("upload", str(sample), "--wait")
    assert uploaded.status == 0, uploaded
    upload_id = uploaded.only["upload_id"]
    assert uploaded.only["status"] == "passed"
    status = run("status", upload_id)
    assert (status.status, status.only["status"], status.only["rows_valid"]) == (0, "passed", 8)
    report = run("errors", upload_id)
    assert (report.status, report.only["upload_id"]) == (0, upload_id)
    rows = run("errors", upload_id, "--csv", streaming=True)
    assert rows.status == 0
    # A passed sample has no issue: the CSV report is its header alone, so no row object.
    assert rows.lines == []
    # The same file again is the same upload: the command's Idempotency-Key is the file's
    # SHA-256, so re-running it (after a dropped connection, say) sends nothing twice.
    again = run("upload", str(sample), "--wait")
    assert (again.status, again.only["upload_id"]) == (0, upload_id)

    await wait_for_claims(pipeline, upload_id, 8)
    reconciled = run("reconcile", upload_id)
    assert (reconciled.status, reconciled.only["differences"]) == (0, [])
    repaired = run("reconcile", upload_id, "--repair")
    assert (repaired.status, repaired.only["requeued"]) == (0, [])
    watched = run(
        "watch", "--topic", "grant-claims", "--from-beginning", "--limit", "1", streaming=True
    )
    assert watched.status == 0, watched
    assert len(watched.lines) == 1
    dead_letters = run("dlq", "list")
    assert dead_letters.status == 0, dead_letters
    no_such = run("dlq", "show", "0:999999")
    assert (no_such.status, no_such.only["exit_code"]) == (3, 3)
    not_replayed = run("dlq", "replay", "0:999999")
    assert (not_replayed.status, not_replayed.only["exit_code"]) == (3, 3)

    found = run("learner", "find", "--ato", ato_id, "--stdin", "uln", stdin=learner_uln + "\n")
    assert found.status == 0, found
    exported = run("learner", "export", "--ato", ato_id, "--stdin", "uln", stdin=learner_uln + "\n")
    assert exported.status == 0, exported

    purged = run("purge", streaming=True)
    assert (purged.status, len(purged.lines), purged.lines[0]["dry_run"]) == (0, 1, False)
    every = run.until_first_line("purge", "--every", "60")
    # One object per run; Ctrl-C ends the schedule with the documented INTERRUPTED status.
    assert (every.status, every.lines[0]["dry_run"]) == (130, False)
    dry = run("purge", "--dry-run", streaming=True)
    assert (dry.status, len(dry.lines), dry.lines[0]["dry_run"]) == (0, 1, True), dry
    # Its claims were sent: the gateway refuses (409), which is exit 3 with the API's code.
    withdrawn = run("withdraw", upload_id)
    assert (withdrawn.status, withdrawn.only["code"]) == (3, "AMENDMENT_WINDOW_CLOSED")
    erased = run("learner", "erase", "--ato", ato_id, "--stdin", "uln", stdin=learner_uln + "\n")
    assert erased.status == 0, erased

    revoked_key = run("ato", "key", "revoke", key.only["key_id"])
    assert (revoked_key.status, revoked_key.only["revoked"]) == (0, True)
    revoked_again = run("ato", "key", "revoke", key.only["key_id"])
    assert (revoked_again.status, revoked_again.only["revoked"]) == (1, False)
    gone = run("operator", "revoke", "Night Purge")
    assert gone.only == {"operator": "Night Purge", "revoked": True}

    trail = run("audit")
    assert trail.status == 0
    actions = [event["action"] for event in trail.only["events"]]
    assert actions == [
        "operator_created",
        "operator_created",
        "ato_created",
        "key_created",  # `ato create` makes the ATO's first key
        "key_created",
        "claims_repaired",
        "learner_found",
        "learner_exported",
        "purge_ran",
        "purge_ran",
        # The dry run changed nothing and is not recorded.
        "learner_erased",
        "key_revoked",
        "operator_revoked",
    ]
    assert {event["operator"] for event in trail.only["events"]} == {"Ops Lead"}
