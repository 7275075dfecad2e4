"""The demo scenario, reproducible: what ``xborder demo`` publishes and verifies, with every
value the demo draws at random or from the clock pinned, for tests whose expected results
are written down (docs/analyst.md).

The events are the demo's (:func:`xborder.samples.sample_events` and
:func:`xborder.samples.double_report`) made at :data:`REFERENCE` instead of now, with the
brawl's spot drawn from a seeded generator, and then pinned: event ids and the random part
of incident ids from that generator, subject tokens made again with a fixed example key
(tokens equal before are equal after). The verification is the demo's
(:class:`xborder.demo.JointVerification`): the brawl is confirmed by both agencies, agreed
and reported; the shared-vehicle case is confirmed by cantho, rejected by angiang, and
cantho's report of it is refused. Each input carries a fixed event id and a fixed time
after :data:`REFERENCE`, and the two example officers have fixed tokens. One step is added
to the demo's: angiang releases the details of its brawl report to the case before the
report, so the queries over releases have something to show.

The settings must put the first verification escalation beyond the wall clock
(:data:`OVERRIDES`): the demo's cases are fresh when it runs, these are dated
:data:`REFERENCE`, and the worker escalates by the wall clock.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.agencies import load_agencies
from xborder.demo import EXAMPLE_OFFICER_KEY_ID, publish_samples
from xborder.pipeline import Pipeline
from xborder.pseudonym import KeyRing, SharedKeyTokenizer
from xborder.samples import double_report, sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import (
    Decision,
    InputRecord,
    Officer,
    VerificationClient,
    VerificationOutcome,
    find_case,
    outcome_positions,
    release_record,
    released_details,
    report_record,
    verdict_record,
    wait_for_outcome,
)
from xborder.wire import codec_for

REFERENCE = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
"""The demo's "now": the samples occurred 2 to 7 hours before, the brawl 2 h 20 min before."""
SEED = 13
OVERRIDES: dict[str, Any] = {"verification.timeout_hours": 24.0 * 365 * 100}
"""No VERIFICATION_OVERDUE escalation in a test run, as in a demo run."""
OFFICERS = {
    "cantho": Officer("c7" * 32, EXAMPLE_OFFICER_KEY_ID),
    "angiang": Officer("a9" * 32, EXAMPLE_OFFICER_KEY_ID),
}
"""The two example duty officers (the demo draws their tokens per run)."""
WAIT_S = 60.0
BRAWL_REPORT = "One brawl on the boundary road, reported by both agencies; handled jointly."
VEHICLE_REPORT = "Same vehicle in thefts on both sides; handled jointly."
VEHICLE_REJECTION = "On review the two vehicles differ; not one series of thefts."


