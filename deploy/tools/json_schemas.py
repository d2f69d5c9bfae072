"""The JSON schemas kubeconform validates the Kubernetes files with.

    python deploy/tools/json_schemas.py kubernetes   # the core kinds, from kubernetes-validate

The core kinds' are written into deploy/schemas/ (committed: CI cannot reach the sites they are
published on), laid out as kubeconform looks them up (`-schema-location`):
`kubernetes/v{VERSION}-standalone-strict/{kind}[-{group}]-{version}.json`, names lower-case.
The custom kinds' are converted here (`crd_schemas`) by deploy/tools/crd_schemas.py, from the
CRDs their projects publish, into an ignored cache: `{kind}-{group}-{version}.json`.

Core kinds come from the schemas kubernetes-validate bundles (a locked dev dependency): each
references one shared definitions file, which kubeconform does not resolve, so each kind is
written standalone with only the definitions it reaches, descriptions left out (they are most
of the bytes and validate nothing).

Custom kinds are read from each CRD's `openAPIV3Schema` as kubeconform's own converter
(openapi2jsonschema) does it: strict (an object with declared properties takes no other,
unless the CRD keeps unknown fields), `int-or-string` as either.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
KUBERNETES_VERSION = "1.30.0"
# The core kinds the Kubernetes files use, as (apiVersion, kind).
CORE_KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
]
_DEFINITIONS = "_definitions.json"


def kind_file_name(api_version: str, kind: str) -> str:
    """kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` for a core kind."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def _local_refs(node: Any, found: set[str]) -> Any:
    """Rewrites `/api/_definitions.json#/$defs/NAME` to `#/$defs/NAME`, collecting the names."""
    if isinstance(node, dict):
        rewritten = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and "#/$defs/" in value:
                name = value.rsplit("/", 1)[1]
                found.add(name)
                rewritten[key] = f"#/$defs/{name}"
            else:
                rewritten[key] = _local_refs(value, found)
        return rewritten
    if isinstance(node, list):
        return [_local_refs(v, found) for v in node]
    return node


def standalone(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the definitions it reaches (transitively) under its own `$defs`."""
    wanted: set[str] = set()
    root = _local_refs(_without_descriptions(schema), wanted)
    kept: dict[str, Any] = {}
    while wanted - kept.keys():
        name = sorted(wanted - kept.keys())[0]
        kept[name] = _local_refs(_without_descriptions(definitions[name]), wanted)
    root.pop("$defs", None)
    if kept:
        root["$defs"] = dict(sorted(kept.items()))
    return root


def write_kubernetes(kinds: Iterable[tuple[str, str]], version: str = KUBERNETES_VERSION) -> None:
    import kubernetes_validate

    bundled = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{version}-local-strict"
    )
    definitions = json.loads((bundled / _DEFINITIONS).read_text())["$defs"]
    target = SCHEMAS / "kubernetes" / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    for api_version, kind in kinds:
        name = kind_file_name(api_version, kind)
        schema = json.loads((bundled / name).read_text())
        _write(target / name, standalone(schema, definitions))


def strict_crd_schema(node: Any) -> Any:
    """openapi2jsonschema's strictness: objects with properties take no others (unless the CRD
    keeps unknown fields there); `format: int-or-string` is a string or an integer."""
    if isinstance(node, list):
        return [strict_crd_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    converted = {k: strict_crd_schema(v) for k, v in node.items()}
    if (
        "properties" in converted
        and "additionalProperties" not in converted
        and not converted.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    if converted.get("format") == "int-or-string":
        del converted["format"]
        converted.pop("type", None)
        converted["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    return converted


def crd_schemas(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """File name -> JSON schema, one per served version of the CRD."""
    spec = crd["spec"]
    kind = spec["names"]["kind"].lower()
    written = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strict_crd_schema(version["schema"]["openAPIV3Schema"])
        written[f"{kind}-{spec['group']}-{version['name']}.json"] = schema
    return written


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(path.relative_to(SCHEMAS.parent.parent), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    which = parser.add_subparsers(dest="which", required=True)
    which.add_parser("kubernetes")
    parser.parse_args(argv)
    write_kubernetes(CORE_KINDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
