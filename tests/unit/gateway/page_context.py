"""What every page's template reads besides its own context: the signed-in session and the
chrome, as `site.render` and the page handlers give them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SignedIn:
    ato_id: str = "ATO-7EC4FB26"
    csrf_token: str = "csrf-token"
    may_submit: bool = True  # a submitter's session; a viewer's hides the upload and withdrawals
    may_submit: bool = True  # a submitter's session; a viewer's hides the upload and withdrawals


def page_context(**context: Any) -> dict[str, Any]:
    return {"session": SignedIn(), **context}
