"""Scenario parameters: one frozen object, validated once, recorded in the truth file.

Counts follow from ``events`` (every line the agencies publish, duplicates and malformed
lines included): ``malformed_rate`` and ``duplicate_rate`` are shares of those lines, and
the rest are distinct incidents. Every other rate or share is a share of the incidents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.errors import ConfigurationError

DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)
"""A fixed Monday, so the default scenario is the same on every machine and every day."""


@dataclass(frozen=True)
class ScenarioConfig:
    """Size and mix of a generated scenario; the same values and seed give the same bytes."""

    seed: int = 1
    """Seed of the only random generator; also derives the pseudonymisation key."""
    events: int = 200_000
    """Lines published over all agencies: incidents, their duplicates and malformed lines."""
    start: datetime = DEFAULT_START
    """Start of the period in which incidents occur (UTC, timezone-aware)."""
    days: int = 30
    """Length of that period in days."""
    border_share: float = 0.3
    """Share of incidents located in the border zone (see ``border_zone_km``)."""
    repeat_offender_share: float = 0.1
    """Share of incidents involving a repeat offender (same entity, several incidents, one side)."""
    repeat_incidents: tuple[int, int] = (2, 6)
    """Incidents per repeat offender, inclusive range."""
    groups: int | None = None
    """Cross-border groups: they operate on both sides and make the true links and cases.
    None: one per 1,000 incidents, at least one (``group_count``)."""
    group_size: tuple[int, int] = (2, 5)
    """Members (persons) per group, inclusive range; each group also has vehicles and phones."""
    group_incidents: tuple[int, int] = (4, 12)
    """Incidents per group, inclusive range."""
    group_active_days: int = 5
    """Days over which one group's incidents spread."""
    group_radius_km: float = 8.0
    """Distance from its anchor on the boundary within which a group operates."""
    hard_negative_rate: float = 0.02
    """Share of incidents that are hard-negative twins: in the other jurisdiction, < 2 km and
    45 min to 3 h from another incident, same category, different subjects and modus
    operandi (closer in time, a same-category twin is what a double report looks like)."""
    double_report_rate: float = 0.01
    """Share of incidents that are one of two agencies' reports of one occurrence on the
    boundary (a double report: < 300 m and < 15 min apart across the boundary); as many
    again are its near misses (the same place on another day, another category next door,
    one agency's two reports)."""
    lookalike_plate_rate: float = 0.005
    """Share of incidents with a plate one character off a group vehicle's plate."""
    duplicate_rate: float = 0.01
    """Share of lines that repeat an earlier event unchanged (same event_id)."""
    late_rate: float = 0.02
    """Share of incidents reported and published between 1 h and ``max_lateness`` late."""
    max_lateness: timedelta = timedelta(hours=6)
    """Latest a late incident is published after it occurred (more than 1 h)."""
    out_of_order_rate: float = 0.05
    """Share of incidents published 10-60 min after they occurred (others: 1-10 min)."""
    malformed_rate: float = 0.005
    """Share of lines the publish CLI must reject (bad enum, missing field, raw plate...)."""
    window_hours: float = 72.0
    """Two incidents are a true link only if they occurred at most this far apart."""
    person_keys: str = "both"
    """What agencies record of a person (``xborder.scenario.identities.PERSON_KEY_POLICIES``):
    one policy for all (``both``), or per agency (``cantho=both,angiang=name_birth_date``)."""
    namesake_rate: float = 0.004
    """Share of incidents that are one of a planted pair of person near misses: two
    different persons with one name and birth year, one name and birth date, or twins, in
    incidents on both sides within a day (``NAMESAKE_VARIANTS``); never a link."""

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigurationError("scenario parameters: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        found: list[str] = []
        if self.events < 1:
            found.append(f"events must be at least 1, got {self.events}")
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            found.append(f"start must be timezone-aware UTC, got {self.start.isoformat()}")
        if self.days < 1:
            found.append(f"days must be at least 1, got {self.days}")
        for name in (
            "border_share",
            "repeat_offender_share",
            "hard_negative_rate",
            "double_report_rate",
            "lookalike_plate_rate",
            "duplicate_rate",
            "late_rate",
            "out_of_order_rate",
            "malformed_rate",
            "namesake_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                found.append(f"{name} must lie in [0, 1], got {value}")
        if self.duplicate_rate + self.malformed_rate > 0.5:
            found.append("duplicate_rate + malformed_rate must not exceed 0.5")
        if self.late_rate + self.out_of_order_rate > 1.0:
            found.append("late_rate + out_of_order_rate must not exceed 1")
        for name, low in (("repeat_incidents", 2), ("group_size", 1), ("group_incidents", 2)):
            lo, hi = getattr(self, name)
            if not low <= lo <= hi:
                found.append(f"{name} must be a range (min, max) with {low} <= min <= max")
        if self.groups is not None and self.groups < 0:
            found.append(f"groups must not be negative, got {self.groups}")
        if not 1 <= self.group_active_days <= self.days:
            found.append(f"group_active_days must lie in 1..days ({self.days})")
        if self.group_radius_km <= 0:
            found.append("group_radius_km must be positive")
        if self.max_lateness <= timedelta(hours=1):
            found.append("max_lateness must exceed 1 hour (late means more than 1 h late)")
        if self.window_hours <= 0:
            found.append("window_hours must be positive")
        try:
            self.person_key_policies(())
        except ValueError as exc:
            found.append(str(exc))
        return found

    def person_key_policies(self, agencies: tuple[str, ...] | list[str]) -> dict[str, str]:
        """The person-key policy of each of ``agencies`` (``person_keys`` parsed); raises
        ValueError naming a bad policy."""
        from xborder.scenario.identities import PERSON_KEY_POLICIES

        text = self.person_keys.strip()
        default, per_agency = "both", {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            agency, _, policy = part.rpartition("=")
            if policy not in PERSON_KEY_POLICIES:
                raise ValueError(
                    f"person_keys: {policy!r} is not one of {', '.join(PERSON_KEY_POLICIES)}"
                )
            if agency:
                per_agency[agency.strip()] = policy
            else:
                default = policy
        return {agency: per_agency.get(agency, default) for agency in agencies}

    @property
    def end(self) -> datetime:
        """End of the period in which incidents occur (exclusive)."""
        return self.start + timedelta(days=self.days)

    @property
    def malformed(self) -> int:
        """Number of malformed lines."""
        return round(self.events * self.malformed_rate)

    @property
    def duplicates(self) -> int:
        """Number of duplicate lines."""
        return round(self.events * self.duplicate_rate)

    @property
    def incidents(self) -> int:
        """Number of distinct incidents."""
        return self.events - self.malformed - self.duplicates

    @property
    def group_count(self) -> int:
        """Number of cross-border groups (``groups``, or one per 1,000 incidents)."""
        if self.groups is not None:
            return self.groups
        return max(1, round(self.incidents / 1000))

    def as_json(self) -> dict[str, Any]:
        """The parameters as plain JSON values (times ISO-8601, durations in seconds)."""
        values = asdict(self)
        values["start"] = self.start.astimezone(UTC).isoformat().replace("+00:00", "Z")
        values["max_lateness"] = self.max_lateness.total_seconds()
        for name in ("repeat_incidents", "group_size", "group_incidents"):
            values[name] = list(values[name])
        return values
