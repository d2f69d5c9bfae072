"""What every page's template reads besides its own context: the signed-in session and the
chrome, as `site.render` and the page handlers give them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.upload_gateway.pages_settings import PagesSupportSettings


@dataclass(frozen=True)
class SignedIn:
    ato_id: str = "ATO-7EC4FB26"
    csrf_token: str = "csrf-token"
    may_submit: bool = True  # a submitter's session; a viewer's hides the upload and withdrawals
    ato_name: str = "Northgate Training Ltd"
    person: None = None


def page_context(**context: Any) -> dict[str, Any]:
    return {
        "session": SignedIn(),
        "current_path": "/ato/submit",
        "support": PagesSupportSettings(
            help_url="https://help.example/ato",
            contact_email="support@help.example",
            contact_phone="0300 000 0000",
            privacy_url="https://help.example/privacy",
            fair_processing_notice_url="https://help.example/fair-processing",
        ),
        **context,
    }
