"""The deployment files pass the validators that work offline (the compose specification's JSON
schema, the Kubernetes API schemas after `kubectl kustomize`) and agree with the code: every
command exists, every environment variable is a setting some process reads, every probe and
scrape reaches a path and port the process serves, every secret is documented, and every alert
names metrics the services export and has its runbook section."""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from services import cli
from services.cli.settings import CliSettings
from services.core import metrics as core_metrics
from services.core.events import Topics
from services.core.ops_exporter import ExporterSettings, OpsExporter
from services.core.worker_http import create_app
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_standin.settings import Settings as StandinSettings
from services.upload_gateway.metrics import GatewayMetrics
from services.upload_gateway.routes import ENDPOINTS
from services.upload_gateway.settings import GatewaySettings
from services.validator.settings import ValidatorSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "container" / "compose.yaml"
DOCKERFILE = REPO / "deploy" / "container" / "Dockerfile"
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
RUNBOOK = REPO / "docs" / "operations.md"
KUBERNETES_VERSION = "1.30.0"
# Resources of operators the cluster runs (their schemas are not Kubernetes'): kubeconform checks
# them against their CRDs' schemas (`crd_schemas()`).
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("kafka.strimzi.io/v1", "KafkaUser"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
TOPOLOGY = REPO / "deploy" / "topology.yaml"
TOOLS = REPO / "deploy" / "tools"
SCHEMAS = REPO / "deploy" / "schemas"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yaml"
# Variables read by something other than a settings class: the log format (logging.py) and
# libpq's TLS variables, which asyncpg reads for every connection.
OTHER_VARIABLES = {"LOG_FORMAT", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"}
# The S3 client's credentials (STORAGE_BACKEND=s3; docs/storage.md): the usual AWS variables.
OTHER_VARIABLES |= {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
}
# The operations exporter is a command, not a module (services/cli/exporter.py).
EXPORTER_COMMAND = "achievements exporter serve"
# Each service's module (or command), and the variable that sets the port its probes and
# scrapes reach.
SERVICE_PORTS = {
    "services.upload_gateway": "GATEWAY_PORT",
    "services.validator": "VALIDATOR_HTTP_PORT",
    "services.grant_bridge": "GRANT_BRIDGE_HTTP_PORT",
    "services.grant_standin": "GRANT_STANDIN_PORT",
    EXPORTER_COMMAND: "EXPORTER_PORT",
}


# --- What the code defines ----------------------------------------------------------------------


def settings_variables(model: type[BaseModel], prefix: str | None = None) -> set[str]:
    """The environment variables a settings class reads, its nested groups' included."""
    if prefix is None:
        prefix = str(model.model_config.get("env_prefix", ""))
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= settings_variables(annotation)
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue  # a nested plain model: not read from one variable
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


SETTINGS_VARIABLES = set().union(
    *(
        settings_variables(model)
        for model in (
            GatewaySettings,
            ValidatorSettings,
            GrantBridgeSettings,
            StandinSettings,
            ExporterSettings,
            CliSettings,
        )
    )
)


def worker_paths() -> set[str]:
    app = create_app({}, [])
    return {route.resource.canonical for route in app.router.routes() if route.resource}


async def _nothing_read() -> Any:
    """Listing routes and metric families reads no source: a read fails the test."""
    pytest.fail("the deploy files' tests read no source")


def ops_exporter() -> OpsExporter:
    """The exporter without its sources: its routes and metric families need none."""
    return OpsExporter(_nothing_read, _nothing_read, read_timeout_s=1.0)


def exporter_paths() -> set[str]:
    app = ops_exporter().app()
    return {route.resource.canonical for route in app.router.routes() if route.resource}


SERVED_PATHS = {
    "services.upload_gateway": {endpoint.path for endpoint in ENDPOINTS},
    "services.validator": worker_paths(),
    "services.grant_bridge": worker_paths(),
    "services.grant_standin": set(),
    EXPORTER_COMMAND: exporter_paths(),
}


def service_of(command: list[str]) -> str:
    """The key of SERVICE_PORTS and SERVED_PATHS a container's command runs."""
    return command[2] if command[:2] == ["python", "-m"] else " ".join(command)


def command_exists(argv: list[str]) -> bool:
    """`python -m MODULE` has a `__main__`; `achievements ...` parses."""
    if argv[:2] == ["python", "-m"]:
        return importlib.util.find_spec(f"{argv[2]}.__main__") is not None
    if argv[0] != "achievements":
        return False
    # The click command (or a group's subcommand) parses its options as it would run.
    command: click.Command = cli.achievements
    args = argv[1:]
    while isinstance(command, click.Group):
        if not args or args[0] not in command.commands:
            return False
        command, args = command.commands[args[0]], args[1:]
    try:
        command.make_context(argv[0], list(args))
    except click.ClickException:
        return False
    return True


def commands_of(command: list[str]) -> Iterator[list[str]]:
    """The commands a container runs: one, or each of a `sh -c 'a && b'`."""
    if command[:2] == ["sh", "-c"]:
        for part in command[2].split("&&"):
            yield part.split()
    else:
        yield command


# --- The files ----------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def rendered_text(overlay: Path) -> str:
    """`kubectl kustomize OVERLAY` (or kustomize itself where kubectl is missing)."""
    return subprocess.run(
        [str(TOOLS / "kustomize.sh"), str(overlay)], capture_output=True, text=True, check=True
    ).stdout


def rendered(overlay: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def tool(name: str) -> ModuleType:
    """One of the scripts in deploy/tools, imported."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def crd_schemas() -> Path:
    """The folder of the CRDs' JSON schemas (Strimzi, KEDA, Prometheus Operator): converted from
    the CRDs those projects publish to package registries, cached in .cache/crd-schemas/ and
    built there first when missing (deploy/tools/crd_schemas.py; this repository keeps none)."""
    folder: Path = tool("crd_schemas").ensure()
    return folder


def topology() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    return loaded


def overlay_namespace(docs: list[dict[str, Any]]) -> str:
    namespace: str = next(d for d in docs if d["kind"] == "ConfigMap")["metadata"]["namespace"]
    return namespace


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], spec["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], spec["jobTemplate"]["spec"]["template"]["spec"]


def config_literals(docs: list[dict[str, Any]]) -> dict[str, str]:
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    data: dict[str, str] = config["data"]
    return data


@pytest.fixture(scope="module", params=OVERLAYS, ids=[p.name for p in OVERLAYS])
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered(request.param)


def our_containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


# --- Offline validators -------------------------------------------------------------------------


def test_the_compose_file_matches_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_overlay_renders_to_valid_kubernetes_resources(
    manifests: list[dict[str, Any]],
) -> None:
    for doc in manifests:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_overlay_passes_kubeconform_with_the_crd_schemas(overlay: Path) -> None:
    """Every core resource against the Kubernetes schemas kept in deploy/schemas, and every
    custom one against its CRD's schema, made from the CRDs the projects publish (nothing is
    skipped); a kind without a schema fails."""
    documents = rendered(overlay)
    locations = [
        "-schema-location",
        f"{SCHEMAS}/kubernetes/{{{{ .NormalizedKubernetesVersion }}}}-standalone"
        "{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location",
        f"{crd_schemas()}/"
        "{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json",
    ]
    result = subprocess.run(
        [
            str(TOOLS / "kubeconform.sh"),
            "-strict",
            "-summary",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            *locations,
            "-",
        ],
        input=rendered_text(overlay),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    assert kinds >= CUSTOM_KINDS


def test_the_secrets_example_is_valid_kubernetes() -> None:
    for doc in load_all(KUBERNETES / "secrets.example.yaml"):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# --- Kubernetes agrees with the code ------------------------------------------------------------


def test_every_container_runs_a_command_that_exists(manifests: list[dict[str, Any]]) -> None:
    for name, pod in pod_specs(manifests):
        for container in our_containers(pod):
            for command in commands_of(container["command"]):
                assert command_exists(command), f"{name}: {command}"


def test_every_variable_is_a_setting(manifests: list[dict[str, Any]]) -> None:
    known = SETTINGS_VARIABLES | OTHER_VARIABLES
    assert set(config_literals(manifests)) <= known
    for name, pod in pod_specs(manifests):
        for container in our_containers(pod):
            for variable in container.get("env", []):
                assert variable["name"] in known, f"{name}: {variable['name']}"


def test_probes_and_scrapes_reach_what_each_service_serves(
    manifests: list[dict[str, Any]],
) -> None:
    config = config_literals(manifests)
    deployments = [d for d in manifests if d["kind"] == "Deployment"]
    assert len(deployments) == 4
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        module = service_of(container["command"])
        port = int(config[SERVICE_PORTS[module]])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port, deployment["metadata"]["name"]
        # Scraped by the PodMonitor that selects its pods, on that port, labelled for the alerts.
        name = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        monitor = next(
            m
            for m in manifests
            if m["kind"] == "PodMonitor"
            and m["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        )
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
        assert {"targetLabel": "pipeline", "replacement": "achievements"} in endpoint["relabelings"]
        assert "/metrics" in SERVED_PATHS[module]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == "http"
            assert get["path"] in SERVED_PATHS[module], (module, get["path"])
        # The exporter has no dependency to be ready for: it reports them (its /metrics).
        ready = "/readyz" if "/readyz" in SERVED_PATHS[module] else "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == ready
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_the_gateway_has_a_service_an_ingress_and_every_deployment_a_budget(
    manifests: list[dict[str, Any]],
) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in manifests:
        by_kind.setdefault(doc["kind"], []).append(doc)
    service = by_kind["Service"][0]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "upload-gateway"}
    paths = by_kind["Ingress"][0]["spec"]["rules"][0]["http"]["paths"]
    assert {p["path"] for p in paths} == {"/v1", "/ato", "/healthz"}
    for path in paths:
        assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    annotations = by_kind["Ingress"][0]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in by_kind["PodDisruptionBudget"]
    }
    deployments = {d["metadata"]["name"] for d in by_kind["Deployment"]}
    assert budgets == deployments
    scaled = by_kind["ScaledObject"][0]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "validator"
    assert "validator_chunk_tasks" in scaled["triggers"][0]["metadata"]["query"]


def test_services_wait_for_the_migrations_the_job_applies(
    manifests: list[dict[str, Any]],
) -> None:
    job = next(d for d in manifests if d["kind"] == "Job")
    steps = list(commands_of(job["spec"]["template"]["spec"]["containers"][0]["command"]))
    # No `admin topics`: the topics are Strimzi's.
    assert steps == [
        ["achievements", "admin", "migrate"],
        ["achievements", "reference", "load", "--if-missing"],
    ]
    # The migration role's URL, from a secret no service reads.
    [url] = [
        v for v in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if v["name"] == "DATABASE_URL"
    ]  # fmt: skip
    assert url["valueFrom"]["secretKeyRef"] == {
        "name": "achievements-migration",
        "key": "DATABASE_URL",
    }
    assert job["spec"]["activeDeadlineSeconds"] > 0
    cronjob = next(d for d in manifests if d["kind"] == "CronJob")
    assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    for name, pod in pod_specs(manifests):
        if name == job["metadata"]["name"]:
            continue
        first = pod["initContainers"][0]["command"]
        assert first[:3] == ["achievements", "admin", "migrated"], name
        for container in our_containers(pod):
            for variable in container.get("env", []):
                if variable["name"] == "DATABASE_URL":
                    ref = variable["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "achievements-secrets", name


# --- The deploy files agree with deploy/topology.yaml ---------------------------------------------


def test_the_generated_files_are_up_to_date() -> None:
    stale = tool("generate_deploy_files").stale_files()
    assert stale == [], "run .venv/bin/python deploy/tools/generate_deploy_files.py"


def test_the_topology_names_what_the_code_uses() -> None:
    kafka = topology()["kafka"]
    assert list(kafka["topics"]) == Topics().all()
    assert (kafka["replication_factor"], kafka["min_insync_replicas"]) == (3, 2)
    for config in (t["config"] for t in kafka["topics"].values()):
        assert config["min.insync.replicas"] == str(kafka["min_insync_replicas"])
    groups = kafka["consumer_groups"]
    assert groups["validator"]["setting"] == "VALIDATOR_GROUP_ID"
    assert ValidatorSettings.model_fields["group_id"].default == "validator"
    assert groups["grant-bridge"]["setting"] == "GRANT_BRIDGE_CONSUMER_GROUP"
    assert GrantBridgeSettings.model_fields["consumer_group"].default == "grant-bridge"
    strimzi = kafka["strimzi"]
    assert strimzi["bootstrap"] == (
        f"{strimzi['cluster']}-kafka-bootstrap.{strimzi['namespace']}.svc"
        f":{strimzi['listener']['port']}"
    )
    assert strimzi["cluster_ca_secret"] == {
        "name": f"{strimzi['cluster']}-cluster-ca-cert",
        "key": "ca.crt",
    }
    settings = topology()["settings"]
    known = SETTINGS_VARIABLES | OTHER_VARIABLES
    for names in settings["common"].values():
        assert set(names) <= known
    assert set(settings["production"]) <= known
    for process in settings["processes"].values():
        for key in ("metrics_port_setting", "group_setting", "migrate_setting"):
            if key in process:
                assert process[key] in known


def acl_grants(acls: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(resource type, resource name, operation) for every ACL (a cluster has no name)."""
    return {
        (acl["resource"]["type"], acl["resource"].get("name", ""), operation)
        for acl in acls
        for operation in acl["operations"]
    }


def test_each_principal_may_do_what_its_processes_do_and_no_more() -> None:
    """Read from the code: every service relays the outbox, so writes every topic an outbox row
    can name; a consumer reads its topic and its group; dead letters are written by consumers;
    nothing creates, alters or deletes (Strimzi owns the topics)."""
    topics = Topics()
    outbox_topics = {topics.uploads, topics.upload_status, topics.accepted, topics.grant_claims}
    writes = {("topic", t, "Write") for t in outbox_topics} | {("cluster", "", "IdempotentWrite")}
    dead_letters = {("topic", topics.dead_letter, "Write")}
    wanted = {
        "achievements-gateway": writes,
        "achievements-validator": writes
        | dead_letters
        | {("topic", topics.uploads, "Read"), ("group", "validator", "Read")},
        "achievements-grant-bridge": writes
        | dead_letters
        | {("topic", topics.accepted, "Read"), ("group", "grant-bridge", "Read")},
        # watch and dlq read every topic in no group; dlq replay writes back to a source topic.
        "achievements-operator": writes | {("topic", t, "Read") for t in topics.all()},
        "achievements-lag-exporter": {("topic", topics.uploads, "Describe"),
                                      ("topic", topics.accepted, "Describe"),
                                      ("group", "validator", "Describe"),
                                      ("group", "grant-bridge", "Describe")},
    }  # fmt: skip
    principals = topology()["kafka"]["principals"]
    assert set(principals) == set(wanted)
    for name, principal in principals.items():
        granted = acl_grants(principal["acls"])
        # Describe comes with Read and Write (Kafka implies it); it is granted explicitly.
        assert granted - {g for g in granted if g[2] == "Describe"} == {
            g for g in wanted[name] if g[2] != "Describe"
        }, name
        for kind, resource, operation in granted:
            if operation in ("Read", "Write") and kind == "topic":
                assert (kind, resource, "Describe") in granted, (name, resource)
            assert operation not in ("Create", "Alter", "Delete", "AlterConfigs", "All"), name
        assert all(
            a["resource"].get("patternType", "literal") == "literal" for a in principal["acls"]
        )


def test_strimzi_resources_match_the_topology(manifests: list[dict[str, Any]]) -> None:
    kafka = topology()["kafka"]
    strimzi = kafka["strimzi"]
    namespace = overlay_namespace(manifests)
    assert namespace in strimzi["watched_namespaces"].values()
    declared = [d for d in manifests if d["kind"] == "KafkaTopic"]
    assert {d["spec"]["topicName"]: d["spec"] for d in declared} == {
        name: {
            "topicName": name,
            "partitions": topic["partitions"],
            "replicas": kafka["replication_factor"],
            "config": topic["config"],
        }
        for name, topic in kafka["topics"].items()
    }
    users = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "KafkaUser"}
    assert set(users) == set(kafka["principals"])
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert acl_grants(user["spec"]["authorization"]["acls"]) == acl_grants(
            kafka["principals"][name]["acls"]
        )
    for resource in [*declared, *users.values()]:
        assert resource["metadata"]["namespace"] == namespace
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == strimzi["cluster"]


def test_pods_use_their_principal_the_strimzi_ca_and_the_production_settings(
    manifests: list[dict[str, Any]],
) -> None:
    shape = topology()
    strimzi = shape["kafka"]["strimzi"]
    processes = shape["settings"]["processes"]
    config = config_literals(manifests)
    for name, value in shape["settings"]["production"].items():
        assert config[name] == value, name
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == strimzi["bootstrap"]
    assert config["KAFKA_SSL_CA_FILE"] == "/etc/achievements/kafka-ca/ca.crt"
    by_name = dict(pod_specs(manifests))
    for doc in manifests:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        process = processes[doc["metadata"]["name"]]
        pod = by_name[doc["metadata"]["name"]]
        principal = process["principal"]
        for container in our_containers(pod):
            env = {v["name"]: v for v in container.get("env", [])}
            assert env["KAFKA_SASL_USERNAME"]["value"] == principal, doc["metadata"]["name"]
            assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": principal,
                "key": strimzi["user_secret_password_key"],
            }
        [ca] = [v for v in pod["volumes"] if v["name"] == "kafka-ca"]
        assert ca["secret"]["secretName"] == strimzi["cluster_ca_secret"]["name"]
        assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        role = process["role"]
        expected = "achievements-migration" if role == "migration" else "achievements-secrets"
        for container in our_containers(pod):
            for variable in container.get("env", []):
                if variable["name"] == "DATABASE_URL":
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == expected


