"""Raw identifier detection: the producer's last guard before an event leaves the agency.

A token field must hold a 64-hex token from :mod:`xborder.pseudonym`. When it holds
anything else, :func:`find_raw_identifier` says what it looks like (a phone number, a
plate, a national ID number, a name) so the producer can refuse the event with a message
that tells the caller what went wrong, without repeating the value. Descriptors are
free-form but must not identify anyone: :func:`find_identifier_in_text` finds plates,
phone and ID numbers inside them.

:func:`find_identifiers` locates every plate, phone and national ID number in a text
(and, with ``names=True``, what reads as a Vietnamese full name), so that
:func:`check_text` can reject the text or replace each one with a marker such as
``[redacted:PHONE]`` (``XBORDER_CONTRACT__RAW_IDENTIFIERS``). :func:`masked` is how
every message quotes an input value: its kind and length, never the value.

Limits, on purpose: national ID numbers are recognised by their shape (12 digits whose
first three are a province code 001-096 followed by a century digit 0-3, or 9 digits
starting 01-39), so an amount or a reference number of that shape reads as one; a name is
recognised only as two to five capitalised words starting with a common Vietnamese
surname, and only where names are looked for (descriptor values, ids, source system),
because street, ward and commune names are often a person's name (``Nguyễn Trãi``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from xborder.errors import InvalidRecordError
from xborder.pseudonym.normalise import (
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_plate,
)
from xborder.pseudonym.tokens import TOKEN_PATTERN

TOKEN_RULE: Final = (
    "tokens must be 64 hex chars from xborder.pseudonym (raw identifiers never leave the agency)"
)

_HEX = re.compile(r"[0-9a-fA-F]+")
_INTERNATIONAL_00 = re.compile(r"00[1-9][0-9]{7,14}")
_PHONE_PUNCTUATION = re.compile(r"[\s.\-()]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WORD_BREAKS = re.compile(r"[\s,;:!?\"\u201c\u201d\u2018\u2019]+")
_WORD_EDGES = "()[]{}<>.'`"
# the longest spelling a window must cover: "(+84) 912 345 678" or "001 234 567 890"
_MAX_WINDOW_WORDS: Final = 5
# the fewest digits any identifier has: a plate is a 2-digit province plus 4-5 digits
_MIN_IDENTIFIER_DIGITS: Final = 6


def _national_id_kind(text: str) -> str:
    digits = normalise_national_id(text)
    # a CCCD starts with a province code (001-096) and a century-and-sex digit (0-3 for
    # births 1900-2099); a CMND with 01-39: most dates and amounts of that length do not
    if (len(digits) == 12 and not (1 <= int(digits[:3]) <= 96 and digits[3] <= "3")) or (
        len(digits) == 9 and not "01" <= digits[:2] <= "39"
    ):
        raise InvalidRecordError("national ID number: not a province code")
    return (
        "a 12-digit national ID number (CCCD)"
        if len(digits) == 12
        else "a 9-digit national ID number (CMND)"
    )


def _phone(text: str) -> str:
    try:
        return normalise_phone(text)
    except InvalidRecordError:
        # normalise_phone refuses "00855..." for the + spelling; it is a phone all the same
        if _INTERNATIONAL_00.fullmatch(_PHONE_PUNCTUATION.sub("", text)):
            return text
        raise


_DETECTORS: Final[tuple[tuple[Callable[[str], Any], str | None], ...]] = (
    (_phone, "a phone number"),
    (_national_id_kind, None),
    (normalise_plate, "a vehicle plate"),
)


def identifier_kinds(text: str) -> list[str]:
    """What ``text`` as a whole reads as: phone number, national ID number, vehicle plate."""
    found = []
    for detector, description in _DETECTORS:
        try:
            result = detector(text)
        except InvalidRecordError:
            continue
        found.append(description or str(result))
    return found


def find_identifier_in_text(text: str) -> str | None:
    """Describe the first plate, phone or national ID number written inside ``text``."""
    if sum(map(str.isdigit, text)) < _MIN_IDENTIFIER_DIGITS:
        return None  # fast path: every plate, phone and ID number has at least six digits
    kinds = identifier_kinds(text)
    if kinds:
        return "looks like " + " or ".join(kinds)
    words = [w.strip(_WORD_EDGES) for w in _WORD_BREAKS.split(text)]
    words = [w for w in words if w]
    for start in range(len(words)):
        # identifiers written across several words ("0912 345 678"), longest first
        for size in range(min(_MAX_WINDOW_WORDS, len(words) - start), 0, -1):
            kinds = identifier_kinds(" ".join(words[start : start + size]))
            if kinds:
                return "contains what looks like " + " or ".join(kinds)
    found = find_identifiers(text)  # glued to letters or hyphens: "vu0912345678"
    return f"contains what looks like {found[0].description}" if found else None


def find_raw_identifier(text: str) -> str | None:
    """``None`` for a 64-hex token, else a description of what ``text`` looks like instead."""
    if TOKEN_PATTERN.fullmatch(text):
        return None
    stripped = text.strip()
    if not stripped:
        return "is empty"
    embedded = find_identifier_in_text(stripped)
    if embedded:
        return embedded
    if TOKEN_PATTERN.fullmatch(stripped):
        return "has white space around the token"
    if _HEX.fullmatch(stripped):
        if len(stripped) == 64:
            return "is upper-case hex; tokens are lower-case"
        return f"is {len(stripped)} hex characters, not 64"
    if _EMAIL.fullmatch(stripped):
        return "looks like an e-mail address"
    if len(stripped.split()) >= 2:
        try:
            normalise_name(stripped)
        except InvalidRecordError:
            pass
        else:
            return "looks like a person's name"
    return "is not a token"


def assert_token(value: object, field_path: str) -> str:
    """Return ``value`` if it is a token; else raise ``InvalidRecordError`` naming the field."""
    if not isinstance(value, str):
        raise InvalidRecordError(
            f"{field_path}: expected a token string, got {type(value).__name__}; {TOKEN_RULE}"
        )
    description = find_raw_identifier(value)
    if description is not None:
        raise InvalidRecordError(f"{field_path}: {description}; {TOKEN_RULE}", "raw-identifier")
    return value


def assert_descriptors(descriptors: Mapping[str, Any], field_path: str) -> dict[str, str]:
    """Return ``descriptors`` as a dict if no key or value identifies anyone, else raise."""
    checked: dict[str, str] = {}
    for key, value in descriptors.items():
        where = f"{field_path}[{quoted(key)}]"
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRecordError(f"{where}: descriptor keys and values must be text")
        description = find_identifier_in_text(key) or find_identifier_in_text(value)
        if description is not None:
            raise InvalidRecordError(
                f"{where}: {description}; descriptors must not identify anyone "
                "(tokenise the identifier as a subject of its own)",
                "raw-identifier",
            )
        checked[key] = value
    return checked


def assert_subjects(subjects: Sequence[Mapping[str, Any]], field_path: str = "subjects") -> None:
    """Check every subject's token and descriptors as the producer does before sending."""
    for index, subject in enumerate(subjects):
        where = f"{field_path}[{index}]"
        assert_token(subject.get("token"), f"{where}.token")
        assert_descriptors(subject.get("descriptors") or {}, f"{where}.descriptors")


