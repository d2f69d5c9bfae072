"""No `assert` in the services' code: `python -O` removes them, and an impossible state must
say why with an error of its own (tests assert; production checks)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"


def test_no_module_of_the_services_asserts() -> None:
    found = [
        f"{path.relative_to(SERVICES.parent)}:{node.lineno}"
        for path in sorted(SERVICES.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]

    assert found == []
