"""The load of ``xborder bench latency``: a scenario replayed in loops, published at a fixed rate.

A generated scenario (:mod:`xborder.scenario`) has its cross-border groups spread over
its whole period, so links arrive throughout a replay. When a run needs more events than
the scenario has, it is replayed in loops, each a copy that cannot link to another:

- ``incident_id`` gets the suffix ``-L<loop>`` and ``event_id`` becomes the UUIDv5 of
  the loop number in the original id's namespace (a scenario's duplicate lines stay
  duplicates of each other, as in loop 0);
- each subject token becomes the SHA-256 of ``<loop>`` and the token (64 hex characters
  like every token), so a loop's subjects are new people, vehicles and phones;
- event times move forward by the loop's span: the scenario's period plus its largest
  publication delay, the correlation window and the allowed lateness, so event time
  keeps increasing across loops and no two loops fall within one window.

The scenario starts far enough in the past that the last loop a run may need still lies
before now (the worker rejects events from the future). Everything is encoded before the
clock starts; :func:`publish_paced` then sends at a fixed rate with librdkafka.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from xborder.agencies import AgenciesConfig
from xborder.bench.latency_math import Ref
from xborder.errors import ConfigurationError
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events
from xborder.settings import Settings
from xborder.wire import codec_for


def loop_token(token: str, loop: int) -> str:
    """The subject token standing for ``token`` in loop ``loop`` (unchanged in loop 0)."""
    if loop == 0:
        return token
    return hashlib.sha256(f"{loop}\x1f{token}".encode()).hexdigest()


def loop_value(value: dict[str, Any], loop: int, shift: timedelta) -> dict[str, Any]:
    """The ``IncidentReported`` datum ``value`` as loop ``loop`` publishes it."""
    if loop == 0:
        return value
    out = dict(value)
    out["event_id"] = str(uuid.uuid5(uuid.UUID(value["event_id"]), str(loop)))
    out["incident_id"] = f"{value['incident_id']}-L{loop}"
    out["occurred_at"] = value["occurred_at"] + shift
    out["reported_at"] = value["reported_at"] + shift
    out["subjects"] = [{**s, "token": loop_token(s["token"], loop)} for s in value["subjects"]]
    return out


@dataclass
class Corpus:
    """Pre-encoded incident events in publish order (agency index, key, value per event),
    encoded as needed, up to ``loops_planned`` loops."""

    agency_ids: tuple[str, ...]
    base: list[tuple[int, dict[str, Any]]]
    """The scenario's well-formed events as Avro data (malformed lines are left out: the
    producer library rejects them before they reach Kafka)."""
    span: timedelta
    loops_planned: int
    codec: Any
    agencies: bytearray = field(default_factory=bytearray)
    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    scenario: dict[str, Any] = field(default_factory=dict)
    """The scenario's parameters (``ScenarioConfig.as_json``)."""

    @classmethod
    def generate(
        cls, settings: Settings, agencies: AgenciesConfig, seed: int, events: int, capacity: int
    ) -> Corpus:
        """A scenario of ``events`` lines, placed so that replaying ``capacity`` events
        (in as many loops as that takes) ends in the past."""
        config = ScenarioConfig(seed=seed, events=events)
        span = (
            timedelta(days=config.days)
            + config.max_lateness
            + timedelta(hours=settings.correlation.window_hours)
            + timedelta(hours=settings.correlation.allowed_lateness_hours + 1)
        )
        loops = max(1, math.ceil(capacity / (config.events - config.malformed)))
        start = datetime.now(UTC) - loops * span - timedelta(days=1)
        config = ScenarioConfig(
            seed=seed, events=events, start=start.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        started = time.perf_counter()
        with tqdm(total=events, desc="generating", unit="ev", file=sys.stderr) as bar:
            scenario = generate_scenario(config, agencies, lambda done, _: bar.update(done - bar.n))
        generated = time.perf_counter()
        codec = codec_for(settings)
        rank = {agency: n for n, agency in enumerate(scenario.agency_ids)}
        base = [
            (rank[e.agency], codec.from_json("IncidentReported", e.document))
            for e in tqdm(iter_events(scenario), desc="converting", unit="ev", file=sys.stderr)
            if e.kind != "malformed" and e.document is not None
        ]
        corpus = cls(tuple(scenario.agency_ids), base, span, loops, codec)
        corpus.timings = {
            "generate_s": round(generated - started, 1),
            "convert_s": round(time.perf_counter() - generated, 1),
            "encode_s": 0.0,
        }
        corpus.scenario = config.as_json()
        return corpus

    def __len__(self) -> int:
        return len(self.values)

    @property
    def capacity(self) -> int:
        """Most events this corpus may hold (its planned loops)."""
        return self.loops_planned * len(self.base)

    def ensure(self, count: int) -> None:
        """Encode loops until at least ``count`` events are ready."""
        if count > self.capacity:
            raise ConfigurationError(
                f"the run needs {count:,} events but the scenario was placed in time for "
                f"{self.capacity:,}; use fewer seconds or a lower rate"
            )
        if count <= len(self.values):
            return
        started = time.perf_counter()
        with tqdm(
            total=count, initial=len(self.values), desc="encoding", unit="ev", file=sys.stderr
        ) as bar:
            while len(self.values) < count:
                loop, at = divmod(len(self.values), len(self.base))
                shift = loop * self.span
                for agency, value in self.base[at : at + count - len(self.values)]:
                    datum = loop_value(value, loop, shift)
                    self.agencies.append(agency)
                    self.keys.append(datum["incident_id"].encode())
                    self.values.append(self.codec.encode("IncidentReported", datum))
                bar.update(len(self.values) - bar.n)
        self.timings["encode_s"] = round(
            self.timings["encode_s"] + time.perf_counter() - started, 1
        )

    @property
    def loops(self) -> float:
        """Loops of the scenario encoded so far (a fraction for a partial last loop)."""
        return round(len(self.values) / len(self.base), 3) if self.base else 0.0

    def ref(self, n: int) -> Ref:
        """(agency, incident_id) of event ``n``."""
        return (self.agency_ids[self.agencies[n]], self.keys[n].decode())

    def megabytes(self) -> float:
        """Encoded bytes held (values and keys)."""
        return round((sum(map(len, self.values)) + sum(map(len, self.keys))) / 2**20, 1)


TICK_S = 0.005
"""Shortest sleep of the paced publisher: it sends whatever fell due in bursts at most
200 times a second. Waking for every message costs more CPU per message than the send,
on the same two cores as the pipeline; each message's send time is still its own."""


@dataclass
class Published:
    """What :func:`publish_paced` did."""

    sent: array[float]
    """``time.time()`` just before each message was handed to the producer."""
    failed: int
    """Messages the broker did not acknowledge."""


def _publish_paced(
    bootstrap: str, topics: list[str], corpus: Corpus, count: int, rate: float
) -> Published:
    # librdkafka (confluent-kafka), as many agency systems publish: its produce() is a
    # couple of microseconds from Python, where aiokafka's send costs tens, which on these
    # two cores would be taken from the pipeline being measured
    from confluent_kafka import Producer

    failed = 0

    def delivered(error: Any, message: Any) -> None:
        nonlocal failed
        if error is not None:
            failed += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # the Java client's choice for keyed records
        }
    )
    sent = array("d", bytes(8 * count))
    agencies, keys, values = corpus.agencies, corpus.keys, corpus.values
    started = time.monotonic()
    n = 0
    while n < count:
        # every message due by now goes out in this turn, then sleep to the next one
        due = min(count, int((time.monotonic() - started) * rate) + 1)
        while n < due:
            sent[n] = time.time()
            while True:
                try:
                    producer.produce(topics[agencies[n]], values[n], keys[n], on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.01)
            n += 1
        producer.poll(0)
        if n < count:
            time.sleep(max(TICK_S, started + n / rate - time.monotonic()))
    remaining = producer.flush(60)
    return Published(sent, failed + remaining)


def publish_paced(
    bootstrap: str, topics: list[str], corpus: Corpus, count: int, rate: float
) -> Published:
    """Send the corpus's first ``count`` events at ``rate`` per second, event ``n`` to
    ``topics[agency index]``, keyed by its incident id; send times of each."""
    return _publish_paced(bootstrap, topics, corpus, count, rate)
