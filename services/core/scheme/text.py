"""Cell text normalisation shared by the rules, the header matching and the levy register."""

from __future__ import annotations

import re
from typing import Final

# Unicode White_Space (section 8 "Trimming"). Python's str.strip() with no argument would also
# strip U+001C..U+001F, which are control characters, not white space.
WHITE_SPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITE_SPACE_CLASS = re.escape(WHITE_SPACE)
_WHITE_SPACE_RE: Final = re.compile(f"[{_WHITE_SPACE_CLASS}]+")
# Removed from a levy number besides white space (the bulk pass reads the same characters).
LEVY_SEPARATORS: Final = "/-"
_LEVY_SEPARATORS_RE: Final = re.compile(f"[{_WHITE_SPACE_CLASS}{re.escape(LEVY_SEPARATORS)}]+")
_HEADER_IGNORED_RE: Final = re.compile(f"[{_WHITE_SPACE_CLASS}_-]+")


def trim(value: str) -> str:
    return value.strip(WHITE_SPACE)


def clean_cell(value: str) -> str:
    """Trims, then unwraps a spreadsheet text formula `="0123"` to `0123` (any column).

    The unwrapped text is trimmed again: white space inside the wrapper is still white space
    around the value.
    """
    value = value.strip(WHITE_SPACE)
    if value.startswith('="') and value.endswith('"') and len(value) >= 3:
        return value[2:-1].strip(WHITE_SPACE)
    return value


def remove_white_space(value: str) -> str:
    """ "Spaces removed" in identifier columns removes every white-space character."""
    if value.isalnum():  # the usual identifier: no white space, skip the regex
        return value
    return _WHITE_SPACE_RE.sub("", value)


def normalise_levy_number(value: str) -> str:
    """The levy number as compared with the register: upper-cased, no white space, `/` or `-`."""
    return _LEVY_SEPARATORS_RE.sub("", value).upper()


def normalise_header(value: str) -> str:
    """Header matching ignores case, white space, `_` and `-` (`Course Code` is `CourseCode`)."""
    return _HEADER_IGNORED_RE.sub("", value).lower()


def column_letter(index: int) -> str:
    """The spreadsheet letter of a zero-based column index: 0 is A, 26 is AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
