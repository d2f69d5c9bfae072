"""Masks a cell's value for the ATO's error report: identifiers partly, personal data fully."""

from __future__ import annotations

# Columns whose values identify a learner: keep just enough to find the row in a spreadsheet.
_PARTLY_MASKED = {"ULN", "NINumber", "CITBIndividualId"}
# Personal data the ATO already holds and the report does not need to repeat.
_FULLY_MASKED = {"LearnerForename", "LearnerSurname", "DateOfBirth", "Notes"}
_MAX_SHOWN = 60


def mask_value(column: str | None, value: str) -> str | None:
    value = value.strip()
    if column is None or not value:
        return None
    if column in _FULLY_MASKED:
        return "*" * min(len(value), 8)
    if column in _PARTLY_MASKED:
        if len(value) <= 5:
            return "*" * len(value)
        return value[:2] + "*" * (len(value) - 5) + value[-3:]
    return value[:_MAX_SHOWN]
