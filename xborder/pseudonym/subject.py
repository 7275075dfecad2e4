"""From a raw identifier to the Avro ``Subject`` record an agency may publish."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from xborder.errors import InvalidRecordError
from xborder.pseudonym.detect import assert_descriptors, assert_token
from xborder.pseudonym.normalise import SUBJECT_ROLES, canonical, check_kind
from xborder.pseudonym.tokens import Tokenizer


def pseudonymise_subject(
    tokenizer: Tokenizer,
    kind: str,
    raw_value: str,
    role: str,
    descriptors: Mapping[str, str] | None = None,
    *,
    birth_date: date | str | None = None,
) -> dict[str, Any]:
    """The ``Subject`` dict (role, kind, token, key_id, descriptors) for a raw identifier.

    ``raw_value`` is normalised by ``kind``: PERSON takes a national ID number or a name
    (with ``birth_date`` for a stronger key), VEHICLE a plate, PHONE a phone number. The
    raw value goes no further than this function; descriptors that look like identifiers
    are refused.
    """
    checked = check_kind(kind)
    if role not in SUBJECT_ROLES:
        raise InvalidRecordError(f"subject role {role!r} is not one of {', '.join(SUBJECT_ROLES)}")
    token = tokenizer.token(checked, canonical(checked, raw_value, birth_date))
    return {
        "role": role,
        "kind": checked,
        "token": assert_token(token.token_hex, "token"),
        "key_id": token.key_id,
        "descriptors": assert_descriptors(descriptors or {}, "descriptors"),
    }
