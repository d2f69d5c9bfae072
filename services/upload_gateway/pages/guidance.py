"""The scheme for people: the published scheme document (built from the validator's own
columns, codes and messages) with the pages' examples and each column's kind, and the guidance
notes that stand above the columns of the blank file and the guided template."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from typing import Any

from services.core.scheme.columns import COLUMNS, ColumnSpec
from services.core.scheme.scheme_document import scheme_document
from services.upload_gateway.pages.texts import (
    COLUMN_NOTES,
    EXAMPLES,
    FORMAT_WORDS,
    GUIDANCE_INTRO,
    GUIDANCE_MARK,
    REQUIRED_WORDS,
)


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
    """The guidance note of a column, in plain words: whether it is needed, its format, an
    example, and a tip (no pattern syntax: the technical scheme page has the exact formats)."""
    return (
        f"{spec.header}: {REQUIRED_WORDS.get(spec.required, spec.required)}."
        f" {FORMAT_WORDS[spec.column]}, for example {EXAMPLES[spec.column]}."
        f" {COLUMN_NOTES[spec.column]}"
    )


def guidance_rows() -> tuple[tuple[str, ...], ...]:
    """The rows above the header of the blank file and the guided template: a line on how to
    use the file, then each column's note above its column. Each row's first cell starts with
    the guidance mark, so the checks skip the rows (scheme section 9)."""
    notes = [column_note(spec) for spec in COLUMNS]
    return (
        (GUIDANCE_MARK + GUIDANCE_INTRO,),
        (GUIDANCE_MARK + notes[0], *notes[1:]),
    )


def guided_csv() -> str:
    """The blank CSV file: the guidance rows, then the template's header row.

    A byte-order mark first, so that a spreadsheet opens the notes as UTF-8; CRLF line ends and
    quoting as a spreadsheet's "CSV UTF-8" export writes them (the notes hold commas)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(guidance_rows())
    writer.writerow([spec.header for spec in COLUMNS])
    return "\ufeff" + out.getvalue()


def scheme_view() -> dict[str, Any]:
    """The scheme document, each column with its kind, wording and example added."""
    document = scheme_document()
    for column, spec in zip(document["columns"], COLUMNS, strict=True):
        column["kind"] = kind_of(spec).value
        column["required_words"] = REQUIRED_WORDS.get(spec.required, spec.required)
        column["example"] = EXAMPLES[spec.column]
        column["note"] = COLUMN_NOTES[spec.column]
    return document
