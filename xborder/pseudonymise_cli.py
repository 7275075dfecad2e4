"""``xborder pseudonymise``: events with raw identifiers in, events with tokens out.

Each input line is one event (JSON) whose ``subjects`` carry raw identifiers::

    {"kind": "VEHICLE", "raw": "65B1-234.56", "role": "SUSPECT"}
    {"kind": "PHONE", "raw": "0912 345 678", "role": "SUSPECT"}
    {"kind": "PERSON", "national_id": "079 203 001 234", "role": "SUSPECT"}
    {"kind": "PERSON", "name": "Nguyen Van A", "birth_date": "12/03/1990", "role": "SUSPECT"}
    {"kind": "PERSON", "national_id": "079203001234", "name": "Nguyen Van A",
     "birth_date": "1990-03-12", "role": "SUSPECT"}

Each entry may also hold ``descriptors`` (non-identifying strings). Each identifier
becomes its own token: a person entry with both a national ID and a name (with its birth
date, as precise as known) gives two PERSON subjects with one ``individual`` label (the
entry's ``individual``, else ``p1``, ``p2``, ... within the event), so that a partner's
record with the same name but another national ID counts against a link. An entry that
already holds ``token`` and ``key_id`` passes unchanged. The output line is the same
event, every other field untouched, with each entry replaced by its ``Subject`` records
(role, kind, token, key_id, descriptors, person_key, individual), ready for
``xborder publish``.

A line that cannot be pseudonymised is reported on stderr with its line number (never
with the raw value) and left out of the output; the other lines go on. Normalisation and
tokens are :mod:`xborder.pseudonym`'s, reached through :func:`subjects_from_raw` only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

from xborder.errors import InvalidRecordError
from xborder.pseudonym import (
    Tokenizer,
    normalise_name,
    normalise_national_id,
    pseudonymise_person,
    pseudonymise_subjects,
)
from xborder.publish_cli import decode_line

IDENTIFIER_FIELDS: Final = {
    "VEHICLE": frozenset({"raw"}),
    "PHONE": frozenset({"raw"}),
    "PERSON": frozenset({"national_id", "name", "birth_date", "individual"}),
}
"""Fields each kind of raw entry takes besides kind, role and descriptors."""
COMMON_FIELDS: Final = frozenset({"kind", "role", "descriptors"})
TOKEN_FIELDS: Final = frozenset({"token", "key_id", "person_key", "individual"})
_HINT: Final = (
    'expected {"kind": "VEHICLE"|"PHONE", "raw": ...} or {"kind": "PERSON", '
    '"national_id": ..., "name": ..., "birth_date": ...} (national ID, name or both), '
    'each with "role"'
)


def subjects_from_raw(
    tokenizer: Tokenizer, entry: Mapping[str, Any], label: str = ""
) -> list[dict[str, Any]]:
    """The ``Subject`` records of one raw entry (see the module doc for its forms).

    A PERSON entry with both a national ID and a name gives two subjects under one
    ``individual`` label: the entry's own, else ``label``. Raises InvalidRecordError
    naming what is wrong, never repeating the raw value.
    """
    kind, role = entry.get("kind"), entry.get("role")
    if not isinstance(kind, str) or kind not in IDENTIFIER_FIELDS:
        raise InvalidRecordError(f"kind must be one of {', '.join(IDENTIFIER_FIELDS)}; {_HINT}")
    if not isinstance(role, str):
        raise InvalidRecordError("role is missing (SUSPECT, VICTIM, WITNESS or OTHER)")
    descriptors = entry.get("descriptors")
    if descriptors is not None and not isinstance(descriptors, Mapping):
        raise InvalidRecordError("descriptors must be an object of strings")
    given = set(entry) - COMMON_FIELDS
    if "token" in given and given <= TOKEN_FIELDS:
        return [dict(entry)]  # already a Subject record: publish checks it
    unknown = given - IDENTIFIER_FIELDS[kind]
    if unknown:
        raise InvalidRecordError(f"unknown field(s) {', '.join(sorted(unknown))}; {_HINT}")
    for name in given:
        if not isinstance(entry[name], str):
            raise InvalidRecordError(f"{name} must be text")
    if kind != "PERSON":
        if "raw" not in given:
            raise InvalidRecordError(f"a {kind} entry needs raw; {_HINT}")
        return pseudonymise_subjects(tokenizer, kind, entry["raw"], role, descriptors)
    return _person(tokenizer, entry, role, descriptors, label)


def _person(
    tokenizer: Tokenizer,
    entry: Mapping[str, Any],
    role: str,
    descriptors: Mapping[str, str] | None,
    label: str,
) -> list[dict[str, Any]]:
    national_id, name = entry.get("national_id"), entry.get("name")
    if national_id is None and name is None:
        raise InvalidRecordError(f"a PERSON entry needs national_id, name or both; {_HINT}")
    if name is None and "birth_date" in entry:
        raise InvalidRecordError("birth_date goes with a name (a national ID stands alone)")
    if national_id is not None:
        # explicit fields: a national ID is never read as a name, nor a name as an ID
        national_id = normalise_national_id(national_id)
    if name is not None:
        normalise_name(name)  # a name of digits is refused, not taken for a national ID
    individual = entry.get("individual") or (label if national_id and name else "")
    return pseudonymise_person(
        tokenizer,
        role,
        national_id=national_id,
        name=name,
        birth_date=entry.get("birth_date"),
        individual=individual,
        descriptors=descriptors,
    )


def pseudonymise_event(tokenizer: Tokenizer, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with each raw entry of ``subjects`` replaced by its Subject records."""
    subjects = event.get("subjects")
    if subjects is None:
        return event
    if not isinstance(subjects, list):
        raise InvalidRecordError("subjects must be a list")
    taken = {e.get("individual") for e in subjects if isinstance(e, Mapping)}
    labels = (f"p{n}" for n in itertools.count(1) if f"p{n}" not in taken)
    out = []
    for n, entry in enumerate(subjects):
        if not isinstance(entry, Mapping):
            raise InvalidRecordError(f"subjects[{n}]: must be an object; {_HINT}")
        try:
            both = entry.get("national_id") is not None and entry.get("name") is not None
            label = next(labels) if both and not entry.get("individual") else ""
            out.extend(subjects_from_raw(tokenizer, entry, label))
        except InvalidRecordError as exc:
            kind = entry.get("kind")
            shown = f" ({kind})" if isinstance(kind, str) and kind in IDENTIFIER_FIELDS else ""
            raise InvalidRecordError(f"subjects[{n}]{shown}: {exc}") from exc
    return {**event, "subjects": out}


@dataclass
class PseudonymiseSummary:
    """What one run did."""

    lines: int = 0
    written: int = 0
    failed: int = 0
    subjects: int = 0

    def line(self) -> str:
        return (
            f"pseudonymised {self.written} events ({self.subjects} subjects), "
            f"{self.failed} lines failed"
        )


def pseudonymise_lines(
    tokenizer: Tokenizer, lines: Iterable[bytes], source: str, out: TextIO, err: TextIO
) -> PseudonymiseSummary:
    """Pseudonymise each JSON line to ``out``; report each failed line on ``err``."""
    summary = PseudonymiseSummary()
    for number, line in enumerate(lines, start=1):
        summary.lines = number
        if not line.strip():
            continue
        try:
            event = pseudonymise_event(tokenizer, decode_line(line))
        except InvalidRecordError as exc:
            summary.failed += 1
            err.write(f"{source}:{number}: {exc}\n")
            continue
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
        summary.written += 1
        summary.subjects += len(event.get("subjects") or ())
    return summary