def test_network_policies_allow_the_topology_flows(manifests: list[dict[str, Any]]) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in manifests if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    kafka_port = topology()["kafka"]["strimzi"]["listener"]["port"]
    [kafka_rule] = policies["kafka"]["egress"]
    assert kafka_rule["ports"] == [{"protocol": "TCP", "port": kafka_port}]
    assert (
        kafka_rule["to"][0]["podSelector"]["matchLabels"]["strimzi.io/cluster"]
        == (topology()["kafka"]["strimzi"]["cluster"])
    )
    postgres_ports = [r["ports"] for r in policies["dns-and-postgres"]["egress"]]
    assert [{"protocol": "TCP", "port": topology()["postgres"]["port"]}] in postgres_ports
    gateway = policies["gateway-from-ingress"]
    assert gateway["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "upload-gateway"}
    scraped = policies["metrics-from-prometheus"]["podSelector"]["matchExpressions"][0]["values"]
    assert set(scraped) == {d["metadata"]["name"] for d in manifests if d["kind"] == "Deployment"}


def test_every_secret_named_is_in_the_example_and_the_runbook(
    manifests: list[dict[str, Any]],
) -> None:
    """Secrets the platform team creates are in the example and the runbook; those Strimzi makes
    (a KafkaUser's, the cluster CA) are named in docs/deploy.md."""
    examples = {d["metadata"]["name"]: d for d in load_all(KUBERNETES / "secrets.example.yaml")}
    runbook = RUNBOOK.read_text()
    strimzi = topology()["kafka"]["strimzi"]
    made_by_strimzi = {*topology()["kafka"]["principals"], strimzi["cluster_ca_secret"]["name"]}
    deploy_doc = DEPLOY_DOC.read_text()
    for secret in made_by_strimzi:
        assert f"`{secret}`" in deploy_doc, secret
    for name, pod in pod_specs(manifests):
        for container in our_containers(pod):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in made_by_strimzi:
                    assert ref["key"] in examples[ref["name"]]["stringData"], name
                    assert f"`{ref['key']}`" in runbook, ref["key"]
        for volume in pod.get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"] not in made_by_strimzi:
                assert volume["secret"]["secretName"] in examples, name
    for secret in examples:
        assert f"`{secret}`" in runbook, secret


def test_the_manifests_pass_the_production_refusals(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In production mode, with the example's placeholders replaced by real values, every
    service accepts the manifests' settings: TLS to Kafka and PostgreSQL, an https grant URL."""
    config = config_literals(manifests)
    assert config["DEPLOYMENT_MODE"] == "production"
    examples = {d["metadata"]["name"]: d for d in load_all(KUBERNETES / "secrets.example.yaml")}
    vault_value = "a-value-from-the-vault-of-48-bytes-0123456789abc"
    secrets = {
        key: value.replace("CHANGE-ME", vault_value)
        for key, value in examples["achievements-secrets"]["stringData"].items()
    }
    for name, value in {**config, **secrets}.items():
        monkeypatch.setenv(name, value)
    # The SCRAM user's name and the password Strimzi's User Operator generates.
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "achievements-gateway")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", vault_value)
    for settings_class in (GatewaySettings, ValidatorSettings, GrantBridgeSettings):
        settings_class()
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "achievements-lag-exporter")
    ExporterSettings()


