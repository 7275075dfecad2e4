"""Pseudonymisation: raw personal identifiers become keyed tokens inside the agency.

Raw identifiers (national ID numbers, names with birth dates, phone numbers, vehicle
plates) never leave the producing agency. The producer library

1. normalises each identifier to one canonical form (:mod:`.normalise`), so every
   agency's spelling of the same identifier gives the same token;
2. tokenises it through the :class:`Tokenizer` interface (:mod:`.tokens`): today keyed
   HMAC-SHA256 with a shared, rotating key (:class:`SharedKeyTokenizer`,
   :class:`KeyRing`), or an oblivious-PRF service that holds the key so no agency does
   (:mod:`.oprf`, RFC 9497), selected by ``XBORDER_TOKENIZER__MODE``
   (:func:`tokenizer_from_settings`);
3. refuses events whose token fields or descriptors hold raw identifiers (:mod:`.detect`).

:func:`raw_forms` (:mod:`.forms`) lists the spellings of an identifier that the privacy
test looks for in topic bytes.
"""

from xborder.pseudonym.detect import (
    TOKEN_RULE,
    assert_descriptors,
    assert_subjects,
    assert_token,
    find_identifier_in_text,
    find_raw_identifier,
    identifier_kinds,
)
from xborder.pseudonym.forms import raw_forms
from xborder.pseudonym.normalise import (
    PERSON_KEYS,
    SUBJECT_KINDS,
    SUBJECT_ROLES,
    SubjectKind,
    SubjectRole,
    canonical,
    normalise_birth_date,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_plate,
    person_key,
    person_key_of,
)
from xborder.pseudonym.subject import (
    pseudonymise_person,
    pseudonymise_subject,
    pseudonymise_subjects,
)
from xborder.pseudonym.tokens import (
    MIN_KEY_BYTES,
    KeyRing,
    SharedKeyTokenizer,
    Token,
    Tokenizer,
    check_key_ids,
    key_ring_from_settings,
    token_input,
    tokenizer_from_settings,
)

__all__ = [
    "MIN_KEY_BYTES",
    "PERSON_KEYS",
    "SUBJECT_KINDS",
    "SUBJECT_ROLES",
    "TOKEN_RULE",
    "KeyRing",
    "SharedKeyTokenizer",
    "SubjectKind",
    "SubjectRole",
    "Token",
    "Tokenizer",
    "assert_descriptors",
    "assert_subjects",
    "assert_token",
    "canonical",
    "check_key_ids",
    "find_identifier_in_text",
    "find_raw_identifier",
    "identifier_kinds",
    "key_ring_from_settings",
    "normalise_birth_date",
    "normalise_name",
    "normalise_national_id",
    "normalise_phone",
    "normalise_plate",
    "person_key",
    "person_key_of",
    "pseudonymise_person",
    "pseudonymise_subject",
    "pseudonymise_subjects",
    "raw_forms",
    "token_input",
    "tokenizer_from_settings",
]
