"""The agencies config: who publishes, under which id (topic names derive from it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xborder.errors import ConfigurationError

AGENCY_ID = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


class Region(BaseModel):
    """Bounding box inside which every event location must lie."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    min_lat: float = Field(ge=-90, le=90)
    max_lat: float = Field(ge=-90, le=90)
    min_lon: float = Field(ge=-180, le=180)
    max_lon: float = Field(ge=-180, le=180)

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


class Agency(BaseModel):
    """One cooperating agency."""

    model_config = ConfigDict(frozen=True, extra="allow")
    id: str
    name: str

    @field_validator("id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not AGENCY_ID.match(value):
            raise ValueError(
                f"agency id {value!r} must be 2-32 lower-case letters, digits, '_' or '-', "
                "starting with a letter (it becomes part of topic names)"
            )
        return value


class AgenciesConfig(BaseModel):
    """The whole agencies file."""

    model_config = ConfigDict(frozen=True, extra="allow")
    region: Region
    border_zone_km: float = Field(default=5.0, gt=0)
    jurisdictions: Path | None = None
    """GeoJSON FeatureCollection of the agencies' jurisdiction polygons (relative to this file)."""
    agencies: list[Agency] = Field(min_length=1)

    @field_validator("agencies")
    @classmethod
    def _unique(cls, value: list[Agency]) -> list[Agency]:
        ids = [a.id for a in value]
        if len(ids) != len(set(ids)):
            raise ValueError(f"agency ids must be unique, got {ids}")
        return value

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.agencies]

    def get(self, agency_id: str) -> Agency:
        for agency in self.agencies:
            if agency.id == agency_id:
                return agency
        raise ConfigurationError(
            f"unknown agency {agency_id!r}; the agencies config knows {', '.join(self.ids)}"
        )


def load_agencies(path: Path) -> AgenciesConfig:
    """Read and validate the agencies config; errors name the file and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"agencies config {path} not found; set XBORDER_AGENCIES_CONFIG or --agencies-config"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid JSON: {exc}") from exc
    try:
        config = AgenciesConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{path}: {problems}") from exc
    if config.jurisdictions is not None and not config.jurisdictions.is_absolute():
        config = config.model_copy(update={"jurisdictions": path.parent / config.jurisdictions})
    return config
