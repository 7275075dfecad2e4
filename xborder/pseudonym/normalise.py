"""Normalisers: one canonical string per identifier, whatever the spelling.

Two agencies must produce the same token for the same person, vehicle or phone, so every
identifier is reduced to one canonical form before it is tokenised. Each normaliser is a
pure function that returns that form or raises :class:`InvalidRecordError` naming the
kind of input and what is wrong with it. Messages never repeat the raw value: they may
be logged, and raw identifiers stay inside the agency.

Canonical forms:

- person name: case-folded, diacritics on Latin letters removed (``đ`` -> ``d``),
  whitespace collapsed: ``"Nguyễn  Văn Ánh"`` -> ``"nguyen van anh"``;
- person key: name, then ``|`` and the birth date (``YYYY-MM-DD`` or a year ``YYYY``);
- national ID number: digits only, 12 (CCCD) or 9 (CMND);
- phone number: ``+84`` and the national number without trunk ``0`` (9 digits for mobiles,
  10 for fixed lines; pre-2018 11-digit mobiles mapped to their new numbers); numbers
  written with another country code keep it (E.164, ``+855...``);
- vehicle plate: upper-case letters and digits, no separators: ``"65B1-234.56"`` ->
  ``"65B123456"``.

Names hold letters only and national ID numbers digits only, so PERSON values from the
two never collide.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Final, Literal, cast, get_args

from xborder.errors import InvalidRecordError

SubjectKind = Literal["PERSON", "VEHICLE", "PHONE"]
"""What a token identifies (the Avro ``SubjectKind`` enum)."""

SubjectRole = Literal["SUSPECT", "VICTIM", "WITNESS", "OTHER"]
"""Role of a subject in an incident (the Avro ``SubjectRole`` enum)."""

SUBJECT_KINDS: Final[tuple[str, ...]] = get_args(SubjectKind)
SUBJECT_ROLES: Final[tuple[str, ...]] = get_args(SubjectRole)

# Characters that may separate digit or letter groups in IDs, phones and plates,
# including the typographic dashes word processors substitute.
_SEPARATORS = re.compile(r"[\s.\-\u2010-\u2015\u2212]+")
_PHONE_SEPARATORS = re.compile(r"[\s.\-\u2010-\u2015\u2212()]+")
# Letters that look like Vietnamese đ but do not decompose under NFD (Ð is often typed
# for Đ); all are case-folded before this table applies.
_D_WITH_STROKE = str.maketrans({"đ": "d", "ð": "d", "ɖ": "d"})
_APOSTROPHES = re.compile(r"['`\u2018\u2019\u02bc\u02bb]")
_NAME_SEPARATORS = re.compile(r"[\-\u2010-\u2015_]")

# Pre-2018 11-digit mobile prefixes (national number without the trunk 0) and the
# prefixes the subscribers kept after the 2018 conversion; the last 7 digits did not change.
OLD_MOBILE_PREFIXES: Final[dict[str, str]] = {
    # Viettel
    "162": "32", "163": "33", "164": "34", "165": "35",
    "166": "36", "167": "37", "168": "38", "169": "39",
    # MobiFone
    "120": "70", "121": "79", "122": "77", "126": "76", "128": "78",
    # VinaPhone
    "123": "83", "124": "84", "125": "85", "127": "81", "129": "82",
    # Vietnamobile
    "186": "56", "188": "58",
    # Gmobile
    "199": "59",
}  # fmt: skip
_MOBILE_LEADING_DIGITS: Final = "35789"

_DIGITS_AND_SEPARATORS = re.compile(r"[0-9\s.\-\u2010-\u2015\u2212]+")
_PLATE_SHAPE = re.compile(r"([0-9]*)([A-Z]*)([0-9]*)(.*)")
_ISO_DATE = re.compile(r"([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})")
_DAY_FIRST_DATE = re.compile(r"([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})")
_YEAR = re.compile(r"[0-9]{4}")
_MIN_BIRTH_YEAR: Final = 1900


def _text(value: object, what: str) -> str:
    """``value`` as NFKC text (full-width digits and letters folded), or a clear error."""
    if not isinstance(value, str):
        raise InvalidRecordError(f"{what}: expected text, got {type(value).__name__}")
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise InvalidRecordError(f"{what}: is empty")
    return text


def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN ")


def normalise_name(name: str) -> str:
    """Canonical person name: case-folded, Latin diacritics removed, whitespace collapsed.

    NFC and NFD input give the same result. Marks on non-Latin letters (for example Khmer
    vowel signs) are kept, because there they are part of the letter, not an accent.
    Hyphens count as spaces and apostrophes are dropped (``H'Hen`` -> ``hhen``).
    """
    text = _text(name, "person name").casefold().translate(_D_WITH_STROKE)
    text = _NAME_SEPARATORS.sub(" ", _APOSTROPHES.sub("", text))
    kept: list[str] = []
    base = ""
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.category(char).startswith("M"):
            # an accent on a Latin letter goes; a mark on another script is the letter
            if base.isalpha() and not _is_latin(base):
                kept.append(char)
            continue
        base = char
        if char.isspace() or unicodedata.category(char).startswith("L"):
            kept.append(char)
        elif char.isdigit():
            raise InvalidRecordError(
                "person name: contains a digit; a name holds letters only "
                "(give national ID numbers to normalise_national_id)"
            )
        else:
            raise InvalidRecordError(
                f"person name: contains {char!r}; a name holds letters, spaces, "
                "hyphens and apostrophes"
            )
    folded = " ".join("".join(kept).split())
    if not folded:
        raise InvalidRecordError("person name: has no letters")
    return unicodedata.normalize("NFC", folded)


def normalise_birth_date(value: date | str) -> str:
    """Canonical birth date ``YYYY-MM-DD``, or ``YYYY`` when only the year is known.

    Accepts a ``date``, ISO ``YYYY-MM-DD`` (also with ``/`` or ``.``), the Vietnamese
    day-first ``DD/MM/YYYY`` (also with ``-`` or ``.``) and a bare year. A year-only key
    does not match a full-date key for the same person: use the same precision as the
    partner agencies.
    """
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return _checked_date(value.year, value.month, value.day)
    text = _text(value, "birth date")
    if _YEAR.fullmatch(text):
        year = int(text)
        if not _MIN_BIRTH_YEAR <= year <= date.today().year:
            raise InvalidRecordError(
                f"birth date: year {year} is outside {_MIN_BIRTH_YEAR}..{date.today().year}"
            )
        return text
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in match.groups())
    elif match := _DAY_FIRST_DATE.fullmatch(text):
        day, month, year = (int(part) for part in match.groups())
    else:
        raise InvalidRecordError(
            "birth date: expected YYYY-MM-DD, DD/MM/YYYY or a year YYYY "
            "(day first, as Vietnamese records write it)"
        )
    return _checked_date(year, month, day)


def _checked_date(year: int, month: int, day: int) -> str:
    try:
        born = date(year, month, day)
    except ValueError as exc:
        raise InvalidRecordError(f"birth date: not a calendar date ({exc})") from exc
    if born.year < _MIN_BIRTH_YEAR or born > date.today():
        raise InvalidRecordError(f"birth date: must lie between {_MIN_BIRTH_YEAR}-01-01 and today")
    return born.isoformat()


def person_key(name: str, birth_date: date | str | None = None) -> str:
    """Canonical PERSON value from a name and, for a much stronger key, the birth date."""
    folded = normalise_name(name)
    if birth_date is None:
        return folded
    return f"{folded}|{normalise_birth_date(birth_date)}"


def normalise_national_id(value: str) -> str:
    """Canonical national ID number: the 12 digits of a CCCD or the 9 of a CMND."""
    digits = _SEPARATORS.sub("", _text(value, "national ID number"))
    for char in digits:
        if not "0" <= char <= "9":
            raise InvalidRecordError(
                f"national ID number: contains {char!r}; only digits, spaces, dots and "
                "dashes are accepted"
            )
    if len(digits) not in (9, 12):
        raise InvalidRecordError(
            f"national ID number: has {len(digits)} digits; expected 12 (CCCD) or 9 (CMND)"
        )
    return digits


def normalise_phone(value: str) -> str:
    """Canonical phone number: ``+84`` and the national number for Vietnamese numbers.

    Accepts ``+84``, ``0084``, ``84`` and trunk ``0`` prefixes with spaces, dots, dashes
    and parentheses (``"0912 345 678"``, ``"+84 912-345-678"``, ``"84912345678"`` are
    equal). Pre-2018 11-digit mobiles (``0168...``) map to their current numbers.
    Numbers with another country code (``+855...``) are kept as E.164; a leading ``00``
    other than ``0084`` is refused, because CCCD numbers start that way too.
    """
    text = _PHONE_SEPARATORS.sub("", _text(value, "phone number"))
    international = text.startswith("+")
    digits = text[1:] if international else text
    for char in digits:
        if not "0" <= char <= "9":
            raise InvalidRecordError(
                f"phone number: contains {char!r}; only digits, a leading +, spaces, dots, "
                "dashes and parentheses are accepted"
            )
    if digits.startswith("0084") and not international:
        digits, international = digits[2:], True
    elif digits.startswith("00") and not international:
        # also the first digits of CCCD numbers; ask for the unambiguous + instead
        raise InvalidRecordError(
            "phone number: starts with 00; write international numbers with + "
            "(+855 12 345 678) and Vietnamese ones with 0 or +84"
        )
    if international:
        if not digits.startswith("84"):
            return _foreign_phone(digits)
        national = digits[2:]
        # "+84 (0)912 345 678": a trunk 0 written after the country code
        if national.startswith("0"):
            national = national[1:]
    elif digits.startswith("0"):
        national = digits[1:]
    elif digits.startswith("84"):
        national = digits[2:]
    else:
        raise InvalidRecordError(
            "phone number: has no +84, 84 or 0 prefix; write Vietnamese numbers as "
            "0912 345 678 or +84 912 345 678"
        )
    return "+84" + _vietnamese_national_number(national)


def _foreign_phone(digits: str) -> str:
    if digits.startswith("0") or not 8 <= len(digits) <= 15:
        raise InvalidRecordError(
            f"phone number: an international number has a country code and 8-15 digits "
            f"in all; this one has {len(digits)} digits"
        )
    return "+" + digits


def _vietnamese_national_number(national: str) -> str:
    if len(national) == 10 and national[:3] in OLD_MOBILE_PREFIXES:
        return OLD_MOBILE_PREFIXES[national[:3]] + national[3:]
    if len(national) == 10 and national.startswith("2"):
        return national  # fixed line: area code 2xx and the subscriber number
    if len(national) == 9 and national[0] in _MOBILE_LEADING_DIGITS:
        return national
    if len(national) == 9:
        raise InvalidRecordError(
            "phone number: a Vietnamese mobile number starts with 03, 05, 07, 08 or 09"
        )
    if len(national) == 10:
        raise InvalidRecordError(
            "phone number: a 10-digit national number must be a fixed line (area code 02x) "
            "or a pre-2018 mobile (01xx)"
        )
    raise InvalidRecordError(
        f"phone number: has {len(national)} digits after the +84/0 prefix; expected 9 "
        "(mobile, 0912 345 678) or 10 (fixed line, 0292 3812 345)"
    )


def normalise_plate(value: str) -> str:
    """Canonical vehicle plate: upper-case letters and digits, no separators.

    Shape: a 2-digit province code (11-99), 1-2 series letters, an optional series digit
    and a 4-5 digit number (``65B1-234.56``, ``51G-123.45``, ``29MĐ1-123.45``). Without
    separators ``51G12345`` may be car ``51G-123.45`` or motorbike ``51G1-2345``; both
    spellings give the same canonical value.
    """
    text = _text(value, "vehicle plate").upper().replace("Đ", "D").replace("Ð", "D")
    compact = _SEPARATORS.sub("", text)
    for char in compact:
        if not ("0" <= char <= "9" or "A" <= char <= "Z"):
            raise InvalidRecordError(
                f"vehicle plate: contains {char!r}; only letters, digits, spaces, dots and "
                "dashes are accepted"
            )
    match = _PLATE_SHAPE.fullmatch(compact)
    assert match is not None  # every alphanumeric string matches the loose shape
    province, series, number, rest = match.groups()
    example = "(e.g. 65B1-234.56 or 51G-123.45)"
    if not series and not number:
        raise InvalidRecordError(
            f"vehicle plate: has no series letters after the province code {example}"
        )
    if len(province) != 2:
        raise InvalidRecordError(
            f"vehicle plate: starts with {len(province)} digits; expected a 2-digit "
            f"province code {example}"
        )
    if not 11 <= int(province) <= 99:
        raise InvalidRecordError(
            f"vehicle plate: province code {province} does not exist; codes run 11-99"
        )
    if not 1 <= len(series) <= 2:
        raise InvalidRecordError(
            f"vehicle plate: has {len(series)} series letters after the province code; "
            f"expected 1 or 2 {example}"
        )
    if rest:
        raise InvalidRecordError(
            f"vehicle plate: has letters after the number; expected province code, series "
            f"and number {example}"
        )
    if not 4 <= len(number) <= 6:
        raise InvalidRecordError(
            f"vehicle plate: has {len(number)} digits after the series letters; expected "
            f"a 4-5 digit number, optionally preceded by a series digit {example}"
        )
    return compact


def looks_like_national_id(value: str) -> bool:
    """Whether ``value`` holds only digits and separators (so is no name)."""
    return bool(_DIGITS_AND_SEPARATORS.fullmatch(unicodedata.normalize("NFKC", value).strip()))


def check_kind(kind: str) -> SubjectKind:
    """``kind`` if it is a subject kind, else an :class:`InvalidRecordError`."""
    if kind in SUBJECT_KINDS:
        return cast(SubjectKind, kind)
    raise InvalidRecordError(f"subject kind {kind!r} is not one of {', '.join(SUBJECT_KINDS)}")


PERSON_KEYS: Final = ("NATIONAL_ID", "NAME_BIRTH_DATE", "NAME_BIRTH_YEAR", "NAME")
"""The PersonKey symbols a PERSON token can be made from, strongest first."""


def person_key_of(raw: str, birth_date: date | str | None = None) -> str:
    """Which PersonKey :func:`canonical` makes of a PERSON ``raw`` value and birth date."""
    if isinstance(raw, str) and looks_like_national_id(raw):
        return "NATIONAL_ID"
    if birth_date is None:
        return "NAME"
    return (
        "NAME_BIRTH_YEAR"
        if _YEAR.fullmatch(normalise_birth_date(birth_date))
        else "NAME_BIRTH_DATE"
    )


def canonical(kind: str, raw: str, birth_date: date | str | None = None) -> str:
    """Canonical value of ``raw`` for a subject of ``kind`` (PERSON, VEHICLE or PHONE).

    PERSON takes a national ID number (digits) or a name, with ``birth_date`` for a name;
    a national ID number identifies the person alone, so ``birth_date`` is then ignored.
    """
    checked = check_kind(kind)
    if checked == "VEHICLE":
        return normalise_plate(raw)
    if checked == "PHONE":
        return normalise_phone(raw)
    if isinstance(raw, str) and looks_like_national_id(raw):
        return normalise_national_id(raw)
    return person_key(raw, birth_date)
