"""The JSON schemas of the custom kinds the Kubernetes files use (Strimzi's KafkaTopic and
KafkaUser, KEDA's ScaledObject, Prometheus Operator's PodMonitor and PrometheusRule), made from
the CRDs those projects publish to package registries, into an ignored cache:

    python deploy/tools/crd_schemas.py          # prints the cache folder, building it if missing

This repository keeps none of those projects' files. At check time (tests/unit/test_deploy_files.py)
each CRD is fetched with the registry's ordinary client, at the version pinned in `SOURCES`:

- KEDA and Prometheus Operator release their Go modules with the CRDs in them
  (`config/crd/bases/`, `example/prometheus-operator-crd/`): `go mod download`.
- Strimzi's CRDs are not files in any artefact: its build generates them from the model classes
  of `io.strimzi:api` with its own `io.strimzi:crd-generator`, with the arguments of the api
  module's pom (`--crd-api-version v1 --api-versions v1 --storage-version v1 ...`), into the
  `043-Crd-kafkatopic.yaml` and `044-Crd-kafkauser.yaml` it releases. The same two Maven Central
  artefacts are resolved here (`mvn dependency:build-classpath`) and the generator run with
  the same arguments; it needs Java 21 or later (the release's class files).

Each CRD's `openAPIV3Schema` is then converted as kubeconform's own converter does
(`json_schemas.crd_schemas`) into `.cache/crd-schemas/<versions>/{kind}-{group}-{version}.json`,
names lower-case, which kubeconform finds with
`-schema-location '<folder>/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json'`.
A folder is complete or absent: it is written beside and renamed into place.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "crd-schemas"
# A build that hangs (a registry not answering) fails the check instead of waiting for ever.
FETCH_TIMEOUT_S = 900


# NamedTuples, not dataclasses: the tests load this script by its path, outside sys.modules.
class GoModuleCrds(NamedTuple):
    """CRD files inside a released Go module."""

    project: str
    module: str
    version: str
    files: tuple[str, ...]


class StrimziCrds(NamedTuple):
    """CRDs generated from Strimzi's released model classes by Strimzi's released generator."""

    project: str
    version: str
    # Model class -> the file name Strimzi releases it as.
    classes: tuple[tuple[str, str], ...]


# The versions, pinned here only (docs/deploy.md and deploy/schemas/README.md name them).
STRIMZI = StrimziCrds(
    project="strimzi",
    version="1.2.0",
    classes=(
        ("io.strimzi.api.kafka.model.topic.KafkaTopic", "043-Crd-kafkatopic.yaml"),
        ("io.strimzi.api.kafka.model.user.KafkaUser", "044-Crd-kafkauser.yaml"),
    ),
)
KEDA = GoModuleCrds(
    project="keda",
    module="github.com/kedacore/keda/v2",
    version="v2.20.2",
    files=("config/crd/bases/keda.sh_scaledobjects.yaml",),
)
PROMETHEUS_OPERATOR = GoModuleCrds(
    project="prometheus-operator",
    module="github.com/prometheus-operator/prometheus-operator",
    version="v0.93.0",
    files=(
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ),
)
SOURCES: tuple[StrimziCrds | GoModuleCrds, ...] = (STRIMZI, KEDA, PROMETHEUS_OPERATOR)
# The schema files the Kubernetes files need: a folder without one of them is rebuilt.
EXPECTED = (
    "kafkatopic-kafka.strimzi.io-v1.json",
    "kafkauser-kafka.strimzi.io-v1.json",
    "scaledobject-keda.sh-v1alpha1.json",
    "podmonitor-monitoring.coreos.com-v1.json",
    "prometheusrule-monitoring.coreos.com-v1.json",
)
# Strimzi's api module runs its generator with these (its pom's `generate-crds` execution).
STRIMZI_GENERATOR_ARGS = (
    "--label", "app:strimzi",
    "--label", "strimzi.io/crd-install:true",
    "--target-kube", "1.16+",
    "--crd-api-version", "v1",
    "--api-versions", "v1",
    "--storage-version", "v1",
    "--yaml",
)  # fmt: skip
STRIMZI_GENERATOR_MAIN = "io.strimzi.crdgenerator.CrdGenerator"
STRIMZI_JAVA_AT_LEAST = 21
# Where the Go toolchain is when it is not on PATH (as deploy/tools/go-install-lib.sh looks).
GO_FALLBACK = "/usr/local/go/bin/go"


def cache_folder() -> Path:
    """The folder of the pinned versions (a new pin gets a folder of its own)."""
    label = "_".join(f"{source.project}-{source.version.lstrip('v')}" for source in SOURCES)
    return CACHE / label


def ensure() -> Path:
    """The cache folder of the pinned versions, built first when it is missing."""
    folder = cache_folder()
    if _complete(folder):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".building-") as building:
        work = Path(building)
        target = work / "schemas"
        target.mkdir()
        crds = [*_strimzi_crds(STRIMZI, work / "strimzi")]
        for source in (KEDA, PROMETHEUS_OPERATOR):
            crds += _go_module_crds(source, work / source.project)
        for path in crds:
            _convert(path, target)
        missing = [name for name in EXPECTED if not (target / name).is_file()]
        if missing:
            raise RuntimeError(f"the fetched CRDs gave no schema for {missing}")
        (target / "SOURCES.json").write_text(json.dumps(_provenance(), indent=1) + "\n")
        if not _complete(folder):
            shutil.rmtree(folder, ignore_errors=True)
            try:
                target.rename(folder)
            except OSError:
                if not _complete(folder):  # not another build that finished first
                    raise
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in EXPECTED)


def _provenance() -> list[dict[str, str]]:
    return [
        {"project": STRIMZI.project, "maven": f"io.strimzi:api:{STRIMZI.version}"},
        *(
            {"project": s.project, "go_module": f"{s.module}@{s.version}"}
            for s in (KEDA, PROMETHEUS_OPERATOR)
        ),
    ]


def _json_schemas() -> ModuleType:
    """deploy/tools/json_schemas.py (a sibling script, not a package): its CRD conversion."""
    spec = importlib.util.spec_from_file_location(
        "json_schemas", Path(__file__).with_name("json_schemas.py")
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("deploy/tools/json_schemas.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _convert(crd_file: Path, target: Path) -> None:
    converted: dict[str, dict[str, Any]]
    for document in yaml.safe_load_all(crd_file.read_text()):
        if document and document.get("kind") == "CustomResourceDefinition":
            converted = _json_schemas().crd_schemas(document)
            for name, schema in converted.items():
                (target / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


def _run(command: list[str], cwd: Path, **env: str) -> str:
    # The toolchains' own commands with the arguments pinned here.
    done = subprocess.run(  # noqa: S603
        command,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=FETCH_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stdout}{done.stderr}"[-4000:])
    return done.stdout


def _go() -> str:
    found = shutil.which("go")
    if found is None and Path(GO_FALLBACK).is_file():
        found = GO_FALLBACK
    if found is None:
        raise RuntimeError(
            "the Go toolchain is needed (deploy/tools/go-install-lib.sh installs it)"
        )
    return found


def _go_module_crds(source: GoModuleCrds, work: Path) -> list[Path]:
    """The CRD files of `source`, from the module as the Go module proxy serves it."""
    work.mkdir(parents=True)
    # Outside any module: `go mod download` takes a module@version as it is.
    answer = _run(
        [_go(), "mod", "download", "-json", f"{source.module}@{source.version}"],
        work,
        GOFLAGS="-mod=mod",
        GO111MODULE="on",
    )
    module_dir = Path(json.loads(answer)["Dir"])
    return [module_dir / name for name in source.files]


def _java_at_least(major: int) -> str:
    """A `java` of at least `major`: JAVA_HOME's, the one on PATH, or one in /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in candidates:
        try:
            version = subprocess.run(  # noqa: S603 (a java found above, asked its version)
                [java, "-version"], capture_output=True, text=True, timeout=60, check=False
            ).stderr
        except OSError:
            continue
        found = re.search(r'version "(\d+)', version)
        if found and int(found.group(1)) >= major:
            return java
    raise RuntimeError(f"Strimzi's CRD generator needs Java {major} or later; none was found")


def _strimzi_crds(source: StrimziCrds, work: Path) -> list[Path]:
    """Strimzi's CRDs, generated as its release generates them."""
    work.mkdir(parents=True)
    dependencies = "".join(
        f"<dependency><groupId>io.strimzi</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{source.version}</version></dependency>"
        for artifact in ("api", "crd-generator")
    )
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>local.checks</groupId><artifactId>strimzi-crds</artifactId><version>0</version>"
        f"<dependencies>{dependencies}</dependencies></project>\n"
    )
    _run(["mvn", "-q", "-B", "dependency:build-classpath", "-Dmdep.outputFile=cp.txt"], work)
    classpath = (work / "cp.txt").read_text().strip()
    outputs = [(name, work / file_name) for name, file_name in source.classes]
    _run(
        [
            _java_at_least(STRIMZI_JAVA_AT_LEAST),
            "-cp",
            classpath,
            STRIMZI_GENERATOR_MAIN,
            *STRIMZI_GENERATOR_ARGS,
            *(f"{name}={path}" for name, path in outputs),
        ],
        work,
    )
    return [path for _, path in outputs]


def main() -> int:
    print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
