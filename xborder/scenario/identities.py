"""Who and what takes part: persons, vehicles and phones, each pseudonymised once.

An entity is one real-world person, vehicle or phone. A vehicle or phone gets one raw
identifier (a Vietnamese plate; a mobile number), unique among the scenario's entities.
A person has a name and a birth date, and most (``NATIONAL_ID_SHARE``) also a 12-digit
CCCD number; the national ID and the name with full birth date are unique among persons,
except for the namesakes and twins planted on purpose (:meth:`Identities.namesake`). What
an incident records of a person follows its agency's person-key policy
(:data:`PERSON_KEY_POLICIES`): both keys of one individual, only the name with birth date
or year, or one token without a declared key (older producers). So two incidents share a
national-ID, vehicle or phone token exactly when they share the entity, and a
name-based token also when they record namesakes. Tokens are computed with the
scenario's seed-derived key; raw identifiers are kept only for group vehicles (to make
lookalike plates) and for persons' names (to make namesakes), never written.

Plates and CCCD province codes follow the agency: Can Tho 65 / 092, An Giang 67 / 089
(an agency in the config may set ``plate_codes`` and ``id_province`` to override them).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from xborder.agencies import AgenciesConfig
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, canonical
from xborder.pseudonym.tokens import MIN_KEY_BYTES, Tokenizer

_PLATE_CODES: Final[Mapping[str, tuple[str, ...]]] = {"cantho": ("65",), "angiang": ("67",)}
_ID_PROVINCES: Final[Mapping[str, tuple[str, ...]]] = {"cantho": ("092",), "angiang": ("089",)}
_OTHER_PLATE_CODES: Final = ("51", "59", "63", "64", "66", "68", "69", "83", "94", "95")
_OTHER_ID_PROVINCES: Final = ("079", "080", "082", "083", "086", "087", "091", "093", "094", "096")
_FALLBACK_PLATE_CODES: Final = ("62", "70", "71", "72", "84", "85", "86", "88")
_FALLBACK_ID_PROVINCES: Final = ("072", "074", "075", "077", "084", "085", "088", "095")
_MOTORBIKE_SERIES: Final = "ABCDEFGHKLMNPSTUVXYZ"
_CAR_SERIES: Final = "ABCDEFGH"
_MOBILE_PREFIXES: Final = tuple(
    "32 33 34 35 36 37 38 39 56 58 70 76 77 78 79 81 82 83 84 85 86 88 89 90 91 93 94 "
    "96 97 98 99".split()
)
_SURNAMES: Final = tuple(
    "Nguyễn Trần Lê Phạm Huỳnh Hoàng Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý Châu Thạch".split()
)
_MIDDLE: Final = tuple("Văn Thị Hữu Minh Ngọc Thanh Quốc Hoàng Thành Kim Đức Công Bảo".split())
_GIVEN: Final = tuple(
    "An Anh Bình Cường Dũng Giang Hải Hùng Khánh Lan Linh Long Minh Nam Phúc Quang "
    "Sơn Tâm Thảo Trung Tuấn Vy Yến Hiếu Lộc Tài Nhân Phong Trinh Hạnh Thắng Vinh Đạt "
    "Khoa Mai Ngân".split()
)
_COLOURS: Final = ("black", "white", "red", "blue", "silver", "grey", "brown")

PERSON_DESCRIPTORS: Final[tuple[dict[str, str], ...]] = tuple(
    {"age_band": band, "gender": gender}
    for band in ("under-18", "18-29", "30-44", "45-59", "60-plus")
    for gender in ("male", "female")
)
"""Every person descriptor set the generator writes (non-identifying)."""
VEHICLE_DESCRIPTORS: Final[tuple[dict[str, str], ...]] = tuple(
    {"colour": colour, "vehicle_type": kind} for colour in _COLOURS for kind in ("motorbike", "car")
)
"""Every vehicle descriptor set the generator writes (non-identifying)."""
_NO_DESCRIPTORS: Final[dict[str, str]] = {}

NATIONAL_ID_SHARE: Final = 0.8
"""Share of persons whose national ID number the reporting agencies know."""
PERSON_KEY_POLICIES: Final = ("both", "name_birth_date", "name_birth_year", "unspecified")
"""What an agency records of a person: ``both`` (the documented recipe: the national ID
when known and the name with full birth date, as two tokens of one individual),
``name_birth_date`` (an agency that knows only names and birth dates), ``name_birth_year``
(only the birth year: a weak key), ``unspecified`` (one token, the national ID when known,
else the name with birth date, without a declared key: older producers)."""
NAMESAKE_VARIANTS: Final = ("same_year", "same_date", "twin")
"""Planted person near misses: the same name born the same year (another date), the same
name and birth date, and twins (same family and middle name and birth date, another given
name); each with its own national ID."""


@dataclass(frozen=True)
class PersonFacts:
    """A person's identifiers, in canonical form (kept in memory, never written)."""

    name: str
    born: date
    national_id: str | None