# -- locating, redacting and masking ------------------------------------------------------

RawIdentifierPolicy = Literal["reject", "redact"]
"""What a check does with a raw identifier in free text (``XBORDER_CONTRACT__RAW_IDENTIFIERS``)."""
RAW_IDENTIFIER: Final = "raw-identifier"
"""Dead-letter reason of a message refused for a raw identifier (it goes to quarantine)."""

_LABELS: Final = (("phone", "PHONE"), ("national ID", "NATIONAL_ID"), ("plate", "PLATE"))
_TEXT_WORD = re.compile(r"[^\s,;:!?\"\u201c\u201d\u2018\u2019_|=&*]+")
# what a word of a written identifier may hold: digits, plate letters, separators
_IDENTIFIER_WORD = re.compile(r"[0-9A-Za-zĐđ.+()\-]+")
_CANDIDATE = re.compile(r"[0-9A-Za-zĐđ.+()\s\-]+")
_PLATE_SHAPE = re.compile(r"[1-9][0-9][A-ZĐÐ]{1,2}[0-9]{4,6}")
"""A plate without separators (``65B123456``, ``29MĐ112345``)."""
_MAX_GROUP: Final = 5
_SPACE = re.compile(r"\s")
_SPACE_BEFORE = re.compile(r"\s(?=\S*$)")
"""The last white space before a position (searched with an end bound)."""
_LETTER = re.compile(r"[^\W\d_]")
_LAST_LETTER = re.compile(r"[^\W\d_][\W\d_]*$")
_NINE_DIGITS = re.compile(r"\d(?:[\s.()+]*\d){8,}")
_LOOSE_PLATE = re.compile(r"[1-9][0-9][\s.\-]*[A-ZĐÐ]{1,2}[\s.\-]*[0-9]?(?:[\s.\-]*[0-9]){4,5}")
_DIGIT_SEPARATORS: Final = " .()+"
_COUNTRY_CODE = re.compile(r"^\s*\(?(?:\+|00)?84\)?")
"""Most digits between two hyphens of a written identifier (``0912-345-678``)."""
_DIGIT_RUN = re.compile(r"\+?\d(?:[\d.\-() ]*\d)?")
_GLUED_PLATE = re.compile(
    r"(?<![0-9])[1-9][0-9][\-. ]?[A-ZĐ]{1,2}[0-9]?[\-. ]?[0-9]{3}[\-. ]?[0-9]{1,2}(?![0-9])"
)
# the most common Vietnamese family names (with Khmer and Hoa ones of the Mekong delta),
# case-folded without diacritics: about 95% of the population carries one of them
_SURNAMES: Final = frozenset(
    "nguyen tran le pham hoang huynh phan vu vo dang bui do ho ngo duong ly trinh dinh lam "
    "mai truong cao quach ha luong luu thai ta chau tang kieu doan trieu ton tong than vuong "
    "mac quan lai thach danh kim la lu giang diep tieu au hua khuu van".split()
)
_MAX_NAME_WORDS: Final = 5
# six digits, each at most four characters from the next ("+84 (0) 912", "65 B 1-234")
_DENSE = re.compile(r"\d(?:\D{0,4}\d){5,}")
_HEX_ID = re.compile(
    r"(?<![0-9A-Za-z])(?=[0-9-]*[A-Fa-f])(?:[0-9A-Fa-f]{8}(?:-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}"
    r"|[0-9A-Fa-f]{16,})(?![0-9A-Za-z])"
)
"""A uuid (with or without hyphens, either case) or a hex hash: never a raw identifier."""
_MAX_WHOLE: Final = 40
"""Longest text checked as one identifier as a whole (the longest spelling is ~25)."""