# --- Compose agrees with the code ---------------------------------------------------------------


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return {
        name: s
        for name, s in services.items()
        if str(s.get("image", "")).startswith("achievements")
    }


def test_compose_runs_commands_and_variables_the_code_knows() -> None:
    services = compose_services()
    assert {"migrate", "gateway", "validator", "bridge", "grant-standin"} <= set(services)
    known = SETTINGS_VARIABLES | OTHER_VARIABLES
    for name, service in services.items():
        for command in commands_of(service["command"]):
            assert command_exists(command), f"{name}: {command}"
        assert set(service["environment"]) <= known, name


def test_compose_health_checks_ask_the_port_each_service_listens_on() -> None:
    for name, service in compose_services().items():
        if name in ("migrate", "purge"):  # a job, and a schedule: no port to ask
            continue
        module = service_of(service["command"])
        port = service["environment"].get(SERVICE_PORTS[module])
        check = " ".join(service["healthcheck"]["test"])
        assert port is not None, name
        assert f":{port}/" in check or f", {port})" in check, name
        if module == EXPORTER_COMMAND:
            assert "/healthz" in check, name
            assert "/healthz" in SERVED_PATHS[module], name
        elif module != "services.grant_standin":
            assert "/readyz" in check, name
            assert "/readyz" in SERVED_PATHS[module], name


