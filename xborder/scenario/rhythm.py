"""What happens when: categories with daily and weekly rhythms, severities, modus operandi.

Rhythms are in local time (Vietnam, UTC+7, no daylight saving): thefts, robberies and
smuggling peak at night, drugs and gambling in the evening, fraud in office hours, traffic
in the rush hours; public disorder, gambling and traffic rise at the weekend. The figures
are plausible shapes for a benchmark, not statistics.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

LOCAL_OFFSET: Final = timedelta(hours=7)
"""Offset of local time (Asia/Ho_Chi_Minh) from UTC; the rhythms follow local hours."""
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS

CATEGORIES: Final[tuple[str, ...]] = (
    "THEFT",
    "ROBBERY",
    "DRUGS",
    "SMUGGLING",
    "GAMBLING",
    "FRAUD",
    "PUBLIC_DISORDER",
    "TRAFFIC",
    "ORGANISED_GROUP",
    "HOSTILE_ACTIVITY",
    "OTHER",
)
"""The Avro ``Category`` symbols, in schema order."""

SEVERITIES: Final[tuple[str, ...]] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
"""The Avro ``Severity`` symbols."""

GROUP_CATEGORIES: Final[tuple[str, ...]] = (
    "THEFT",
    "ROBBERY",
    "DRUGS",
    "SMUGGLING",
    "GAMBLING",
    "FRAUD",
    "ORGANISED_GROUP",
)
"""What cross-border groups do."""

_SHARE: Final = {
    "THEFT": 30,
    "ROBBERY": 6,
    "DRUGS": 8,
    "SMUGGLING": 4,
    "GAMBLING": 6,
    "FRAUD": 9,
    "PUBLIC_DISORDER": 12,
    "TRAFFIC": 18,
    "ORGANISED_GROUP": 2,
    "HOSTILE_ACTIVITY": 1,
    "OTHER": 4,
}

# Relative weight of each local hour 0..23.
_HOURLY: Final[dict[str, tuple[int, ...]]] = {
    "night": (9, 9, 8, 7, 5, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 5, 6, 7, 8, 9),
    "evening": (7, 6, 4, 3, 2, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 4, 6, 8, 9, 9, 9, 8),
    "office": (1, 1, 1, 1, 1, 1, 2, 4, 7, 9, 9, 8, 6, 7, 9, 9, 8, 6, 4, 3, 2, 2, 1, 1),
    "rush": (2, 1, 1, 1, 1, 3, 6, 9, 8, 5, 4, 4, 5, 4, 4, 5, 7, 9, 9, 6, 4, 3, 3, 2),
    "flat": (4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4),
}
_PROFILE: Final = {
    "THEFT": "night",
    "ROBBERY": "night",
    "DRUGS": "evening",
    "SMUGGLING": "night",
    "GAMBLING": "evening",
    "FRAUD": "office",
    "PUBLIC_DISORDER": "evening",
    "TRAFFIC": "rush",
    "ORGANISED_GROUP": "evening",
    "HOSTILE_ACTIVITY": "flat",
    "OTHER": "office",
}
# Relative weight of each local weekday, Monday first.
_WEEKLY: Final[dict[str, tuple[int, ...]]] = {
    "weekend": (8, 8, 8, 9, 11, 16, 15),
    "weekday": (11, 11, 11, 11, 11, 6, 5),
    "flat": (10, 10, 10, 10, 11, 12, 12),
}
_WEEK_PROFILE: Final = {
    "PUBLIC_DISORDER": "weekend",
    "GAMBLING": "weekend",
    "TRAFFIC": "weekend",
    "FRAUD": "weekday",
    "OTHER": "weekday",
}
_SEVERITY: Final[dict[str, tuple[int, int, int, int]]] = {
    "THEFT": (40, 50, 9, 1),
    "ROBBERY": (5, 40, 45, 10),
    "DRUGS": (10, 40, 40, 10),
    "SMUGGLING": (10, 45, 35, 10),
    "GAMBLING": (35, 50, 14, 1),
    "FRAUD": (20, 50, 25, 5),
    "PUBLIC_DISORDER": (40, 45, 13, 2),
    "TRAFFIC": (35, 40, 20, 5),
    "ORGANISED_GROUP": (5, 30, 45, 20),
    "HOSTILE_ACTIVITY": (10, 30, 40, 20),
    "OTHER": (60, 35, 5, 0),
}

MODUS_OPERANDI: Final[dict[str, tuple[str, ...]]] = {
    "THEFT": tuple(
        "motorbike pickpocket break-in bicycle livestock phone-snatch "
        "unlocked-door market construction-site".split()
    ),
    "ROBBERY": tuple(
        "knife motorbike snatch group rural-road threat fake-police night-road".split()
    ),
    "DRUGS": tuple("delivery motel karaoke courier online-order river-boat party".split()),
    "SMUGGLING": tuple("river boat cigarettes sugar fuel night-crossing warehouse".split()),
    "GAMBLING": tuple("online cockfight card-game lottery football-betting cafe dice".split()),
    "FRAUD": tuple(
        "phone-call online fake-official investment sim-card bank-transfer job-offer".split()
    ),
    "PUBLIC_DISORDER": tuple("brawl drunk noise weapon street-racing wedding crowd".split()),
    "TRAFFIC": tuple(
        "collision hit-and-run drunk-driving speeding overload truck no-helmet".split()
    ),
    "ORGANISED_GROUP": tuple(
        "debt-collection extortion loan-shark intimidation protection group arson".split()
    ),
    "HOSTILE_ACTIVITY": tuple(
        "leaflets online-propaganda gathering incitement banner unregistered-meeting".split()
    ),
    "OTHER": tuple("lost-property missing-person dispute fire animal complaint".split()),
}
"""Modus-operandi tags per category (lower-case words, as the schema asks)."""


def mo_tags(
    rng: random.Random, category: str, count: int, exclude: Sequence[str] = ()
) -> list[str]:
    """``count`` distinct tags of ``category`` (fewer if too few remain), none in ``exclude``."""
    pool = [tag for tag in MODUS_OPERANDI[category] if tag not in exclude]
    return rng.sample(pool, min(count, len(pool)))


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class Rhythm:
    """Samples categories and occurrence times over a period with the rhythms above."""

    def __init__(self, start: datetime, days: int) -> None:
        self.start_ms = epoch_ms(start)
        self.end_ms = self.start_ms + days * DAY_MS
        local_day = (start.astimezone(UTC) + LOCAL_OFFSET).date()
        # Local midnight (in UTC ms) of the first local day the period touches.
        self.base_ms = epoch_ms(
            datetime(local_day.year, local_day.month, local_day.day, tzinfo=UTC) - LOCAL_OFFSET
        )
        self._first_weekday = local_day.weekday()
        self._categories = _cumulative([_SHARE[c] for c in CATEGORIES])
        self._hourly = {c: _cumulative(_HOURLY[_PROFILE[c]]) for c in CATEGORIES}
        self._severity = {c: _cumulative(_SEVERITY[c]) for c in CATEGORIES}
        self._day_weights = {
            c: self._weekly(c, 0, (self.end_ms - 1 - self.base_ms) // DAY_MS + 1)
            for c in CATEGORIES
        }

    def _weekly(self, category: str, first: int, stop: int) -> tuple[range, list[float]]:
        week = _WEEKLY[_WEEK_PROFILE.get(category, "flat")]
        days = range(first, stop)
        return days, _cumulative([week[(self._first_weekday + d) % 7] for d in days])

    def category(self, rng: random.Random) -> str:
        """A category drawn with the base shares."""
        return rng.choices(CATEGORIES, cum_weights=self._categories)[0]

    def severity(self, rng: random.Random, category: str) -> str:
        """A severity drawn with the category's distribution."""
        return rng.choices(SEVERITIES, cum_weights=self._severity[category])[0]

    def occurred_ms(
        self, rng: random.Random, category: str, lo_ms: int | None = None, hi_ms: int | None = None
    ) -> int:
        """A time in ``[lo_ms, hi_ms)`` (default: the whole period) with the category's
        daily and weekly rhythm."""
        lo = self.start_ms if lo_ms is None else max(lo_ms, self.start_ms)
        hi = self.end_ms if hi_ms is None else min(hi_ms, self.end_ms)
        if hi <= lo:
            raise ValueError("empty time range")
        if lo == self.start_ms and hi == self.end_ms:
            days, cum = self._day_weights[category]
        else:
            days, cum = self._weekly(
                category, (lo - self.base_ms) // DAY_MS, (hi - 1 - self.base_ms) // DAY_MS + 1
            )
        hourly = self._hourly[category]
        for _ in range(50):  # the first and last local day are partial: resample outside
            day = rng.choices(days, cum_weights=cum)[0]
            hour = rng.choices(range(24), cum_weights=hourly)[0]
            moment = self.base_ms + day * DAY_MS + hour * HOUR_MS + rng.randrange(HOUR_MS)
            if lo <= moment < hi:
                return moment
        return rng.randrange(lo, hi)