@dataclass(frozen=True)
class Found:
    """One raw identifier inside a text: where it is and what it looks like."""

    start: int
    end: int
    label: str
    """PHONE, NATIONAL_ID, PLATE or NAME (the marker's label)."""
    description: str


def _kind_of(text: str) -> tuple[str, str] | None:
    """(label, description) of what ``text`` as a whole reads as, or None."""
    compact = _PHONE_PUNCTUATION.sub("", text)
    # the shapes the normalisers accept, checked first: they cost microseconds each, and
    # most windows of a text are none of them
    if not (
        compact.lstrip("+").isdigit() and 9 <= len(compact) <= 16
    ) and not _PLATE_SHAPE.fullmatch(compact.upper()):
        return None
    if "-" in text and any(
        _digits(group) > _MAX_GROUP and group.strip(_DIGIT_SEPARATORS).isdigit()
        for group in _COUNTRY_CODE.sub("", text).split("-")
    ):
        return None  # "20260319-0018", "0912-345678": dates and sequence numbers in ids
    for description in identifier_kinds(text):
        label = next((lab for word, lab in _LABELS if word in description), "IDENTIFIER")
        return label, description
    if len(compact) == 9 and compact.isdigit() and compact[0] in "5789":
        return "PHONE", "a mobile number without its leading 0"
    return None


def _words(text: str) -> list[tuple[int, int, str]]:
    words = []
    for match in _TEXT_WORD.finditer(text):
        start = match.start()
        word = match.group()
        stripped = word.lstrip(_WORD_EDGES + "-")
        start += len(word) - len(stripped)
        word = stripped.rstrip(_WORD_EDGES + "-")
        if word:
            words.append((start, start + len(word), word))
    return words


def _digits(text: str) -> int:
    return sum(map(str.isdigit, text))


def find_identifiers(text: str, names: bool = False) -> list[Found]:
    """Every plate, phone and national ID number in ``text`` (with ``names``, also what
    reads as a Vietnamese full name), in order, not overlapping."""
    if not _DENSE.search(text) and (not names or text == text.lower()):
        return []  # most texts: fewer than six digits close together, no capital letter
    if len(text) <= _MAX_CACHED:
        return list(_find_cached(text, names))
    return _find(text, names)


