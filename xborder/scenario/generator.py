"""Scenario generator: border incidents with a known ground truth, deterministic by seed.

``generate_scenario(config, agencies)`` plans every incident in memory, in this order
(the order of random draws is part of the output, so it never depends on set or dict
iteration order or on ``hash()``):

1. **groups** that operate on both sides of a shared boundary for ``group_active_days``:
   members (persons), vehicles and phones appear in incidents in both jurisdictions,
   mostly in the border zone around the group's anchor; the first two incidents of a
   group lie on different sides within a day and share the group's first member, so
   every group makes at least one true link;
2. **hard negatives**: a twin for a group incident or for a new incident near the
   boundary, in the other jurisdiction, < 2 km and < 3 h away, same category, fresh
   subjects of the same kinds, modus operandi tags disjoint from the base's;
3. **lookalike plates**: an incident in the other jurisdiction near a group incident,
   within a day, whose vehicle's plate differs from the group vehicle's in one character;
4. **repeat offenders**: persons (some with a vehicle) in several incidents of one
   agency;
5. **background** incidents with fresh subjects, categories and times following the
   daily and weekly rhythms, partly clustered around hot spots.

The border-zone share is met exactly by choosing which repeat and background incidents lie
in the border zone after groups and negatives are placed. Then incident ids are numbered
per agency in order of occurrence, delays are drawn (normal, out of order, late),
duplicates and malformed lines are added, and the publications are sorted by publish
time. The ground truth is computed from the entities each incident records
(``xborder.scenario.truth``).
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Final

from xborder.agencies import AgenciesConfig, load_agencies
from xborder.errors import ConfigurationError
from xborder.geo import jurisdictions_for
from xborder.scenario.config import ScenarioConfig
from xborder.scenario.identities import (
    NAMESAKE_VARIANTS,
    Identities,
    scenario_key_ring,
    scenario_tokenizer,
)
from xborder.scenario.malformed import MALFORMED_KINDS, break_event
from xborder.scenario.model import (
    EPOCH,
    PUBLISH_DUPLICATE,
    PUBLISH_INCIDENT,
    PUBLISH_MALFORMED,
    Incident,
    IncidentKind,
    Lookalike,
    MalformedLine,
    Progress,
    Scenario,
    incident_document,
)
from xborder.scenario.places import Places, Spot, Zone
from xborder.scenario.rhythm import (
    DAY_MS,
    GROUP_CATEGORIES,
    HOUR_MS,
    LOCAL_OFFSET,
    Rhythm,
    mo_tags,
)
from xborder.scenario.truth import Truth, pair, true_cases, true_links

MINUTE_MS: Final = 60_000
HARD_NEGATIVE_KM: Final = 1.9
"""Hard-negative twins lie within this distance of their base (the definition says < 2 km)."""
HARD_NEGATIVE_MS: Final = int(2.9 * HOUR_MS)
"""... and within this time of it (the definition says < 3 h)."""
HARD_NEGATIVE_MIN_MS: Final = 45 * 60_000
"""... and at least this far in time: a same-category report across the boundary minutes
and metres away is, by every observable, the other agency's report of the same occurrence
(a double report), not a negative."""
DOUBLE_REPORT_KM: Final = 0.3
"""Two agencies' reports of one occurrence lie within this distance of each other ..."""
DOUBLE_REPORT_MS: Final = 15 * 60_000
"""... and their occurred_at times within this much."""
NEAR_MISS_KINDS: Final = ("another_day", "another_category", "same_agency")
"""The near misses of a double report: the same place 1-6 days later, an unrelated category
next door at the same time, the same agency's second report (all must not match)."""
_LANDMARKS: Final = (
    "Gan ben pha",
    "Gan cho",
    "Duong lien xa",
    "Bo song Hau",
    "Khu dan cu",
    "Gan truong hoc",
    "Cay xang",
    "Bo kenh",
)
_REPEAT_CATEGORIES: Final = ("THEFT", "ROBBERY", "DRUGS", "FRAUD", "GAMBLING", "PUBLIC_DISORDER")
_PROGRESS_EVERY: Final = 5000


