"""The scheme for people: the published scheme document (built from the validator's own
columns, codes and messages) with the pages' examples and each column's kind."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from services.core.scheme.columns import COLUMNS, ColumnSpec
from services.core.scheme.scheme_document import scheme_document
from services.upload_gateway.pages.texts import COLUMN_NOTES, EXAMPLES, REQUIRED_WORDS


class Kind(StrEnum):
    REQUIRED = "required"  # blue in the template
    IDENTIFIER = "identifier"  # the one-of group, yellow in the template
    OPTIONAL = "optional"


def kind_of(spec: ColumnSpec) -> Kind:
    if spec.required == "yes":
        return Kind.REQUIRED
    if spec.required.startswith("one of"):
        return Kind.IDENTIFIER
    return Kind.OPTIONAL


def column_note(spec: ColumnSpec) -> str:
    """The guidance note of a column: what it needs, its format, an example, and a tip."""
    return (
        f"{spec.header} ({REQUIRED_WORDS.get(spec.required, spec.required)})."
        f" Format: {spec.format}. Example: {EXAMPLES[spec.column]}."
        f" {COLUMN_NOTES[spec.column]}"
    )


def scheme_view() -> dict[str, Any]:
    """The scheme document, each column with its kind, wording and example added."""
    document = scheme_document()
    for column, spec in zip(document["columns"], COLUMNS, strict=True):
        column["kind"] = kind_of(spec).value
        column["required_words"] = REQUIRED_WORDS.get(spec.required, spec.required)
        column["example"] = EXAMPLES[spec.column]
        column["note"] = COLUMN_NOTES[spec.column]
    return document