_MAX_CACHED: Final = 128
"""Texts up to this length are remembered: ids, keys, source systems, units, descriptors
and tags repeat across an incident's events and a batch (an id is checked as the event's
``incident_id`` and again as its Kafka key)."""


@functools.lru_cache(maxsize=16384)
def _find_cached(text: str, names: bool) -> tuple[Found, ...]:
    return tuple(_find(text, names))


def _find(text: str, names: bool) -> list[Found]:
    found: list[Found] = []
    if _HEX_ID.search(text):  # uuids and hashes are full of plate-like stretches
        text = _HEX_ID.sub(lambda m: " " * len(m.group()), text)
    stripped = text.strip()
    whole = _kind_of(stripped) if len(stripped) <= _MAX_WHOLE and _dense(stripped) else None
    if whole is not None:
        found.append(Found(0, len(text), *whole))
    else:
        # only the digit-dense stretches can hold an identifier: scanning just them keeps
        # a narrative's cost in microseconds
        for match in _DENSE.finditer(text):
            start, end = match.span()
            before = _SPACE_BEFORE.search(text, 0, start)
            after = _SPACE.search(text, end)
            _scan(text, before.end() if before else 0, after.start() if after else len(text), found)
    if names:
        for start, end in _name_spans(text):
            _add_new(found, start, end, ("NAME", "a person's name"))
    return sorted(found, key=lambda f: f.start)


def _dense(text: str) -> bool:
    return _DENSE.search(text) is not None


def _may_hold(region: str) -> bool:
    """Whether any candidate :func:`_scan` checks could read as an identifier: a plate
    shape, nine digits without a hyphen between them, or hyphen-joined groups of at most
    five digits each (after a country code) with nine in all. Cheap, and it rules out the
    usual ids (``CANTHO-20261201-0000-c8949e``) before the costly windows."""
    if _LOOSE_PLATE.search(region.upper()):
        return True
    total = 0
    for group in region.split("-"):
        pure = group.strip(_DIGIT_SEPARATORS)
        if _NINE_DIGITS.search(group):
            return True
        digits = _digits(group)
        if pure.isdigit() and digits > _MAX_GROUP:
            # a long group ends a hyphenated candidate; only a country code may start one
            code = _COUNTRY_CODE.match(group)
            total = digits - len(code.group().strip(" ()+")) if code else 0
            if total > _MAX_GROUP:
                total = 0
            continue
        first = _LETTER.search(group)
        if first:  # a candidate runs up to the first letter and on from the last one
            if total + _digits(group[: first.start()]) >= 9:
                return True
            last = _LAST_LETTER.search(group)
            total = _digits(group[last.start() :]) if last else 0
            continue
        total = total + digits if digits else 0
        if total >= 9:
            return True
    return False


def _scan(text: str, start: int, end: int, found: list[Found]) -> None:
    """Find the identifiers in ``text[start:end]`` (a digit-dense stretch)."""
    region = text[start:end]
    if not _may_hold(region):
        return
    words = [
        (a + start, b + start, w) for word in _words(region) for a, b, w in _split_hyphens(word)
    ]
    usable = [_IDENTIFIER_WORD.fullmatch(w) is not None for _, _, w in words]
    counts = [_digits(w) for _, _, w in words]
    index = 0
    while index < len(words):
        if not (usable[index] and counts[index]):
            index += 1
            continue
        for size in range(min(_MAX_WINDOW_WORDS, len(words) - index), 0, -1):
            last = index + size - 1
            if not (counts[last] and all(usable[index : last + 1])):
                continue
            if sum(counts[index : last + 1]) < _MIN_IDENTIFIER_DIGITS:
                continue
            joined = text[words[index][0] : words[last][1]]
            kind = _kind_of(joined) if _CANDIDATE.fullmatch(joined) else None
            if kind is not None:
                _add_new(found, words[index][0], words[last][1], kind)
                index += size
                break
        else:
            index += 1
    # identifiers glued to letters or hyphens ("vu0912345678", "BKS65B123456", "-01")
    for match in _DIGIT_RUN.finditer(region):
        run = match.group()
        if _digits(run) < _MIN_IDENTIFIER_DIGITS:
            continue
        glued = (match.start() > 0 and region[match.start() - 1].isalnum()) + (
            match.end() < len(region) and region[match.end()].isalnum()
        )
        if glued == 2 or (glued and "-" in run):
            continue  # "0135-54255d" in an id: the end of a date-sequence-hex id
        cuts = [0] + [i + 1 for i, c in enumerate(run) if c == "-"]
        pieces = [(0, len(run))]
        pieces += [(0, i - 1) for i in cuts[1:]] + [(i, len(run)) for i in cuts[1:]]
        for a, b in pieces:
            kind = _kind_of(run[a:b])
            if kind is not None:
                _add_new(found, start + match.start() + a, start + match.start() + b, kind)
                break
    # upper case only: lower-case hex (tokens, uuids) is full of plate-like stretches
    for match in _GLUED_PLATE.finditer(region):
        _add_new(found, start + match.start(), start + match.end(), _kind_of(match.group()))


