"""Settings of the pages' help, contact and privacy links (`GATEWAY_PAGES_*` variables): what
the footer of every page and the "Help and contact" page show.

The defaults lead to CITB's own site; each deployment sets the exact pages (its help page, its
privacy notice, the Fair Processing Notice ATOs share with learners) and the support desk's
contact details.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CITB_SITE = "https://www.citb.co.uk/"


class PagesSupportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_PAGES_", extra="ignore")

    # Where "Help and contact" sends a user for more help than the page itself gives.
    help_url: str = Field(default=CITB_SITE, pattern=r"^https?://")
    # The support desk, shown on the "Help and contact" page when set.
    contact_email: str | None = None
    contact_phone: str | None = None
    contact_hours: str | None = None  # e.g. "Monday to Friday, 9am to 5pm"
    # CITB's privacy notice, and the Fair Processing Notice (how learners' details are used),
    # which the guide says an ATO can share with its learners.
    privacy_url: str = Field(default=CITB_SITE, pattern=r"^https?://")
    fair_processing_notice_url: str = Field(default=CITB_SITE, pattern=r"^https?://")