def demo_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo's 6 samples and its brawl reported by both agencies, pinned."""
    rng = random.Random(SEED)
    samples = sample_events(6, now=REFERENCE)
    brawl = double_report(now=REFERENCE, rng=rng)
    tokenizer = SharedKeyTokenizer(KeyRing("example-1", {"example-1": bytes(range(32))}))
    tokens: dict[str, str] = {}
    for event in [*samples, *brawl]:
        event["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        # '<AGENCY>-<yyyymmdd>-<n>-<6 random hex>' and '<AGENCY>-<yyyymmdd>-<6 hex>-BRAWL'
        event["incident_id"] = re.sub(
            r"(?<=-)[0-9a-f]{6}(?=-BRAWL$|$)", f"{rng.getrandbits(24):06x}", event["incident_id"]
        )
        for subject in event["subjects"]:
            if subject["token"] not in tokens:
                tokens[subject["token"]] = tokenizer.token(
                    subject["kind"], f"demo-{subject['kind'].lower()}-{len(tokens)}"
                ).token_hex
            subject["token"] = tokens[subject["token"]]
            subject["key_id"] = "example-1"
    # the brawl's two reports share the random stamp: still one after pinning
    stamp = brawl[0]["incident_id"].split("-")[2]
    brawl[1]["incident_id"] = "-".join([*brawl[1]["incident_id"].split("-")[:2], stamp, "BRAWL"])
    return samples, brawl


def _ms(minutes_after_reference: int) -> int:
    return int((REFERENCE + timedelta(minutes=minutes_after_reference)).timestamp() * 1000)


class _Verification:
    """The demo's joint verification with pinned ids and times; raises on any outcome the
    demo would call unexpected."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = codec_for(settings)
        agencies = load_agencies(settings.agencies_config)
        self.clients = {
            agency: VerificationClient(
                settings,
                agencies,
                self.codec,
                agency,
                officer_token=officer.token,
                officer_key_id=officer.key_id,
            )
            for agency, officer in OFFICERS.items()
        }
        self.rng = random.Random(SEED + 1)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def send(self, agency: str, record: InputRecord, value: dict[str, Any]) -> VerificationOutcome:
        since = outcome_positions(self.settings)
        event_id = self.clients[agency].send(record, value)
        return wait_for_outcome(self.settings, self.codec, event_id, WAIT_S, since)

    def verdict(
        self, agency: str, case_id: str, decision: Decision, reason: str, at: int
    ) -> VerificationOutcome:
        value = verdict_record(
            agency,
            case_id,
            decision,
            reason,
            OFFICERS[agency],
            event_id=self.event_id(),
            decided_at_ms=_ms(at),
        )
        return self.send(agency, "Verdict", value)

    def report(
        self, agency: str, case_id: str, text: str, conclusion_id: str | None, at: int
    ) -> VerificationOutcome:
        value = report_record(
            agency,
            case_id,
            text,
            OFFICERS[agency],
            conclusion_id=conclusion_id,
            event_id=self.event_id(),
            requested_at_ms=_ms(at),
        )
        return self.send(agency, "CaseReport", value)

    def release(self, case_id: str, event: dict[str, Any], at: int) -> VerificationOutcome:
        details = self.codec.from_json("ReleasedDetails", released_details(event))
        value = release_record(
            event["agency"],
            case_id,
            event["incident_id"],
            event["event_id"],
            event_id=self.event_id(),
            released_at_ms=_ms(at),
            details=details,
            officer=OFFICERS[event["agency"]],
        )
        return self.send(event["agency"], "IncidentRelease", value)

    def case(self, event: dict[str, Any]) -> str:
        return find_case(self.settings, self.codec, event["agency"], event["incident_id"], WAIT_S)

    def run(self, samples: list[dict[str, Any]], brawl: list[dict[str, Any]]) -> None:
        agreed = self.case(brawl[0])
        assert self.verdict("cantho", agreed, "CONFIRM", "", 20).accepted
        second = self.verdict("angiang", agreed, "CONFIRM", "", 45)
        assert second.accepted, second.line()
        conclusion = second.conclusion
        assert conclusion is not None, second.line()
        released = self.release(agreed, brawl[1], 50)
        assert released.accepted, released.line()
        report = self.report("cantho", agreed, BRAWL_REPORT, conclusion["conclusion_id"], 60)
        assert report.accepted, report.line()

        disputed = self.case(samples[0])
        assert self.verdict("cantho", disputed, "CONFIRM", "", 70).accepted
        rejected = self.verdict("angiang", disputed, "REJECT", VEHICLE_REJECTION, 95)
        assert rejected.accepted and rejected.conclusion is None, rejected.line()
        refused = self.report("cantho", disputed, VEHICLE_REPORT, None, 100)
        assert not refused.accepted and refused.reason == "case-disputed", refused.line()


def run_demo_scenario(settings: Settings, pipeline: Pipeline) -> None:
    """Publish the pinned demo events through the running ``pipeline``, verify the two
    cases as the demo does, and wait until the sink has stored everything."""
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    samples, brawl = demo_events()
    publish_samples(settings, samples + brawl)
    pipeline.wait_until_drained(topics)
    verification = _Verification(settings)
    try:
        verification.run(samples, brawl)
    finally:
        verification.close()
    pipeline.wait_until_drained(topics)


def prepare_topics(settings: Settings) -> None:
    ensure_project_topics(
        settings, Topics.from_settings(settings, load_agencies(settings.agencies_config))
    )