def test_compose_starts_services_after_the_migrations_and_scales_workers() -> None:
    services = compose_services()
    for name in ("gateway", "validator", "bridge"):
        waits = services[name]["depends_on"]["migrate"]
        assert waits == {"condition": "service_completed_successfully"}, name
    for name in ("validator", "bridge"):
        assert services[name]["deploy"]["replicas"] >= 2
    migrate = services["migrate"]["depends_on"]
    assert migrate["standin-database"] == {"condition": "service_completed_successfully"}
    assert migrate["postgres"] == {"condition": "service_healthy"}


def test_compose_keeps_kafkas_data_on_its_volume() -> None:
    kafka = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]
    mounts = dict(volume.split(":", 1)[::-1] for volume in kafka["volumes"])
    assert mounts[kafka["environment"]["KAFKA_LOG_DIRS"]] == "kafkadata"


# --- The image ----------------------------------------------------------------------------------


def test_the_image_is_pinned_locked_and_runs_as_its_own_user() -> None:
    dockerfile = DOCKERFILE.read_text()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", dockerfile)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1))
    assert "--require-hashes" in dockerfile
    assert "requirements.lock" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert "chown achievements:achievements /data/storage" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything is left out but what the image needs
    assert "!requirements.lock" in ignored


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "requirements.lock").read_text()
    pinned = {
        re.sub(r"[-_.]+", "-", m.group(1)).lower()
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock, re.MULTILINE)
    }
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pinned, name
    assert lock.count("--hash=sha256:") >= len(pinned)


