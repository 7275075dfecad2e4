"""Topic names, all built from settings and the agencies config."""

from __future__ import annotations

from dataclasses import dataclass

from xborder.agencies import AgenciesConfig
from xborder.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Every topic the project reads or writes."""

    prefix: str
    agency_ids: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings, agencies: AgenciesConfig) -> Topics:
        return cls(prefix=settings.topics.prefix, agency_ids=tuple(agencies.ids))

    def incidents(self, agency_id: str) -> str:
        """Where agency ``agency_id`` publishes its incident events (only it writes there)."""
        return f"{self.prefix}incidents.{agency_id}"

    @property
    def all_incidents(self) -> list[str]:
        return [self.incidents(a) for a in self.agency_ids]

    @property
    def accepted(self) -> str:
        """Validated incident events of every agency, as the worker forwards them."""
        return f"{self.prefix}incidents.accepted"

    @property
    def dead_letters(self) -> str:
        """Messages the worker could not accept, with the reason in headers."""
        return f"{self.prefix}deadletters"

    def created_by_project(self) -> list[str]:
        """Topics ``xborder topics create`` makes before workers start."""
        return [*self.all_incidents, self.accepted, self.dead_letters]
