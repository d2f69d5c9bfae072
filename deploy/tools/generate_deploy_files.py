"""Writes the Kubernetes files that restate deploy/topology.yaml and deploy/prometheus/alerts.yaml
for the operators that read them, so the two sources are never copied by hand:

- deploy/kubernetes/base/kafka-topics.yaml: a Strimzi KafkaTopic per topic;
- deploy/kubernetes/base/kafka-users.yaml: a Strimzi KafkaUser per principal (SCRAM-SHA-512,
  its ACLs as `spec.authorization` of type simple);
- deploy/kubernetes/base/prometheus-rules.yaml: the alert rules as a Prometheus Operator
  PrometheusRule.

    .venv/bin/python deploy/tools/generate_deploy_files.py          # write them
    .venv/bin/python deploy/tools/generate_deploy_files.py --check  # exit 1 if one is stale

tests/unit/test_deploy_files.py runs the check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "deploy" / "topology.yaml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
BASE = REPO / "deploy" / "kubernetes" / "base"
STRIMZI_API = "kafka.strimzi.io/v1"
HEADER = (
    "# Generated from {source} by deploy/tools/generate_deploy_files.py:\n"
    "# edit the source and run the script (a unit test fails while this file differs).\n"
)


def load_topology() -> dict[str, Any]:
    topology: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    return topology


def resource_name(topic: str) -> str:
    """A Kubernetes name for a topic (dots are allowed, but Strimzi's convention avoids them)."""
    return topic.replace(".", "-")


def kafka_topics(topology: dict[str, Any]) -> list[dict[str, Any]]:
    kafka = topology["kafka"]
    return [
        {
            "apiVersion": STRIMZI_API,
            "kind": "KafkaTopic",
            "metadata": {
                "name": resource_name(name),
                "labels": {"strimzi.io/cluster": kafka["strimzi"]["cluster"]},
            },
            "spec": {
                "topicName": name,
                "partitions": topic["partitions"],
                "replicas": kafka["replication_factor"],
                "config": dict(topic["config"]),
            },
        }
        for name, topic in kafka["topics"].items()
    ]


def strimzi_acl(acl: dict[str, Any]) -> dict[str, Any]:
    return {"resource": dict(acl["resource"]), "operations": list(acl["operations"]), "host": "*"}


def kafka_users(topology: dict[str, Any]) -> list[dict[str, Any]]:
    kafka = topology["kafka"]
    return [
        {
            "apiVersion": STRIMZI_API,
            "kind": "KafkaUser",
            "metadata": {
                "name": name,
                "labels": {"strimzi.io/cluster": kafka["strimzi"]["cluster"]},
            },
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {
                    "type": "simple",
                    "acls": [strimzi_acl(acl) for acl in principal["acls"]],
                },
            },
        }
        for name, principal in kafka["principals"].items()
    ]


def prometheus_rules() -> list[dict[str, Any]]:
    alerts = yaml.safe_load(ALERTS.read_text())
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "achievements"},
            "spec": {"groups": alerts["groups"]},
        }
    ]


def _literal_blocks(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Multi-line expressions stay readable as block scalars.
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _literal_blocks)


def render(documents: list[dict[str, Any]], source: str) -> str:
    body = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER.format(source=source) + body


def generated_files() -> dict[Path, str]:
    topology = load_topology()
    return {
        BASE / "kafka-topics.yaml": render(kafka_topics(topology), "deploy/topology.yaml"),
        BASE / "kafka-users.yaml": render(kafka_users(topology), "deploy/topology.yaml"),
        BASE / "prometheus-rules.yaml": render(prometheus_rules(), "deploy/prometheus/alerts.yaml"),
    }


def stale_files() -> list[Path]:
    return [
        path
        for path, text in generated_files().items()
        if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the generated deploy files.")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
