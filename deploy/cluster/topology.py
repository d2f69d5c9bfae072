"""What `make cluster` takes from deploy/topology.yaml, the one source of the topics, the
principals and their ACLs, and the PostgreSQL roles; called by deploy/cluster/*.sh.

    topology.py principals             every SCRAM user, one a line
    topology.py principal PROCESS      the principal a process speaks as (settings.processes)
    topology.py role migration|runtime the PostgreSQL role's name
    topology.py acl-commands           kafka.admin.AclCommand's arguments, one command a line
                                       (tab-separated): a principal's ACLs grouped by resource
                                       type and operations, so few JVMs start
    topology.py create-topics          the topics, with their partitions and configs, through
                                       the Kafka settings of the environment (the admin user);
                                       an existing topic is left as it is

Names carry KAFKA_TOPIC_PREFIX, as the services' do.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.core.kafka import connection_options
from services.core.settings import KafkaSettings

TOPOLOGY = Path(__file__).resolve().parent.parent / "topology.yaml"


def load() -> dict[str, Any]:
    with TOPOLOGY.open(encoding="utf-8") as file:
        topology: dict[str, Any] = yaml.safe_load(file)
    return topology


def prefix() -> str:
    return os.environ.get("KAFKA_TOPIC_PREFIX", "")


def acl_commands(topology: dict[str, Any]) -> list[list[str]]:
    commands: list[list[str]] = []
    for principal, spec in topology["kafka"]["principals"].items():
        grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for acl in spec["acls"]:
            resource = acl["resource"]
            if resource.get("patternType", "literal") != "literal":
                raise SystemExit(f"{principal}: only literal resource patterns are supported")
            key = (resource["type"], tuple(sorted(acl["operations"])))
            grouped.setdefault(key, []).append(resource.get("name", ""))
        for (kind, operations), names in grouped.items():
            command = ["--allow-principal", f"User:{principal}"]
            for operation in operations:
                command += ["--operation", operation]
            for name in names:
                if kind == "cluster":
                    command.append("--cluster")
                else:
                    command += [f"--{kind}", prefix() + name]
            commands.append(command)
    return commands


async def create_topics(topology: dict[str, Any]) -> None:
    kafka = topology["kafka"]
    admin = AIOKafkaAdminClient(**connection_options(KafkaSettings()))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                prefix() + name,
                spec["partitions"],
                kafka["replication_factor"],
                topic_configs={key: str(value) for key, value in spec.get("config", {}).items()},
            )
            for name, spec in kafka["topics"].items()
            if prefix() + name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        print(f"topics created: {len(wanted)}, already there: {len(kafka['topics']) - len(wanted)}")
    finally:
        await admin.close()


def main(arguments: list[str]) -> int:
    topology = load()
    match arguments:
        case ["principals"]:
            print("\n".join(topology["kafka"]["principals"]))
        case ["principal", process]:
            print(topology["settings"]["processes"][process]["principal"])
        case ["role", kind]:
            print(topology["postgres"]["roles"][kind]["name"])
        case ["acl-commands"]:
            for command in acl_commands(topology):
                print("\t".join(command))
        case ["create-topics"]:
            asyncio.run(create_topics(topology))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
