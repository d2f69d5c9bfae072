"""The deployment files pass the validators that work offline (the compose specification's JSON
schema, the Kubernetes API schemas after `kubectl kustomize`) and agree with the code: every
command exists, every environment variable is a setting some process reads, every probe and
scrape reaches a path and port the process serves, every secret is documented, and every alert
names metrics the services export and has its runbook section."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from services import cli
from services.core import metrics as core_metrics
from services.core.events import Topics
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
# Resources of operators the cluster runs (their schemas are not Kubernetes'): checked here by
# hand instead.
CUSTOM_KINDS = {("kafka.strimzi.io/v1beta2", "KafkaTopic"), ("keda.sh/v1alpha1", "ScaledObject")}
# Variables read by something other than a settings class: the log format (logging.py) and
# libpq's TLS variables, which asyncpg reads for every connection.
OTHER_VARIABLES = {"LOG_FORMAT", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"}
# Each service's module, and the variable that sets the port its probes and scrapes reach.
SERVICE_PORTS = {
    "services.upload_gateway": "GATEWAY_PORT",
    "services.validator": "VALIDATOR_HTTP_PORT",
    "services.grant_bridge": "GRANT_BRIDGE_HTTP_PORT",
    "services.grant_standin": "GRANT_STANDIN_PORT",
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
        for model in (GatewaySettings, ValidatorSettings, GrantBridgeSettings, StandinSettings)
    )
)


def worker_paths() -> set[str]:
    app = create_app({}, [])
    return {route.resource.canonical for route in app.router.routes() if route.resource}


SERVED_PATHS = {
    "services.upload_gateway": {endpoint.path for endpoint in ENDPOINTS},
    "services.validator": worker_paths(),
    "services.grant_bridge": worker_paths(),
    "services.grant_standin": set(),
}


def command_exists(argv: list[str]) -> bool:
    """`python -m MODULE` has a `__main__`; `achievements ...` parses."""
    if argv[:2] == ["python", "-m"]:
        return importlib.util.find_spec(f"{argv[2]}.__main__") is not None
    if argv[0] != "achievements":
        return False
    rest = argv[1:]
    if rest[:1] and rest[0] in cli.OPERATIONS_COMMANDS:
        # The click command (or a group's subcommand) parses its options as it would run.
        command: click.Command = cli.operations.commands[rest[0]]
        args = rest[1:]
        while isinstance(command, click.Group):
            if not args or args[0] not in command.commands:
                return False
            command, args = command.commands[args[0]], args[1:]
        try:
            command.make_context(rest[0], list(args))
        except click.ClickException:
            return False
        return True
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            parsed: argparse.Namespace = cli.build_parser().parse_args(rest)
        except SystemExit:
            return False
    return hasattr(parsed, "action")


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


def rendered(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


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
    assert len(deployments) == 3
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        module = container["command"][2]
        port = int(config[SERVICE_PORTS[module]])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port, deployment["metadata"]["name"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert "/metrics" in SERVED_PATHS[module]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == "http"
            assert get["path"] in SERVED_PATHS[module], (module, get["path"])
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
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
    backend = by_kind["Ingress"][0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == service["metadata"]["name"]
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
    assert steps == [
        ["achievements", "admin", "migrate"],
        ["achievements", "admin", "topics"],
        ["achievements", "reference", "load", "--if-missing"],
    ]
    for name, pod in pod_specs(manifests):
        if name == job["metadata"]["name"]:
            continue
        first = pod["initContainers"][0]["command"]
        assert first[:3] == ["achievements", "admin", "migrated"], name


def test_topics_are_replicated_three_times_with_two_in_sync() -> None:
    config = config_literals(rendered(KUBERNETES / "overlays" / "production"))
    assert (config["KAFKA_REPLICATION_FACTOR"], config["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    declared = load_all(KUBERNETES / "overlays" / "production" / "kafka-topics.yaml")
    assert sorted(d["spec"]["topicName"] for d in declared) == sorted(Topics().all())
    for topic in declared:
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"


def test_every_secret_named_is_in_the_example_and_the_runbook(
    manifests: list[dict[str, Any]],
) -> None:
    examples = {d["metadata"]["name"]: d for d in load_all(KUBERNETES / "secrets.example.yaml")}
    runbook = RUNBOOK.read_text()
    for name, pod in pod_specs(manifests):
        for container in our_containers(pod):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples[ref["name"]]["stringData"], name
                    assert f"`{ref['key']}`" in runbook, ref["key"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
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
    for settings_class in (GatewaySettings, ValidatorSettings, GrantBridgeSettings):
        settings_class()


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
        module = service["command"][2]
        port = service["environment"].get(SERVICE_PORTS[module])
        check = " ".join(service["healthcheck"]["test"])
        assert port is not None, name
        assert f":{port}/" in check or f", {port})" in check, name
        if module != "services.grant_standin":
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
    "source_topic", "state", "instance",
}  # fmt: skip


def exported_metric_names() -> set[str]:
    names = {"up"}
    for registry in (core_metrics.REGISTRY, GatewayMetrics().registry):
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
        "GrantBreakerOpen", "UploadsStuck", "StorageFillingUp",
    }  # fmt: skip
    assert wanted <= {rule["alert"] for rule in rules}


def test_every_exported_metric_is_explained_in_the_runbook() -> None:
    runbook = RUNBOOK.read_text()
    for name in sorted(exported_metric_names() - {"up"}):
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)
        if family.startswith(("process_", "python_")):
            continue
        assert f"`{family}" in runbook, family
