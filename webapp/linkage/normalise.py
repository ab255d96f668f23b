"""Normalising person fields, used by both load (what is stored) and match (what is compared).

One place for each rule, so that a record loaded today and one loaded last year compare alike:

- names: accents and case dropped, apostrophes removed, any other run of non-letters (hyphen,
  dot, comma, spaces) made one space: "  Zoë  O'Brien-Smith " -> "zoe obrien smith".
- dates: see `parse_date`; stored as ISO `YYYY-MM-DD`.
- postcodes: upper case without spaces or punctuation; a UK postcode gets its one space back
  before the inward code ("sw1a1aa" -> "SW1A 1AA"), so Splink's sector and district levels work.
- sex: "M", "F" or "" (unknown).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

# Letters that Unicode does not decompose into a base letter plus an accent.
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d",
                       "þ": "th", "ı": "i", "ß": "ss"})
_APOSTROPHES = re.compile(r"['’‘`´]")
_NOT_LETTERS = re.compile(r"[^a-z]+")


def normalise_name(text: str | None) -> str:
    """A name reduced to lower-case ASCII letters and single spaces ("" for nothing)."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKD", str(text).casefold()).translate(_FOLD)
    letters = "".join(ch for ch in folded if not unicodedata.combining(ch))
    letters = _APOSTROPHES.sub("", letters)
    return _NOT_LETTERS.sub(" ", letters).strip()


_MONTHS = {name: number for number, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
     ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
     ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], start=1) for name in names}

# (pattern, order of its groups). Years have four digits: "03/02/01" is refused, not guessed.
_DATE_FORMATS = [
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[t ][\d:.+\-z]*)?"), "ymd"),  # ISO, a time ignored
    (re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"), "ymd"),                       # 2001/02/03
    (re.compile(r"(\d{4})(\d{2})(\d{2})"), "ymd"),                             # 20010203
    (re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})"), "dmy"),             # 03/02/2001, 3.2.2001
    (re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[ \-]([a-z]+)\.?,?[ \-](\d{4})"), "dMy"),  # 3 Feb 2001
    (re.compile(r"([a-z]+)\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})"), "Mdy"),   # Feb 3, 2001
]


def parse_date(text: str | None) -> date | None:
    """The date `text` holds, or None when it holds no valid date.

    Accepted (surrounding spaces and case ignored):
    - ISO `2001-02-03` (a time after it, `2001-02-03T10:00:00`, is ignored), `2001/02/03`
    - `20010203` (eight digits, year first)
    - day first, as in the UK: `03/02/2001`, `3/2/2001`, `03-02-2001`, `3.2.2001` are all
      3 February 2001 (never the US month-first reading)
    - a month name, English, full or three letters: `3 Feb 2001`, `3rd February 2001`,
      `03-Feb-2001`, `Feb 3, 2001`
    The year must have four digits (`03/02/01` is None: the century would be a guess) and the
    date must exist (`2001-02-30` is None). Whether a date is plausible (not in the future, not
    before 1900) is for the caller to decide.
    """
    if not text:
        return None
    value = " ".join(str(text).strip().casefold().split())
    for pattern, order in _DATE_FORMATS:
        found = pattern.fullmatch(value)
        if found:
            return _make_date(found.groups(), order)
    return None


def _make_date(parts: tuple[str, ...], order: str) -> date | None:
    """The date of three matched parts in `order` (y, m, d; M a month name), or None."""
    fields = dict(zip(order, parts))
    month = _MONTHS.get(fields["M"]) if "M" in fields else int(fields["m"])
    if month is None:
        return None
    try:
        return date(int(fields["y"]), month, int(fields["d"]))
    except ValueError:
        return None


_UK_POSTCODE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def normalise_postcode(text: str | None) -> str:
    """Upper case, no spaces or punctuation; a UK postcode as outward + space + inward code."""
    if not text:
        return ""
    compact = _NOT_ALNUM.sub("", str(text).upper())
    uk = _UK_POSTCODE.fullmatch(compact)
    return f"{uk.group(1)} {uk.group(2)}" if uk else compact


_SEXES = {"m": "M", "male": "M", "man": "M", "boy": "M", "1": "M",
          "f": "F", "female": "F", "woman": "F", "girl": "F", "2": "F"}


def normalise_sex(text: str | None) -> str:
    """"M", "F" or "" (unknown, other, or not said). 1 and 2 are the ISO/IEC 5218 codes."""
    if not text:
        return ""
    return _SEXES.get(str(text).strip().casefold(), "")
