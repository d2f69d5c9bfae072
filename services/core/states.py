"""The words of the pipeline's three state machines, each spelled once. Pure: no I/O.

| Column | Enum | Who moves it |
|---|---|---|
| `uploads.status` | `UploadState` | gateway (`received`), then the validator |
| `achievements.grant_state` | `GrantState` | `grant_states` (the validator only inserts) |
| `grant_claims.state` | `ClaimState` | `grant_states` |

The schema's CHECK constraints list exactly these values (migrations 0001, 0003 and 0006; a test
reads the constraints back from a migrated database and compares them with the enums).

Upload states::

    received ──▶ validating ──▶ rejected | failed | errored                   (nothing accepted)
                           └──▶ partially_accepted | passed_with_warnings | passed  (ACCEPTING)

Grant states of an accepted achievement::

    held ──▶ claimed | refused        the grant system's answer to its claim
    held, not_eligible ──▶ withdrawn   by the ATO, while `release_at` is ahead and no claim of the
                                       achievement has been leased, sent or closed

Claim states::

    pending ──▶ accepted | refused     the grant system's final answer (recorded under a lease)
    pending ──▶ withdrawn              the achievement was withdrawn first; never sent
    pending ──▶ skipped                the achievement was in no state to claim; never sent

How the two grant-side machines relate (`GRANT_STATE_OF_CLAIM`): a claim's final answer decides
its achievement's grant state (accepted → claimed, refused → refused); a withdrawal goes the
other way (the achievement is withdrawn first, and its claim is then closed as withdrawn). A
pending claim's achievement is held, or already withdrawn until the bridge's next lease closes
the claim. A skipped claim leaves its achievement as it was. A not_eligible achievement never
has a claim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from services.core.scheme.codes import UploadStatus
from services.core.scheme.outcome import accepts_rows

# The CSV scheme publishes the upload statuses (section 6), so they are spelled there; this is
# the same enum under the name the other state machines share.
UploadState = UploadStatus

# An upload in one of these states is still being worked on; every other state is final.
IN_PROGRESS: Final[frozenset[UploadState]] = frozenset(
    {UploadState.RECEIVED, UploadState.VALIDATING}
)
# An upload in one of these states is decided: its status never changes again.
FINAL: Final[frozenset[UploadState]] = frozenset(UploadState) - IN_PROGRESS
# The final states whose valid rows became achievements (and may be withdrawn); the scheme's
# outcome rules decide which.
ACCEPTING: Final[frozenset[UploadState]] = frozenset(
    state for state in UploadState if accepts_rows(state)
)


class GrantState(StrEnum):
    """`achievements.grant_state`: where an accepted achievement is on its way to a grant."""

    HELD = "held"  # eligible, waiting for the amendment window to end (then claimed)
    NOT_ELIGIBLE = "not_eligible"  # recorded, never sent (no or not grant-eligible levy number)
    CLAIMED = "claimed"  # the grant system accepted its claim
    REFUSED = "refused"  # the grant system refused its claim for good (the code is kept)
    WITHDRAWN = "withdrawn"  # withdrawn by the ATO inside the window; never sent


class ClaimState(StrEnum):
    """`grant_claims.state`: the bridge's claim of one grant-eligible achievement."""

    PENDING = "pending"  # to send (again)
    ACCEPTED = "accepted"  # the grant system's final answer: stored
    REFUSED = "refused"  # the grant system's final answer: refused (409, 422)
    WITHDRAWN = "withdrawn"  # closed unsent: its achievement was withdrawn
    SKIPPED = "skipped"  # closed unsent: its achievement was in no state to claim


# The grant states an ATO may withdraw from (while the window is open).
WITHDRAWABLE: Final[frozenset[GrantState]] = frozenset({GrantState.HELD, GrantState.NOT_ELIGIBLE})
# The only grant state whose claim may be sent.
SENDABLE: Final = GrantState.HELD
# A closed claim never changes again.
CLOSED_CLAIMS: Final[frozenset[ClaimState]] = frozenset(set(ClaimState) - {ClaimState.PENDING})

# The grant state of an achievement whose claim is in each state (see the module docstring).
# None: the claim does not decide it (a skipped claim leaves the achievement as it was).
GRANT_STATE_OF_CLAIM: Final[Mapping[ClaimState, GrantState | None]] = MappingProxyType(
    {
        ClaimState.PENDING: GrantState.HELD,  # or withdrawn, until the next lease closes it
        ClaimState.ACCEPTED: GrantState.CLAIMED,
        ClaimState.REFUSED: GrantState.REFUSED,
        ClaimState.WITHDRAWN: GrantState.WITHDRAWN,
        ClaimState.SKIPPED: None,
    }
)
# The claim states the grant system's answer moves a claim to, and so its achievement.
ANSWERED: Final[frozenset[ClaimState]] = frozenset({ClaimState.ACCEPTED, ClaimState.REFUSED})


def initial_grant_state(grant_eligible: bool) -> GrantState:
    """The grant state an accepted achievement is recorded with."""
    return GrantState.HELD if grant_eligible else GrantState.NOT_ELIGIBLE


_WORD = re.compile(r"[a-z_]+")


def sql_literal(state: StrEnum) -> str:
    """A state as an SQL string literal, for statements that name a state in their guards."""
    value = state.value
    if not _WORD.fullmatch(value):
        raise ValueError(f"not a state word: {value!r}")
    return f"'{value}'"


def sql_list(states: Iterable[StrEnum]) -> str:
    """States as an SQL list for `IN (...)`, in a stable order."""
    return ", ".join(sql_literal(state) for state in sorted(states, key=lambda s: s.value))