# --- Alerts -------------------------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "max", "min", "by", "and", "or", "unless", "deriv", "increase", "rate",
    "histogram_quantile", "max_over_time", "predict_linear", "le", "job", "stage", "topic",
    "source_topic", "state", "instance", "group", "source", "time", "absent",
}  # fmt: skip


def exported_metric_names() -> set[str]:
    names = {"up"}
    for registry in (core_metrics.REGISTRY, GatewayMetrics().registry, ops_exporter().registry):
        for family in registry.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
            else:
                names.add(family.name)
    return names


def metrics_in(expr: str) -> set[str]:
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    return {t for t in re.findall(r"[a-z_][a-z0-9_]*", bare) if t not in PROMQL_WORDS}


def test_every_alert_uses_exported_metrics_and_has_a_runbook_section() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    exported = exported_metric_names()
    runbook = RUNBOOK.read_text()
    for rule in rules:
        assert metrics_in(rule["expr"]) <= exported, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert f"\n#### {rule['alert']}\n" in runbook, rule["alert"]
    wanted = {
        "KafkaConsumerLagGrowing", "OutboxEventsNotRelayed", "DeadLettersArriving",
        "GrantBreakerOpen", "UploadsStuck", "StorageFillingUp", "AchievementsPurgeNotSucceeding",
    }  # fmt: skip
    assert wanted <= {rule["alert"] for rule in rules}


