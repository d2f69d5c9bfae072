"""`make cluster` grants each Kafka principal exactly the ACLs of deploy/topology.yaml: the
AclCommand arguments deploy/cluster/topology.py groups (to start few JVMs) expand back to the
topology's (principal, resource type, name, operation) entries, no more and no fewer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "topology.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_topology", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared(topology: dict[str, Any], prefix: str) -> set[tuple[str, str, str, str]]:
    entries = set()
    for principal, spec in topology["kafka"]["principals"].items():
        for acl in spec["acls"]:
            kind = acl["resource"]["type"]
            name = "" if kind == "cluster" else prefix + acl["resource"]["name"]
            for operation in acl["operations"]:
                entries.add((f"User:{principal}", kind, name, operation))
    return entries


def expanded(commands: list[list[str]]) -> set[tuple[str, str, str, str]]:
    entries = set()
    for command in commands:
        principal, operations, resources = "", [], []
        words = iter(command)
        for word in words:
            if word == "--allow-principal":
                principal = next(words)
            elif word == "--operation":
                operations.append(next(words))
            elif word == "--cluster":
                resources.append(("cluster", ""))
            else:
                resources.append((word.removeprefix("--"), next(words)))
        entries |= {(principal, k, n, o) for k, n in resources for o in operations}
    return entries


@pytest.mark.parametrize("prefix", ["", "staging."])
def test_the_cluster_grants_exactly_the_topology_acls(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", prefix)
    tool = load_tool()
    topology = tool.load()

    commands = tool.acl_commands(topology)

    assert expanded(commands) == declared(topology, prefix)
    # Grouped: one command per principal, resource type and set of operations.
    assert len(commands) < len(declared(topology, prefix))
