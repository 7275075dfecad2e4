"""Faust topic objects for the project's topics (names from :mod:`xborder.topics`)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from xborder.topics import Topics


@dataclass(frozen=True)
class StreamTopics:
    """The Faust handles of every topic the worker reads or writes."""

    incidents: faust.TopicT
    accepted: faust.TopicT
    dead_letters: faust.TopicT


def declare_topics(app: faust.App, names: Topics) -> StreamTopics:
    """Raw-bytes topics: the worker decodes Avro itself to route bad bytes to dead letters."""
    return StreamTopics(
        incidents=_raw_topic(app, *names.all_incidents),
        accepted=_raw_topic(app, names.accepted),
        dead_letters=_raw_topic(app, names.dead_letters),
    )


def _raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    return app.topic(*names, key_serializer="raw", value_serializer="raw")
