"""The named people of the demo ATO who can sign in through the stand-in, with their roles."""

from __future__ import annotations

from typing import Final

from services.core.people import Person, Role

# The subject is the portal's stable id of the person; the name is what the pages show.
PEOPLE: Final = (
    (Person("portal-user-1001", "Priya Shah"), Role.SUBMITTER),
    (Person("portal-user-1002", "Tom Evans"), Role.VIEWER),
    (Person("portal-user-1003", "Ruth Okafor"), Role.SUBMITTER),
)
BY_SUBJECT: Final = {person.subject: (person, role) for person, role in PEOPLE}
