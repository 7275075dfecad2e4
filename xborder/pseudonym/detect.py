"""Raw identifier detection: the producer's last guard before an event leaves the agency.

A token field must hold a 64-hex token from :mod:`xborder.pseudonym`. When it holds
anything else, :func:`find_raw_identifier` says what it looks like (a phone number, a
plate, a national ID number, a name) so the producer can refuse the event with a message
that tells the caller what went wrong, without repeating the value. Descriptors are
free-form but must not identify anyone: :func:`find_identifier_in_text` finds plates,
phone and ID numbers inside them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

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
    return None


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
        where = f"{field_path}[{key!r}]"
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