def test_every_alert_rule_is_timed_by_promtool() -> None:
    """deploy/prometheus/alerts.test.yaml: each rule pending one evaluation before its `for:`
    has passed and firing when it has (promtool from Debian's prometheus package)."""
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in rules}
    result = subprocess.run(
        [str(TOOLS / "promtool.sh"), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cluster_loads_the_rules_with_their_times_scaled(tmp_path: Path) -> None:
    scale_alerts = tool("scale_alerts")
    rules = scale_alerts.scaled_rules(
        yaml.safe_load(ALERTS.read_text()), 0.1, scale_alerts.parse_duration("30s")
    )
    by_name = {rule["alert"]: rule for rule in rules["groups"][0]["rules"]}
    assert by_name["AchievementsServiceDown"]["for"] == "30s"
    assert by_name["KafkaConsumerLagGrowing"]["for"] == "1m30s"
    assert "[1m30s:6s]" in by_name["KafkaConsumerLagGrowing"]["expr"]
    assert "increase(kafka_dead_letters_total[1m30s])" in by_name["DeadLettersArriving"]["expr"]
    assert "for" not in by_name["DeadLettersArriving"]
    # A window below the floor is raised to it; a prediction horizon is no window.
    assert "outbox_oldest_unsent_age_seconds[30s]" in by_name["OutboxEventsNotRelayed"]["expr"]
    assert (
        "predict_linear(storage_free_bytes[36m], 24 * 3600)"
        in (by_name["StorageFillingUp"]["expr"])
    )
    assert by_name["GrantApiSlow"]["for"] == "1m30s"
    assert scale_alerts.format_duration(scale_alerts.parse_duration("1h30m") // 4) == "22m30s"
    scaled = tmp_path / "alerts.yaml"
    scaled.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [str(TOOLS / "promtool.sh"), "check", "rules", str(scaled)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_metric_is_explained_in_the_runbook() -> None:
    runbook = RUNBOOK.read_text()
    for name in sorted(exported_metric_names() - {"up"}):
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)
        if family.startswith(("process_", "python_")):
            continue
        assert f"`{family}" in runbook, family
