"""Rewrites the golden JSON Schema of every event type in tests/unit/core/event_schemas/.

    .venv/bin/python -m tests.unit.core.regenerate_event_schemas

Run it only for a change to the events that is meant and compatible (docs/operations.md,
"Changing an event"); review the diff of the JSON files with the change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.core.events import event_json_schemas

SCHEMA_DIR = Path(__file__).with_name("event_schemas")
COMMAND = ".venv/bin/python -m tests.unit.core.regenerate_event_schemas"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def golden_path(event_type: str) -> Path:
    return SCHEMA_DIR / f"{event_type}.json"


def main() -> None:
    schemas = event_json_schemas()
    SCHEMA_DIR.mkdir(exist_ok=True)
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        if path.stem not in schemas:
            path.unlink()
            print(f"removed {path.name}")
    for event_type, schema in sorted(schemas.items()):
        path = golden_path(event_type)
        text = render(schema)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
