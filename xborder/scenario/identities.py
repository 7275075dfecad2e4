"""Who and what takes part: persons, vehicles and phones, each pseudonymised once.

An entity is one real-world person, vehicle or phone. It gets one raw identifier (a
12-digit CCCD number or a name with a birth date; a Vietnamese plate; a mobile number),
whose canonical form is unique among the scenario's entities, so entity and token are
one to one: two incidents share a token exactly when they share an entity. The token is
computed once, when the entity is made, with the scenario's seed-derived key; raw
identifiers are kept only for group vehicles (to make lookalike plates), never written.

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
            band = _age_band(self.reference_year - born)
            descriptors = (
                PERSON_DESCRIPTORS[2 * band + rng.randrange(2)]
                if rng.random() < 0.7
                else _NO_DESCRIPTORS
            )
            if rng.random() < 0.7:
                if rng.random() < 5 / 6:
                    province = rng.choice(
                        self._codes(home, "id_province", _ID_PROVINCES, _FALLBACK_ID_PROVINCES)
                    )
                else:
                    province = rng.choice(_OTHER_ID_PROVINCES)
                century = 0 if born < 2000 else 2
                serial = rng.randrange(10**6)
                raw = f"{province}{century + rng.randrange(2)}{born % 100:02d}{serial:06d}"
                value = canonical("PERSON", raw)
            else:
                name = f"{rng.choice(_SURNAMES)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
                birth = date(born, rng.randint(1, 12), rng.randint(1, 28))
                value = canonical("PERSON", name, birth)
            entity = self._add("PERSON", value, descriptors)
            if entity is not None:
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
        """The JSON ``Subject`` of an entity in a given role."""
        return {
            "role": role,
            "kind": self.kinds[entity],
            "token": self.tokens[entity],
            "key_id": self.key_ids[entity],
            "descriptors": dict(self.descriptors[entity]),
        }


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
