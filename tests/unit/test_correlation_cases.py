"""CaseTracker: created, added, merged, renamed; ids independent of link order; eviction."""

from __future__ import annotations

import random
import uuid
from typing import Any

from streams.correlation.cases import CaseTracker, case_id_of
from streams.correlation.model import Ref
from streams.correlation.scoring import correlation_id
from tests.unit.test_correlation_support import T0, encodes

A1, A2, A3 = ("angiang", "A1"), ("angiang", "A2"), ("angiang", "A3")
C1, C2, C3 = ("cantho", "C1"), ("cantho", "C2"), ("cantho", "C3")


def link(tracker: CaseTracker, x: Ref, y: Ref, at: int = T0) -> list[dict[str, Any]]:
    ids = (str(uuid.uuid5(uuid.NAMESPACE_OID, x[1])), str(uuid.uuid5(uuid.NAMESPACE_OID, y[1])))
    return tracker.link(x, y, correlation_id(x, y), at, ids)


def fold(events: list[dict[str, Any]]) -> dict[str, set[Ref]]:
    """What a consumer folding the case events by case_id ends up with."""
    state: dict[str, set[Ref]] = {}
    for e in events:
        refs = {(r["agency"], r["incident_id"]) for r in e["incidents"]}
        if e["event_type"] == "CREATED":
            state[e["case_id"]] = refs
        elif e["event_type"] == "INCIDENT_ADDED":
            state[e["case_id"]] |= refs
        elif e["event_type"] == "MERGED":
            merged = state.setdefault(e["case_id"], set())
            for absorbed in e["merged_case_ids"]:
                merged |= state.pop(absorbed)
    return state


def test_created_added_merged() -> None:
    t = CaseTracker()
    (created,) = link(t, C1, A2)
    assert created["event_type"] == "CREATED" and created["case_id"] == case_id_of(A2)
    assert [r["incident_id"] for r in created["incidents"]] == ["A2", "C1"]
    assert created["agencies"] == ["angiang", "cantho"]
    assert created["status"] == "PENDING_VERIFICATION"
    assert created["correlation_ids"] == [correlation_id(C1, A2)]
    (added,) = link(t, A2, C2)
    assert added["event_type"] == "INCIDENT_ADDED" and added["case_id"] == case_id_of(A2)
    assert [r["incident_id"] for r in added["incidents"]] == ["C2"]
    assert link(t, C1, C2) == []  # already in one case
    link(t, A3, C3)
    (merged,) = link(t, C3, C2)
    assert merged["event_type"] == "MERGED"
    assert merged["case_id"] == case_id_of(A2) and merged["merged_case_ids"] == [case_id_of(A3)]
    # the absorbed case's incidents are named, so a per-incident view (case_members) follows
    assert [r["incident_id"] for r in merged["incidents"]] == ["A3", "C3"]
    assert t.cases() == {case_id_of(A2): {A2, A3, C1, C2, C3}}
    assert t.case_of(C3) == case_id_of(A2) and t.case_of(A1) is None
    assert t.members(case_id_of(A3)) == set()  # absorbed
    assert len(t.correlation_ids(case_id_of(A2))) == 5


def test_a_smaller_newcomer_renames_the_case_with_created_then_merged() -> None:
    t = CaseTracker()
    link(t, A2, C1)
    created, merged = link(t, A1, C1)
    assert created["event_type"] == "CREATED" and created["case_id"] == case_id_of(A1)
    assert {r["incident_id"] for r in created["incidents"]} == {"A1", "A2", "C1"}
    assert merged["event_type"] == "MERGED" and merged["merged_case_ids"] == [case_id_of(A2)]
    assert t.cases() == {case_id_of(A1): {A1, A2, C1}}


def random_links(seed: int, n: int = 60, m: int = 80) -> list[tuple[Ref, Ref]]:
    rng = random.Random(seed)
    cantho = [("cantho", f"C{i:03d}") for i in range(n)]
    angiang = [("angiang", f"A{i:03d}") for i in range(n)]
    return [(rng.choice(cantho), rng.choice(angiang)) for _ in range(m)]


def test_final_cases_do_not_depend_on_link_order() -> None:
    links = random_links(1)
    reference = CaseTracker()
    events = [e for x, y in links for e in link(reference, x, y)]
    expected = reference.cases()
    assert fold(events) == expected
    for case_id, members in expected.items():
        assert case_id == case_id_of(min(members))
    rng = random.Random(2)
    for _ in range(25):
        shuffled = links[:]
        rng.shuffle(shuffled)
        shuffled = [(y, x) if rng.random() < 0.5 else (x, y) for x, y in shuffled]
        t = CaseTracker()
        replayed = [e for x, y in shuffled for e in link(t, x, y)]
        assert t.cases() == expected
        assert fold(replayed) == expected


def test_two_workers_split_of_links_gives_the_same_cases() -> None:
    """Links found by two partitions arrive interleaved in any order: same final cases."""
    links = random_links(3)
    one = CaseTracker()
    for x, y in links:
        link(one, x, y)
    first, second = links[::2], links[1::2]
    two = CaseTracker()
    for x, y in second + first:
        link(two, x, y)
    assert two.cases() == one.cases()


def test_same_links_same_order_same_events() -> None:
    links = random_links(4)
    runs = []
    for _ in range(2):
        t = CaseTracker()
        runs.append([e for x, y in links for e in link(t, x, y)])
    assert runs[0] == runs[1]
    ids = [e["case_event_id"] for e in runs[0]]
    assert len(ids) == len(set(ids))


def test_eviction_drops_cases_whose_newest_link_left_the_window() -> None:
    t = CaseTracker()
    link(t, A1, C1, at=T0)
    link(t, A2, C2, at=T0)
    link(t, A2, C3, at=T0 + 10)
    gone = t.evict(T0 + 5)
    assert gone == {case_id_of(A1): [A1, C1]}
    assert t.cases() == {case_id_of(A2): {A2, C2, C3}}
    assert A1 not in t and C1 not in t and A2 in t
    (again,) = link(t, A1, C1, at=T0 + 20)  # comes back as a new case
    assert again["event_type"] == "CREATED"


def test_case_events_encode_with_the_real_codec() -> None:
    t = CaseTracker()
    events = link(t, A2, C1) + link(t, A1, C2) + link(t, C1, C2)
    events += link(t, ("angiang", "A0"), C1)
    assert {e["event_type"] for e in events} == {"CREATED", "MERGED"}
    for e in events:
        back = encodes("CaseEvent", e)
        assert back["case_id"] == e["case_id"]
        assert [str(r["event_id"]) for r in back["incidents"]] == [
            r["event_id"] for r in e["incidents"]
        ]