def generate_scenario(
    config: ScenarioConfig,
    agencies: AgenciesConfig | Path,
    progress: Progress | None = None,
) -> Scenario:
    """Plan a whole scenario in memory; ``progress(n_done, config.events)`` as it goes."""
    if isinstance(agencies, Path):
        agencies = load_agencies(agencies)
    return _Builder(config, agencies, progress).build()


class _Builder:
    """One generation run; every random draw goes through ``self.rng``."""

    def __init__(
        self, config: ScenarioConfig, agencies: AgenciesConfig, progress: Progress | None
    ) -> None:
        self.config = config
        self.agencies = agencies
        self.agency_ids = tuple(agencies.ids)
        self.rank = {agency: n for n, agency in enumerate(self.agency_ids)}
        self.progress = progress
        self.rng = random.Random(config.seed)
        self.index = jurisdictions_for(agencies)
        self.places = Places(self.index, self.rng)
        self.ids = Identities(
            scenario_tokenizer(config.seed),
            agencies,
            config.start.year,
            person_keys=config.person_key_policies(self.agency_ids),
        )
        self.rhythm = Rhythm(config.start, config.days)
        self.window_ms = int(config.window_hours * HOUR_MS)
        self.incidents: list[Incident] = []
        self.hard_negatives: list[tuple[Incident, Incident]] = []
        self.double_reports: list[tuple[Incident, Incident]] = []
        self.near_misses: dict[str, list[tuple[Incident, Incident]]] = {
            kind: [] for kind in NEAR_MISS_KINDS
        }
        self.lookalikes: list[tuple[Incident, Incident, int, int]] = []
        self.namesakes: dict[str, list[tuple[Incident, Incident]]] = {
            variant: [] for variant in NAMESAKE_VARIANTS
        }
        self.repeat_offenders = 0
        self._serial = 0

    # -- helpers ---------------------------------------------------------------------------

    def _tick(self, done: int) -> None:
        if self.progress is not None and done % _PROGRESS_EVERY == 0:
            self.progress(done, self.config.events)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _make(
        self,
        spot: Spot,
        occurred_ms: int,
        category: str,
        subjects: list[tuple[int, str]],
        mo: list[str],
        kind: IncidentKind,
        group: str | None = None,
        keep: bool = True,
    ) -> Incident:
        rng = self.rng
        agency = spot.agency
        incident = Incident(
            serial=self._next_serial(),
            agency=agency,
            occurred_ms=occurred_ms,
            spot=spot,
            category=category,
            severity=self.rhythm.severity(rng, category),
            subjects=tuple(subjects),
            mo=tuple(mo),
            kind=kind,
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            source_system=f"{agency}-case-mgmt" if rng.random() < 0.8 else f"{agency}-patrol-app",
            narrative=(
                f"Synthetic {category.lower().replace('_', ' ')} incident (scenario data)."
                if rng.random() < 0.15
                else None
            ),
            address=rng.choice(_LANDMARKS) if rng.random() < 0.3 else None,
            group=group,
        )
        if keep:
            self.incidents.append(incident)
            self._tick(len(self.incidents))
        return incident

    def _entity(self, kind: str, home: str) -> int:
        if kind == "PERSON":
            return self.ids.person(self.rng, home)
        if kind == "VEHICLE":
            return self.ids.vehicle(self.rng, home)
        return self.ids.phone(self.rng)

    def _fresh_subjects(self, agency: str, category: str) -> list[tuple[int, str]]:
        """Subjects of an ordinary incident: one-off victims, suspects, vehicles, phones."""
        rng, ids = self.rng, self.ids
        subjects: list[tuple[int, str]] = []
        if rng.random() < 0.3:
            subjects.append((ids.person(rng, agency), "SUSPECT"))
        if rng.random() < 0.6:
            subjects.append((ids.person(rng, agency), "VICTIM"))
        if rng.random() < 0.35:
            subjects.append(
                (ids.vehicle(rng, agency), "SUSPECT" if rng.random() < 0.5 else "VICTIM")
            )
        if rng.random() < 0.2:
            subjects.append((ids.phone(rng), "SUSPECT" if category == "FRAUD" else "VICTIM"))
        if rng.random() < 0.15:
            subjects.append((ids.person(rng, agency), "WITNESS"))
        return subjects

    def _near_time(self, base_ms: int, low_ms: int, high_ms: int) -> int:
        """A time ``low_ms``..``high_ms`` before or after ``base_ms``, inside the period."""
        offset = self.rng.randrange(low_ms, high_ms)
        later = self.rng.random() < 0.5
        start, end = self.rhythm.start_ms, self.rhythm.end_ms
        moment = base_ms + offset if later else base_ms - offset
        if not start <= moment < end:
            moment = base_ms - offset if later else base_ms + offset
        return min(max(moment, start), end - 1)

    def _spot_near(self, spot: Spot, km: float, same_agency: bool = False) -> Spot | None:
        """A spot less than ``km`` from ``spot``, in another jurisdiction (or in the same
        one with ``same_agency``), or None if none was found."""
        places = self.places
        if same_agency:
            test = places.match(agency=spot.agency, within_km=km, of=spot)
        else:
            test = places.match(other_than=spot.agency, within_km=km, of=spot)
        return places.around(self.rng, spot.lat, spot.lon, km, test)

    def _sides_near(self, agency: str) -> list[str]:
        return [a for a in self.agency_ids if a != agency and self.places.cells[(a, "near")]]

    # -- the plan ----------------------------------------------------------------------

    def build(self) -> Scenario:
        config = self.config
        if config.incidents < 1:
            raise ConfigurationError("scenario parameters leave no incidents; raise events")
        self._groups()
        self._hard_negative_pairs(round(config.incidents * config.hard_negative_rate))
        self._lookalike_plates(round(config.incidents * config.lookalike_plate_rate))
        self._double_reports(round(config.incidents * config.double_report_rate / 2))
        self._namesakes(round(config.incidents * config.namesake_rate / 2))
        self._ordinary()
        self._number()
        self._delays()
        publications = [
            (inc.publish_ms, self.rank[inc.agency], inc.serial, PUBLISH_INCIDENT, n)
            for n, inc in enumerate(self.incidents)
        ]
        for n in sorted(self.rng.sample(range(len(self.incidents)), config.duplicates)):
            original = self.incidents[n]
            again = original.publish_ms + self.rng.randrange(1000, 15 * MINUTE_MS)
            publications.append(
                (again, self.rank[original.agency], self._next_serial(), PUBLISH_DUPLICATE, n)
            )
        malformed = self._malformed(config.malformed)
        for n, line in enumerate(malformed):
            publications.append(
                (line.publish_ms, self.rank[line.agency], self._next_serial(), PUBLISH_MALFORMED, n)
            )
        publications.sort()
        if self.progress is not None:
            self.progress(config.events, config.events)
        return Scenario(
            config=config,
            agency_ids=self.agency_ids,
            identities=self.ids,
            places=self.places,
            incidents=self.incidents,
            malformed=malformed,
            publications=publications,
            truth=self._truth(publications, len(malformed)),
            hard_negatives=self.hard_negatives,
            lookalikes=[
                Lookalike(
                    incident=look.ref,
                    mimics=base.ref,
                    plate=self.ids.plates[entity],
                    original_plate=self.ids.plates[original],
                    token=self.ids.tokens[entity],
                    original_token=self.ids.tokens[original],
                )
                for look, base, entity, original in self.lookalikes
            ],
        )

    def _groups(self) -> None:
        config, rng, places, ids = self.config, self.rng, self.places, self.ids
        candidates = [a for a in self.agency_ids if places.cells[(a, "near")]]
        if config.group_count and not candidates:
            raise ConfigurationError(
                "no agency's jurisdiction touches another's: cross-border groups need a shared "
                "boundary; set groups to 0 or check the jurisdictions file"
            )
        span_days = config.days - config.group_active_days + 1
        for number in range(1, config.group_count + 1):
            group = f"G{number:04d}"
            home = rng.choice(candidates)
            anchor = places.sample(rng, home, "near")
            across = places.around(
                rng, anchor.lat, anchor.lon, 3.0, places.match(other_than=home), tries=500
            )
            if across is None:
                raise ConfigurationError(f"no other jurisdiction within 3 km of {home}'s border")
            sides = (home, across.agency)
            members = [
                ids.person(rng, rng.choice(sides)) for _ in range(rng.randint(*config.group_size))
            ]
            vehicles = [
                ids.vehicle(rng, rng.choice(sides), keep_plate=True)
                for _ in range(rng.randint(1, 2))
            ]
            phones = [ids.phone(rng) for _ in range(rng.randint(1, 2))]
            primary = rng.choice(GROUP_CATEGORIES)
            signature = mo_tags(rng, primary, 2)
            lo = self.rhythm.start_ms + rng.randrange(span_days) * DAY_MS
            hi = lo + config.group_active_days * DAY_MS
            first_ms = 0
            for n in range(rng.randint(*config.group_incidents)):
                side = sides[n] if n < 2 else rng.choice(sides)
                category = primary if rng.random() < 0.8 else rng.choice(GROUP_CATEGORIES)
                if n == 1:  # on the other side, within a day and the window: a sure link
                    gap = rng.randrange(1, max(2, min(self.window_ms, DAY_MS)))
                    occurred = min(first_ms + gap, self.rhythm.end_ms - 1)
                else:
                    occurred = self.rhythm.occurred_ms(rng, category, lo, hi)
                    if n == 0:
                        first_ms = occurred
                crew = rng.sample(members, rng.randint(1, min(3, len(members))))
                if n < 2 and members[0] not in crew:
                    crew[0] = members[0]
                subjects = [(person, "SUSPECT") for person in crew]
                if rng.random() < 0.6:
                    subjects.append((rng.choice(vehicles), "SUSPECT"))
                if rng.random() < 0.4:
                    subjects.append(
                        (rng.choice(phones), "SUSPECT" if rng.random() < 0.7 else "OTHER")
                    )
                if rng.random() < 0.5:
                    subjects.append((ids.person(rng, side), "VICTIM"))
                zone: Zone = "border" if rng.random() < 0.85 else "interior"
                radius = config.group_radius_km if zone == "border" else 3 * config.group_radius_km
                spot = places.around(
                    rng,
                    anchor.lat,
                    anchor.lon,
                    radius,
                    places.match(agency=side, zone=zone),
                ) or places.sample(rng, side, zone)
                if category == primary:
                    extra = (
                        mo_tags(rng, category, 1, exclude=signature) if rng.random() < 0.5 else []
                    )
                    mo = [*signature, *extra]
                else:
                    mo = mo_tags(rng, category, 2)
                self._make(spot, occurred, category, subjects, mo, "group", group=group)

    def _hard_negative_pairs(self, count: int) -> None:
        rng, places = self.rng, self.places
        bases = [
            inc
            for inc in self.incidents
            if inc.spot.distance_km is not None and inc.spot.distance_km <= places.near_km
        ]
        rng.shuffle(bases)
        sides = [a for a in self.agency_ids if places.cells[(a, "near")]]
        if count and not sides:
            raise ConfigurationError("hard negatives need a shared boundary; set the rate to 0")
        attempts = 0
        while len(self.hard_negatives) < count:
            attempts += 1
            if attempts > 50 * count:
                raise ConfigurationError("could not place hard-negative twins near the boundary")
            base: Incident | None = bases.pop() if bases and attempts % 2 == 1 else None
            if base is None:
                agency = rng.choice(sides)
                spot = places.sample(rng, agency, "near")
                category = self.rhythm.category(rng)
                occurred = self.rhythm.occurred_ms(rng, category)
            else:
                spot, category, occurred = base.spot, base.category, base.occurred_ms
            twin_spot = self._spot_near(spot, HARD_NEGATIVE_KM)
            if twin_spot is None:
                continue
            if base is None:
                base = self._make(
                    spot,
                    occurred,
                    category,
                    self._fresh_subjects(spot.agency, category),
                    mo_tags(rng, category, rng.randint(1, 2)),
                    "background",
                )
            # the same kinds and roles as the base, but other entities and other tags
            subjects = [
                (self._entity(self.ids.kinds[e], twin_spot.agency), role)
                for e, role in base.subjects
            ]
            twin = self._make(
                twin_spot,
                self._near_time(base.occurred_ms, HARD_NEGATIVE_MIN_MS, HARD_NEGATIVE_MS),
                category,
                subjects,
                mo_tags(rng, category, rng.randint(1, 2), exclude=base.mo),
                "hard_negative",
            )
            self.hard_negatives.append((base, twin))

    def _double_reports(self, count: int) -> None:
        """``count`` occurrences on the boundary reported by the agencies of both sides,
        then ``count`` near misses (kinds in turn, ``NEAR_MISS_KINDS``)."""
        rng, places = self.rng, self.places
        sides = [a for a in self.agency_ids if places.cells[(a, "near")]]
        if count and not sides:
            raise ConfigurationError("double reports need a shared boundary; set the rate to 0")
        attempts = 0
        while len(self.double_reports) < count:
            attempts += 1
            if attempts > 200 * count:
                raise ConfigurationError("could not place double reports across the boundary")
            spot = places.sample(rng, rng.choice(sides), "near")
            twin_spot = self._spot_near(spot, DOUBLE_REPORT_KM)
            if twin_spot is None:
                continue
            category = self.rhythm.category(rng)
            occurred = self.rhythm.occurred_ms(rng, category)
            tags = mo_tags(rng, category, 3)
            # each side records what it saw: usually nobody (a brawl, a crash), sometimes
            # the same person or vehicle (then it is an identity link as well)
            shared = self._fresh_subjects(spot.agency, category) if rng.random() < 0.2 else []
            base = self._make(
                spot, occurred, category, shared, rng.sample(tags, rng.randint(1, len(tags))),
                "double_report",
            )  # fmt: skip
            twin_category = category
            if rng.random() < 0.1:
                twin_category = "OTHER"  # the other side did not classify it
            twin = self._make(
                twin_spot,
                self._near_time(occurred, 0, DOUBLE_REPORT_MS),
                twin_category,
                list(shared),
                rng.sample(tags, rng.randint(1, len(tags))),
                "double_report",
            )
            self.double_reports.append((base, twin))
        placed = 0
        while placed < count:
            attempts += 1
            if attempts > 400 * count:
                raise ConfigurationError("could not place the near misses of double reports")
            placed += self._near_miss(NEAR_MISS_KINDS[placed % len(NEAR_MISS_KINDS)], sides)

    def _near_miss(self, kind: str, sides: list[str]) -> int:
        """A report near the boundary and one that looks like its double report but is not
        (``kind``, see ``NEAR_MISS_KINDS``); 1 when placed, 0 when the spot did not fit.
        Each near miss has a base of its own, so it never lies next to a double report."""
        rng, places = self.rng, self.places
        spot = places.sample(rng, rng.choice(sides), "near")
        miss_spot = self._spot_near(spot, DOUBLE_REPORT_KM, same_agency=kind == "same_agency")
        if miss_spot is None:
            return 0
        category = self.rhythm.category(rng)
        while kind == "another_category" and category in ("OTHER", "TRAFFIC"):
            category = self.rhythm.category(rng)  # OTHER says nothing; TRAFFIC is the miss
        occurred = self.rhythm.occurred_ms(rng, category)
        base = self._make(
            spot, occurred, category, self._fresh_subjects(spot.agency, category),
            mo_tags(rng, category, rng.randint(1, 2)), "near_miss",
        )  # fmt: skip
        miss_category, moment = category, self._near_time(occurred, 0, DOUBLE_REPORT_MS)
        if kind == "another_day":
            moment = self._near_time(occurred, DAY_MS, 6 * DAY_MS)
        elif kind == "another_category":
            miss_category = "TRAFFIC"  # an accident next door: unrelated to every category
        miss = self._make(
            miss_spot, moment, miss_category,
            self._fresh_subjects(miss_spot.agency, miss_category),
            mo_tags(rng, miss_category, rng.randint(1, 2)), "near_miss",
        )  # fmt: skip
        self.near_misses[kind].append((base, miss))
        return 1

    def _namesakes(self, count: int) -> None:
        """``count`` pairs of different persons who look alike by name: one in an incident
        near the boundary on one side, the other within a day on the other side, each with
        its own national ID. Variants in proportion 6:3:1 (same_year, twin, same_date):
        two people of one name and birth date are the rarest."""
        rng, places, ids = self.rng, self.places, self.ids
        sides = [a for a in self.agency_ids if places.cells[(a, "near")]]
        if count and not sides:
            raise ConfigurationError("namesakes need a shared boundary; set the rate to 0")
        schedule = ("same_year",) * 6 + ("twin",) * 3 + ("same_date",)
        for n in range(count):
            variant = schedule[n % len(schedule)]
            agency = rng.choice(sides)
            spot = places.sample(rng, agency, "near")
            other_spot = places.sample(rng, rng.choice(self._sides_near(agency)), "near")
            person = ids.person(rng, agency)
            while ids.persons[person].national_id is None:
                person = ids.person(rng, agency)
            namesake = ids.namesake(rng, person, variant)
            category = self.rhythm.category(rng)
            occurred = self.rhythm.occurred_ms(rng, category)
            first = self._make(
                spot, occurred, category, [(person, "SUSPECT")],
                mo_tags(rng, category, rng.randint(1, 2)), "namesake",
            )  # fmt: skip
            other_category = self.rhythm.category(rng)
            second = self._make(
                other_spot, self._near_time(occurred, HOUR_MS, DAY_MS), other_category,
                [(namesake, "SUSPECT")], mo_tags(rng, other_category, rng.randint(1, 2)),
                "namesake",
            )  # fmt: skip
            self.namesakes[variant].append((first, second))

    def _lookalike_plates(self, count: int) -> None:
        rng, places, ids = self.rng, self.places, self.ids
        pool = [
            inc
            for inc in self.incidents
            if inc.kind == "group" and any(e in ids.plates for e in inc.entities)
        ]
        if not pool:
            return
        for _ in range(count):
            base = rng.choice(pool)
            original = rng.choice([e for e in base.entities if e in ids.plates])
            entity, _plate = ids.lookalike(rng, original)
            spot = places.around(
                rng,
                base.spot.lat,
                base.spot.lon,
                5.0,
                places.match(other_than=base.agency),
                tries=200,
            )
            if spot is None:
                spot = places.sample(rng, rng.choice(self._sides_near(base.agency)), "border")
            subjects = [(entity, "SUSPECT")]
            if rng.random() < 0.5:
                subjects.append((ids.person(rng, spot.agency), "VICTIM"))
            look = self._make(
                spot,
                self._near_time(base.occurred_ms, HOUR_MS, DAY_MS),
                base.category,
                subjects,
                mo_tags(rng, base.category, rng.randint(1, 2)),
                "lookalike",
            )
            self.lookalikes.append((look, base, entity, original))

    def _ordinary(self) -> None:
        """Repeat-offender and background incidents; they fill the border-zone share."""
        config, rng, places, ids, rhythm = self.config, self.rng, self.places, self.ids, self.rhythm
        total = config.incidents
        remaining = total - len(self.incidents)
        if remaining < 0:
            raise ConfigurationError(
                f"scenario parameters plan {len(self.incidents)} group, hard-negative and "
                f"lookalike incidents but only {total} incidents in all; lower groups, "
                "group_incidents, hard_negative_rate or lookalike_plate_rate, or raise events"
            )
        have = sum(inc.spot.border for inc in self.incidents)
        wanted = max(0, min(remaining, round(total * config.border_share) - have))
        border = set(rng.sample(range(remaining), wanted))
        slots = iter(range(remaining))

        def zone() -> Zone:
            return "border" if next(slots) in border else "interior"

        def spot_in(agency: str, where: Zone) -> Spot:
            if rng.random() < 0.4:
                return places.sample_clustered(rng, agency, where)
            return places.sample(rng, agency, where)

        for agency, person, vehicle, favourite, count in self._offenders(
            min(round(total * config.repeat_offender_share), remaining)
        ):
            for _ in range(count):
                category = favourite if rng.random() < 0.7 else rhythm.category(rng)
                subjects: list[tuple[int, str]] = []
                if vehicle is None or rng.random() < 0.8:
                    subjects.append((person, "SUSPECT"))
                if vehicle is not None and (not subjects or rng.random() < 0.7):
                    subjects.append((vehicle, "SUSPECT"))
                if rng.random() < 0.6:
                    subjects.append((ids.person(rng, agency), "VICTIM"))
                self._make(
                    spot_in(agency, zone()),
                    rhythm.occurred_ms(rng, category),
                    category,
                    subjects,
                    mo_tags(rng, category, rng.randint(1, 3)),
                    "repeat",
                )
        while len(self.incidents) < total:
            agency = rng.choice(self.agency_ids)
            category = rhythm.category(rng)
            self._make(
                spot_in(agency, zone()),
                rhythm.occurred_ms(rng, category),
                category,
                self._fresh_subjects(agency, category),
                mo_tags(rng, category, rng.randint(1, 3)),
                "background",
            )

    def _offenders(self, incidents: int) -> Iterator[tuple[str, int, int | None, str, int]]:
        """(agency, person, vehicle or None, favourite category, incident count) per offender."""
        rng, config = self.rng, self.config
        counts: list[int] = []
        while sum(counts) < incidents:
            counts.append(rng.randint(*config.repeat_incidents))
        excess = sum(counts) - incidents
        if excess:
            counts[-1] -= excess
            if counts[-1] < 2 and len(counts) > 1:
                counts[-2] += counts.pop()
        self.repeat_offenders = len(counts)
        for count in counts:
            agency = rng.choice(self.agency_ids)
            person = self.ids.person(rng, agency)
            vehicle = self.ids.vehicle(rng, agency) if rng.random() < 0.4 else None
            yield agency, person, vehicle, rng.choice(_REPEAT_CATEGORIES), count

    def _number(self) -> None:
        """Incident ids per agency in order of occurrence: ``<AGENCY>-<local date>-<n>``."""
        by_agency: dict[str, list[Incident]] = defaultdict(list)
        for incident in self.incidents:
            by_agency[incident.agency].append(incident)
        for agency in self.agency_ids:
            prefix = agency.upper()
            ordered = sorted(by_agency[agency], key=lambda i: (i.occurred_ms, i.serial))
            for number, incident in enumerate(ordered, start=1):
                incident.incident_id = f"{prefix}-{_local_date(incident.occurred_ms)}-{number:06d}"

    def _delays(self) -> None:
        config, rng = self.config, self.rng
        n = len(self.incidents)
        late_n = round(n * config.late_rate)
        chosen = rng.sample(range(n), late_n + round(n * config.out_of_order_rate))
        late, shuffled = set(chosen[:late_n]), set(chosen[late_n:])
        max_late = int(config.max_lateness.total_seconds() * 1000)
        for index, incident in enumerate(self.incidents):
            if index in late:
                incident.delay = "late"
                delay = rng.randrange(HOUR_MS, max_late + 1)
            elif index in shuffled:
                incident.delay = "out_of_order"
                delay = rng.randrange(10 * MINUTE_MS, 60 * MINUTE_MS + 1)
            else:
                delay = rng.randrange(MINUTE_MS, 10 * MINUTE_MS)
            incident.reported_ms = incident.occurred_ms + delay
            incident.publish_ms = incident.reported_ms + rng.randrange(5000)

    def _malformed(self, count: int) -> list[MalformedLine]:
        rng, rhythm, config = self.rng, self.rhythm, self.config
        lines: list[MalformedLine] = []
        for number in range(count):
            agency = rng.choice(self.agency_ids)
            category = rhythm.category(rng)
            where: Zone = "border" if rng.random() < config.border_share else "interior"
            if not self.places.cells[(agency, where)]:
                where = "interior" if where == "border" else "border"
            spot = self.places.sample(rng, agency, where)
            subjects = [
                (self.ids.vehicle(rng, agency), "SUSPECT"),
                *self._fresh_subjects(agency, category),
            ]
            incident = self._make(
                spot,
                rhythm.occurred_ms(rng, category),
                category,
                subjects,
                mo_tags(rng, category, 2),
                "background",
                keep=False,
            )
            incident.reported_ms = incident.occurred_ms + rng.randrange(MINUTE_MS, 10 * MINUTE_MS)
            incident.publish_ms = incident.reported_ms + rng.randrange(5000)
            incident.incident_id = (
                f"{agency.upper()}-{_local_date(incident.occurred_ms)}-X{number + 1:05d}"
            )
            kind = MALFORMED_KINDS[number % len(MALFORMED_KINDS)]
            text = break_event(
                rng,
                kind,
                incident_document(incident, self.ids, self.places),
                self.agencies.region,
                self.agency_ids,
            )
            lines.append(MalformedLine(agency, kind, text, incident.publish_ms))
            self._tick(len(self.incidents) + number + 1)
        return lines

    def _truth(self, publications: list[tuple[int, int, int, int, int]], malformed: int) -> Truth:
        config = self.config
        links = true_links(
            ((inc.ref, inc.occurred_ms, inc.entities) for inc in self.incidents), self.window_ms
        )
        double_reports = {pair(a.ref, b.ref) for a, b in self.double_reports}
        group_of = {inc.ref: inc.group for inc in self.incidents if inc.group is not None}
        cases = true_cases(links | double_reports, group_of)
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for ref, group in group_of.items():
            groups[group].append(ref)
        lines_per_agency = {agency: 0 for agency in self.agency_ids}
        for _, rank, _, _, _ in publications:
            lines_per_agency[self.agency_ids[rank]] += 1
        counts = {
            "events": len(publications),
            "incidents": len(self.incidents),
            "valid_events": len(self.incidents) + config.duplicates,
            "duplicates": config.duplicates,
            "late": sum(inc.delay == "late" for inc in self.incidents),
            "out_of_order": sum(inc.delay == "out_of_order" for inc in self.incidents),
            "malformed": malformed,
            "links": len(links),
            "cases": len(cases),
            "groups": len(groups),
            "hard_negatives": len(self.hard_negatives),
            "double_reports": len(double_reports),
            **{f"near_misses.{k}": len(v) for k, v in self.near_misses.items()},
            "lookalikes": len(self.lookalikes),
            **{f"namesakes.{k}": len(v) for k, v in self.namesakes.items()},
            "repeat_offenders": self.repeat_offenders,
            "border_zone_incidents": sum(inc.spot.border for inc in self.incidents),
            **{f"events.{agency}": n for agency, n in lines_per_agency.items()},
        }
        parameters = {
            **config.as_json(),
            "agencies": list(self.agency_ids),
            "border_zone_km": self.agencies.border_zone_km,
            "key_id": scenario_key_ring(config.seed).active_key_id,
        }
        return Truth(
            window_hours=config.window_hours,
            links=frozenset(links),
            cases=tuple(cases),
            groups={group: tuple(sorted(refs)) for group, refs in sorted(groups.items())},
            hard_negatives=tuple(sorted(pair(a.ref, b.ref) for a, b in self.hard_negatives)),
            double_reports=frozenset(double_reports),
            near_misses={
                kind: tuple(sorted(pair(a.ref, b.ref) for a, b in found))
                for kind, found in self.near_misses.items()
            },
            lookalikes=tuple(sorted(pair(a.ref, b.ref) for a, b, _, _ in self.lookalikes)),
            namesakes={
                variant: tuple(sorted(pair(a.ref, b.ref) for a, b in found))
                for variant, found in self.namesakes.items()
            },
            counts=counts,
            parameters=parameters,
        )


def _local_date(ms: int) -> str:
    """The local (UTC+7) date of an epoch-milliseconds time as YYYYMMDD."""
    return f"{EPOCH + timedelta(milliseconds=ms) + LOCAL_OFFSET:%Y%m%d}"
