"""Every common spelling of a raw identifier, for tests that prove none leaks.

The privacy test publishes events made from raw identifiers and then scans the bytes of
every topic for each form :func:`raw_forms` returns: the raw value, its canonical form,
digits only, with the usual groupings and separators, with ``+84``/``84``/``0`` prefixes,
in upper, lower and title case, NFC and NFD. Finding none of them is the evidence that
only tokens left the agency.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Final

from xborder.pseudonym.normalise import (
    OLD_MOBILE_PREFIXES,
    canonical,
    check_kind,
    looks_like_national_id,
    normalise_birth_date,
    normalise_name,
)

_SEPARATORS: Final = (" ", ".", "-")
_OLD_BY_NEW: Final = {new: old for old, new in OLD_MOBILE_PREFIXES.items()}


def _groupings(digits: str, sizes: range = range(2, 6), max_groups: int = 4) -> Iterator[str]:
    """``digits`` split into 2..``max_groups`` groups of ``sizes`` digits, per separator."""
    for count in range(2, max_groups + 1):
        for split in itertools.product(sizes, repeat=count):
            if sum(split) != len(digits):
                continue
            bounds = list(itertools.accumulate(split))
            groups = [digits[a:b] for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
            for separator in _SEPARATORS:
                yield separator.join(groups)


def _phone_forms(canonical_phone: str) -> Iterator[str]:
    digits = canonical_phone[1:]
    if not digits.startswith("84"):  # a foreign number in E.164
        yield from (canonical_phone, digits, "00" + digits, *_with_groupings(digits))
        return
    nationals = [digits[2:]]
    if len(nationals[0]) == 9 and nationals[0][:2] in _OLD_BY_NEW:
        # the same subscriber under the pre-2018 11-digit number
        nationals.append(_OLD_BY_NEW[nationals[0][:2]] + nationals[0][2:])
    for national in nationals:
        yield national
        yield from _with_groupings("0" + national)
        for grouped in _with_groupings(national):
            for prefix in ("+84", "84", "0084", "(+84)", "(84)", "+84 (0)"):
                yield prefix + grouped
                for separator in _SEPARATORS:
                    yield prefix + separator + grouped


def _with_groupings(digits: str) -> Iterator[str]:
    yield digits
    yield from _groupings(digits)


def _plate_forms(plate: str) -> Iterator[str]:
    province = plate[:2]
    letters = "".join(c for c in plate[2:] if c.isalpha())
    number = plate[2 + len(letters) :]
    splits = []  # (series, number): 5 digits may be a 5-digit number or digit + 4
    if len(number) in (4, 5):
        splits.append((letters, number))
    if len(number) in (5, 6):
        splits.append((letters + number[0], number[1:]))
    for series, serial in splits:
        serials = [serial, f"{serial[:3]}.{serial[3:]}"] if len(serial) == 5 else [serial]
        for first, second in itertools.product(("", "-", " ", "."), ("", "-", " ", ".")):
            for written in serials:
                form = f"{province}{first}{series}{second}{written}"
                yield from (form, form.lower())
                if "D" in series:  # the series letter may be Đ (29MĐ1-...)
                    yield form.replace("D", "Đ", 1)


def _name_forms(raw: str) -> Iterator[str]:
    cleaned = " ".join(unicodedata.normalize("NFC", raw).split())
    folded = normalise_name(raw)
    for name in (cleaned, folded):
        for cased in (name, name.lower(), name.upper(), name.title()):
            for form in (cased, cased.replace(" ", "")):
                yield unicodedata.normalize("NFC", form)
                yield unicodedata.normalize("NFD", form)


def _date_forms(birth_date: date | str) -> Iterator[str]:
    iso = normalise_birth_date(birth_date)
    yield iso
    if len(iso) == 4:
        return
    year, month, day = iso.split("-")
    yield year + month + day
    for separator in ("/", "-", "."):
        for d, m in ((day, month), (day.lstrip("0"), month.lstrip("0"))):
            yield f"{d}{separator}{m}{separator}{year}"
        yield f"{year}{separator}{month}{separator}{day}"


def raw_forms(kind: str, raw: str, birth_date: date | str | None = None) -> set[str]:
    """Every normalised and common textual form of ``raw`` (a ``kind`` identifier).

    For PERSON with a name, ``birth_date`` adds the date's spellings. Raises
    ``InvalidRecordError`` when ``raw`` is not a valid identifier of ``kind``.
    """
    checked = check_kind(kind)
    value = canonical(checked, raw, birth_date)
    forms: set[str] = {raw, raw.strip(), value}
    if checked == "PHONE":
        _add(forms, _phone_forms(value))
    elif checked == "VEHICLE":
        _add(forms, _plate_forms(value))
    elif looks_like_national_id(raw):
        _add(forms, _with_groupings(value))
    else:
        _add(forms, _name_forms(raw))
        if birth_date is not None:
            _add(forms, _date_forms(birth_date))
    return forms


def _add(forms: set[str], more: Iterable[str]) -> None:
    forms.update(form for form in more if form)
