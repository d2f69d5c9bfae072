"""A person of an ATO, as the portal (CITB's identity provider) names them, and their role.

The portal's subject is the person's lasting identifier; the display name is what the pages and
the audit trail show. Both are the ATO's staff's, never a learner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a person may do in the ATO's pages; the portal decides it."""

    SUBMITTER = "submitter"  # uploads, withdraws, downloads the rows to fix
    VIEWER = "viewer"  # sees statuses and the masked problems, changes nothing

    @property
    def may_submit(self) -> bool:
        return self is Role.SUBMITTER


@dataclass(frozen=True, slots=True)
class Person:
    subject: str  # the portal's `sub`: stable, opaque
    name: str  # the portal's display name

    @property
    def actor(self) -> str:
        """How the audit trail names them: `person:<subject>`."""
        return f"person:{self.subject}"