def _split_hyphens(word: tuple[int, int, str]) -> list[tuple[int, int, str]]:
    """A word joined by hyphens splits when a part is letters only (``CT-0912345678-2026``)
    and it does not read as an identifier as a whole; a plate (``65B1-234.56``) or a
    timestamp (``2026-11-30T23``) stays one word."""
    start, _, text = word
    if "-" not in text or not any(p.isalpha() for p in text.split("-")):
        return [word]
    if _kind_of(text) is not None:
        return [word]
    parts = []
    offset = start
    for part in text.split("-"):
        if part:
            parts.append((offset, offset + len(part), part))
        offset += len(part) + 1
    return parts


def _add_new(found: list[Found], start: int, end: int, kind: tuple[str, str] | None) -> None:
    if kind is None or any(f.start < end and start < f.end for f in found):
        return
    found.append(Found(start, end, *kind))


def _name_spans(text: str) -> list[tuple[int, int]]:
    """Two to five capitalised words, the first a common Vietnamese surname."""
    words = [w for w in _words(text) if w[2].isalpha()] if text else []
    spans = []
    index = 0
    while index < len(words):
        start, _, word = words[index]
        run = 1
        if word[0].isupper():
            while (
                index + run < len(words)
                and run < _MAX_NAME_WORDS
                and words[index + run][2][0].isupper()
                # adjacent: only white space between the words
                and not text[words[index + run - 1][1] : words[index + run][0]].strip()
            ):
                run += 1
            # the surname is normalised (the costly part) only for a run of two or more
            if run >= 2 and _folded(word) in _SURNAMES:
                spans.append((start, words[index + run - 1][1]))
                index += run
                continue
        index += 1
    return spans


def _folded(word: str) -> str:
    try:
        return normalise_name(word)
    except InvalidRecordError:
        return ""


def redact(text: str, found: Sequence[Found]) -> str:
    """``text`` with each found identifier replaced by ``[redacted:<LABEL>]``."""
    parts = []
    position = 0
    for item in found:
        parts.append(text[position : item.start])
        parts.append(f"[redacted:{item.label}]")
        position = item.end
    parts.append(text[position:])
    return "".join(parts)


def masked(value: object) -> str:
    """How a message quotes an input value: its kind and length, never the value itself
    (a raw identifier quoted in an error would leak through logs and dead letters)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"<text, {len(value)} chars>"
    if isinstance(value, bytes | bytearray):
        return f"<bytes, {len(value)}>"
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int | float):
        return f"<number, {len(str(value))} digits>"
    return f"<{type(value).__name__}>"


def check_text(
    value: str,
    field_path: str,
    policy: RawIdentifierPolicy = "reject",
    *,
    names: bool = False,
    rule: str = "free text must not identify anyone",
) -> str:
    """``value`` if it holds no raw identifier; else, by ``policy``, ``value`` with each one
    replaced by a marker (``redact``) or ``InvalidRecordError`` with reason
    ``raw-identifier`` and a message that never repeats the value (``reject``)."""
    found = find_identifiers(value, names=names)
    if not found:
        return value
    if policy == "redact":
        return redact(value, found)
    raise InvalidRecordError(
        f"{field_path}: contains what looks like {found[0].description} "
        f"({len(found)} found in {len(value)} chars, not shown); {rule}",
        RAW_IDENTIFIER,
    )


def quoted(value: object) -> str:
    """``repr(value)`` when the detector finds no identifier in it (``'MURDER'``,
    ``'yesterday'``: the producer's schema errors stay readable), else :func:`masked`."""
    text = repr(value)
    if len(text) > _MAX_WHOLE or find_identifiers(str(value), names=True):
        return masked(value)
    return text
