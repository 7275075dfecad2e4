"""From a raw identifier to the Avro ``Subject`` record an agency may publish."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from xborder.errors import InvalidRecordError
from xborder.pseudonym.detect import assert_descriptors, assert_token
from xborder.pseudonym.normalise import SUBJECT_ROLES, canonical, check_kind, person_key_of
from xborder.pseudonym.tokens import Token, Tokenizer


def pseudonymise_subject(
    tokenizer: Tokenizer,
    kind: str,
    raw_value: str,
    role: str,
    descriptors: Mapping[str, str] | None = None,
    *,
    birth_date: date | str | None = None,
    individual: str = "",
) -> dict[str, Any]:
    """The ``Subject`` dict (role, kind, token, key_id, descriptors, person_key,
    individual) for a raw identifier.

    ``raw_value`` is normalised by ``kind``: PERSON takes a national ID number or a name
    (with ``birth_date``, a full date or a year, for a stronger key), VEHICLE a plate,
    PHONE a phone number. ``person_key`` says which PERSON key the token is made from.
    The raw value goes no further than this function; descriptors that look like
    identifiers are refused. For a person with several identifiers, use
    :func:`pseudonymise_person`.
    """
    checked = _checked(kind, role, individual)
    token = tokenizer.token(checked, canonical(checked, raw_value, birth_date))
    return _subject(token, checked, raw_value, role, descriptors, birth_date, individual)


def pseudonymise_subjects(
    tokenizer: Tokenizer,
    kind: str,
    raw_value: str,
    role: str,
    descriptors: Mapping[str, str] | None = None,
    *,
    birth_date: date | str | None = None,
    individual: str = "",
    every_key: bool = True,
) -> list[dict[str, Any]]:
    """As :func:`pseudonymise_subject`, one subject per key the tokenizer still accepts
    (the active key's first), so that matching survives a key rotation: an event made
    during the transition shares the old key's token with older events and the new key's
    with newer ones. With one key (or ``every_key=False``) it is one subject."""
    if not every_key:
        return [
            pseudonymise_subject(
                tokenizer, kind, raw_value, role, descriptors,
                birth_date=birth_date, individual=individual,
            )
        ]  # fmt: skip
    checked = _checked(kind, role, individual)
    tokens = tokenizer.tokens_for_lookup(checked, canonical(checked, raw_value, birth_date))
    return [
        _subject(token, checked, raw_value, role, descriptors, birth_date, individual)
        for token in tokens
    ]


def _checked(kind: str, role: str, individual: str) -> str:
    """The subject kind, checked with the role and the individual label."""
    checked = check_kind(kind)
    if role not in SUBJECT_ROLES:
        raise InvalidRecordError(f"subject role {role!r} is not one of {', '.join(SUBJECT_ROLES)}")
    if not isinstance(individual, str) or len(individual) > 32:
        raise InvalidRecordError("subject individual: a short label such as 'p1' (32 at most)")
    return checked


def _subject(
    token: Token,
    kind: str,
    raw_value: str,
    role: str,
    descriptors: Mapping[str, str] | None,
    birth_date: date | str | None,
    individual: str,
) -> dict[str, Any]:
    return {
        "role": role,
        "kind": kind,
        "token": assert_token(token.token_hex, "token"),
        "key_id": token.key_id,
        "descriptors": assert_descriptors(descriptors or {}, "descriptors"),
        "person_key": person_key_of(raw_value, birth_date) if kind == "PERSON" else "UNSPECIFIED",
        "individual": individual,
    }


def pseudonymise_person(
    tokenizer: Tokenizer,
    role: str,
    *,
    national_id: str | None = None,
    name: str | None = None,
    birth_date: date | str | None = None,
    individual: str = "",
    descriptors: Mapping[str, str] | None = None,
    every_key: bool = True,
) -> list[dict[str, Any]]:
    """The PERSON subjects of one individual, by the person-key recipe: a national-ID
    token when the number is known, and a name token (with the birth date when known,
    full date preferred) when the name is known, both under one ``individual`` label
    (needed when both are sent, e.g. ``"p1"``), so that a partner's record with the same
    name but another national ID counts against the link instead of for it. Each token
    comes once per accepted key unless ``every_key`` is false (see
    :func:`pseudonymise_subjects`)."""
    if national_id is None and name is None:
        raise InvalidRecordError("person: give a national ID number, a name, or both")
    if national_id is not None and name is not None and not individual:
        raise InvalidRecordError(
            "person: with both a national ID and a name, give an individual label (e.g. 'p1') "
            "so the two tokens are known to be one person"
        )
    subjects = []
    if national_id is not None:
        subjects.extend(
            pseudonymise_subjects(
                tokenizer, "PERSON", national_id, role, descriptors,
                individual=individual, every_key=every_key,
            )
        )  # fmt: skip
    if name is not None:
        subjects.extend(
            pseudonymise_subjects(
                tokenizer, "PERSON", name, role, descriptors,
                birth_date=birth_date, individual=individual, every_key=every_key,
            )
        )  # fmt: skip
    return subjects