def scenario_key_ring(seed: int) -> KeyRing:
    """The pseudonymisation key of a scenario: derived from the seed, so tokens repeat."""
    secret = hashlib.sha256(b"xborder/scenario/key\x00" + str(seed).encode("ascii")).digest()
    assert len(secret) >= MIN_KEY_BYTES
    return KeyRing(f"scenario-{seed}", {f"scenario-{seed}": secret}, source="scenario key")


def scenario_tokenizer(seed: int) -> SharedKeyTokenizer:
    """A shared-key tokenizer with the scenario's key."""
    return SharedKeyTokenizer(scenario_key_ring(seed))


@dataclass
class Identities:
    """The scenario's entities by integer id: kind, token and fixed descriptors."""

    tokenizer: Tokenizer
    agencies: AgenciesConfig
    reference_year: int
    kinds: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)
    descriptors: list[dict[str, str]] = field(default_factory=list)
    plates: dict[int, str] = field(default_factory=dict)
    """Raw plates of the vehicles made with ``keep_plate`` (group vehicles), in memory only."""
    persons: dict[int, PersonFacts] = field(default_factory=dict)
    """Each person's name, birth date and national ID (if known), in memory only."""
    person_keys: Mapping[str, str] = field(default_factory=dict)
    """Person-key policy per agency (:data:`PERSON_KEY_POLICIES`); ``both`` when absent."""
    _person_tokens: dict[tuple[int, str], str] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _code_cache: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def _add(self, kind: str, value: str, descriptors: dict[str, str]) -> int | None:
        """The new entity's id, or None if an entity already has this identifier.

        Tokens are keyed by kind, so equal tokens mean equal identifiers: the token is the
        uniqueness key, and no canonical value is kept.
        """
        token = self.tokenizer.token(kind, value)
        if token.token_hex in self._used:
            return None
        self._used.add(token.token_hex)
        self.kinds.append(kind)
        self.tokens.append(token.token_hex)
        self.key_ids.append(token.key_id)
        self.descriptors.append(descriptors)
        return len(self.tokens) - 1

    def _codes(
        self,
        agency: str,
        name: str,
        known: Mapping[str, tuple[str, ...]],
        fallback: tuple[str, ...],
    ) -> tuple[str, ...]:
        cached = self._code_cache.get((agency, name))
        if cached is not None:
            return cached
        extra: Any = (self.agencies.get(agency).model_extra or {}).get(name)
        if isinstance(extra, list) and extra:
            codes = tuple(str(code) for code in extra)
        elif isinstance(extra, str):
            codes = (extra,)
        elif agency in known:
            codes = tuple(known[agency])
        else:
            codes = (fallback[self.agencies.ids.index(agency) % len(fallback)],)
        self._code_cache[(agency, name)] = codes
        return codes

    def person(self, rng: random.Random, home: str) -> int:
        """A new person from ``home`` (or, one in six, another province)."""
        while True:
            born = rng.randint(self.reference_year - 70, self.reference_year - 16)
            name = f"{rng.choice(_SURNAMES)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
            birth = date(born, rng.randint(1, 12), rng.randint(1, 28))
            has_id = rng.random() < NATIONAL_ID_SHARE
            entity = self._person(rng, home, name, birth, has_id, unique_name=True)
            if entity is not None:
                return entity

    def namesake(self, rng: random.Random, person: int, variant: str) -> int:
        """A new person who shares ``person``'s name (``same_year``, ``same_date``) or, a
        twin, family and middle name and birth date; with a national ID of its own."""
        facts = self.persons[person]
        raw = facts.name
        for _ in range(200):
            if variant == "twin":
                family = raw.rsplit(" ", 1)[0]
                name = f"{family} {rng.choice([g for g in _GIVEN if not raw.endswith(g)])}"
                birth = facts.born
            elif variant == "same_date":
                name, birth = raw, facts.born
            else:
                name = raw
                birth = date(facts.born.year, rng.randint(1, 12), rng.randint(1, 28))
                if birth == facts.born:
                    continue
            # a twin's name-and-date key must be new; a same-date namesake's repeats on purpose
            entity = self._person(rng, None, name, birth, True, unique_name=variant != "same_date")
            if entity is not None:
                return entity
        raise RuntimeError(f"no free {variant} namesake found")  # pragma: no cover

    def _person(
        self,
        rng: random.Random,
        home: str | None,
        name: str,
        birth: date,
        has_id: bool,
        unique_name: bool,
    ) -> int | None:
        """Register a person; None if its national ID (or, ``unique_name``, its name and
        birth date) is taken. ``home`` None: a province drawn like the others'."""
        band = _age_band(self.reference_year - birth.year)
        descriptors = (
            PERSON_DESCRIPTORS[2 * band + rng.randrange(2)] if rng.random() < 0.7
            else _NO_DESCRIPTORS
        )  # fmt: skip
        national_id = None
        if has_id:
            if home is not None and rng.random() < 5 / 6:
                province = rng.choice(
                    self._codes(home, "id_province", _ID_PROVINCES, _FALLBACK_ID_PROVINCES)
                )
            else:
                province = rng.choice(_OTHER_ID_PROVINCES)
            century = 0 if birth.year < 2000 else 2
            serial = rng.randrange(10**6)
            national_id = canonical(
                "PERSON",
                f"{province}{century + rng.randrange(2)}{birth.year % 100:02d}{serial:06d}",
            )
        name_key = canonical("PERSON", name, birth)
        name_token = self.tokenizer.token("PERSON", name_key)
        if unique_name and name_token.token_hex in self._used:
            return None
        primary = national_id if national_id is not None else name_key
        entity = self._add("PERSON", primary, descriptors)
        if entity is None:
            return None
        self._used.add(name_token.token_hex)
        self.persons[entity] = PersonFacts(name, birth, national_id)
        self._person_tokens[(entity, "NAME_BIRTH_DATE")] = name_token.token_hex
        return entity

    def vehicle(self, rng: random.Random, home: str, keep_plate: bool = False) -> int:
        """A new vehicle registered in ``home`` (or, one in six, another province)."""
        while True:
            if rng.random() < 5 / 6:
                code = rng.choice(
                    self._codes(home, "plate_codes", _PLATE_CODES, _FALLBACK_PLATE_CODES)
                )
            else:
                code = rng.choice(_OTHER_PLATE_CODES)
            number = f"{rng.randrange(1000):03d}.{rng.randrange(100):02d}"
            if rng.random() < 0.75:
                kind = "motorbike"
                plate = f"{code}{rng.choice(_MOTORBIKE_SERIES)}{rng.randint(1, 9)}-{number}"
            else:
                kind = "car"
                plate = f"{code}{rng.choice(_CAR_SERIES)}-{number}"
            value = canonical("VEHICLE", plate)
            colour = rng.randrange(len(_COLOURS))
            entity = self._add("VEHICLE", value, VEHICLE_DESCRIPTORS[2 * colour + (kind == "car")])
            if entity is not None:
                if keep_plate:
                    self.plates[entity] = plate
                return entity

    def phone(self, rng: random.Random) -> int:
        """A new Vietnamese mobile number."""
        while True:
            raw = f"0{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**7):07d}"
            value = canonical("PHONE", raw)
            entity = self._add("PHONE", value, _NO_DESCRIPTORS)
            if entity is not None:
                return entity

    def lookalike(self, rng: random.Random, vehicle: int) -> tuple[int, str]:
        """A new vehicle whose plate differs from ``vehicle``'s in one character."""
        original = self.plates[vehicle]
        positions = [n for n, char in enumerate(original) if n >= 2 and char.isalnum()]
        for _ in range(200):
            n = rng.choice(positions)
            char = original[n]
            if char.isdigit():
                pool = "0123456789" if n > 3 or not original[n - 1].isalpha() else "123456789"
            else:
                pool = _MOTORBIKE_SERIES
            replacement = rng.choice([c for c in pool if c != char])
            plate = original[:n] + replacement + original[n + 1 :]
            value = canonical("VEHICLE", plate)
            entity = self._add("VEHICLE", value, self.descriptors[vehicle])
            if entity is not None:
                self.plates[entity] = plate
                return entity, plate
        raise RuntimeError("no free lookalike plate found")  # pragma: no cover

    def subject(self, entity: int, role: str) -> dict[str, Any]:
        """The JSON ``Subject`` of an entity's primary token (a person's national ID when
        known, else its name and birth date), without a declared person key."""
        return {
            "role": role,
            "kind": self.kinds[entity],
            "token": self.tokens[entity],
            "key_id": self.key_ids[entity],
            "descriptors": dict(self.descriptors[entity]),
        }

    def subjects(self, entity: int, role: str, agency: str) -> list[dict[str, Any]]:
        """The JSON ``Subject`` records ``agency`` writes of an entity, by its person-key
        policy: one for a vehicle or phone, one or two for a person."""
        facts = self.persons.get(entity)
        if facts is None:
            return [self.subject(entity, role)]
        policy = self.person_keys.get(agency, "both")
        if policy == "unspecified":
            return [self.subject(entity, role)]
        keys: list[str] = []
        if policy == "both" and facts.national_id is not None:
            keys.append("NATIONAL_ID")
        keys.append("NAME_BIRTH_YEAR" if policy == "name_birth_year" else "NAME_BIRTH_DATE")
        individual = f"p{entity}" if len(keys) > 1 else ""
        return [
            {
                "role": role,
                "kind": "PERSON",
                "token": self.tokens[entity]
                if key == "NATIONAL_ID"
                else self._name_token(entity, key),
                "key_id": self.key_ids[entity],
                "descriptors": dict(self.descriptors[entity]),
                "person_key": key,
                "individual": individual,
            }
            for key in keys
        ]

    def _name_token(self, entity: int, key: str) -> str:
        cached = self._person_tokens.get((entity, key))
        if cached is None:
            facts = self.persons[entity]
            birth: date | str = facts.born if key == "NAME_BIRTH_DATE" else str(facts.born.year)
            cached = self.tokenizer.token(
                "PERSON", canonical("PERSON", facts.name, birth)
            ).token_hex
            self._person_tokens[(entity, key)] = cached
        return cached


def _age_band(age: int) -> int:
    if age < 18:
        return 0
    if age < 30:
        return 1
    if age < 45:
        return 2
    if age < 60:
        return 3
    return 4
