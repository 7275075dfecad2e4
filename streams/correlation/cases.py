"""Cross-border cases: connected components of linked incidents, kept incrementally.

``CaseTracker.link`` joins the two incidents of a link (union-find) and returns the
``CaseEvent`` Avro data the change means:

- both incidents new: CREATED with both;
- one new: INCIDENT_ADDED to the other's case;
- two cases: MERGED, naming the absorbed case in ``merged_case_ids`` and its incidents
  (now members of the surviving case) in ``incidents``;
- the same case already: nothing.

Case ids are deterministic and independent of the order of links: the id of a case is the
hash of its smallest member ref (agency, incident_id). A merge therefore keeps the id of
the case whose smallest ref is smaller, and whatever order the links come in (one worker
or two), the final cases and their ids are the same. When a new incident is smaller than
every member of the case it joins, the case's id changes: the tracker emits CREATED for the
new id (listing every incident) followed by MERGED absorbing the old id, so a consumer
folding events by case_id always ends with the right members.

Bounded state: ``evict(cutoff_ms)`` drops the cases whose newest link is older than the
cutoff. Nothing is emitted: their event history stands as it is, and the verification
status belongs to the joint-verification flow, not to the window. A link that later
reaches an evicted incident (only possible for events beyond the allowed lateness) starts
a new case, under the same id if that incident is again the smallest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .model import Ref, stable_id

DEFAULT_STATUS = "PENDING_VERIFICATION"
"""Status of a case the correlator found: it awaits the agencies' joint verification."""


def case_id_of(ref: Ref) -> str:
    """The id of a case whose smallest member is ``ref``."""
    return stable_id("case", ref[0], ref[1])


@dataclass
class _Case:
    id: str
    smallest: Ref
    members: list[Ref]
    agencies: set[str]
    correlation_ids: list[str]
    newest_ms: int
    status: str = DEFAULT_STATUS
    double_report: bool = False
    """A SAME_OCCURRENCE link joined some of its incidents (``possible_double_report``)."""


class CaseTracker:
    """Incremental union-find of linked incidents (see the module docstring)."""

    def __init__(self, status: str = DEFAULT_STATUS) -> None:
        self.status = status
        self._parent: dict[Ref, Ref] = {}
        self._root_case: dict[Ref, _Case] = {}
        self._by_id: dict[str, Ref] = {}
        self._event_ids: dict[Ref, str] = {}

    def _find(self, ref: Ref) -> Ref:
        parent = self._parent
        root = ref
        while parent[root] != root:
            root = parent[root]
        while parent[ref] != root:  # path compression
            parent[ref], ref = root, parent[ref]
        return root

    def _case(self, ref: Ref) -> _Case | None:
        return self._root_case[self._find(ref)] if ref in self._parent else None

    def link(
        self,
        a: Ref,
        b: Ref,
        correlation_id: str,
        at_ms: int,
        event_ids: tuple[str, str],
        match_kind: str = "IDENTITY",
    ) -> list[dict[str, Any]]:
        """Join ``a`` and ``b`` (a link at event time ``at_ms``); the CaseEvents it causes.
        ``event_ids`` are the events of ``a`` and ``b`` whose state the link used (the
        IncidentRefs of the events carry the latest one seen for each incident). A
        SAME_OCCURRENCE link marks the case a possible double report; when it links two
        incidents already in one case, a STATUS_CHANGED event carries the new mark."""
        self._event_ids[a], self._event_ids[b] = event_ids
        double = match_kind == "SAME_OCCURRENCE"
        if b < a:
            a, b = b, a
        ca, cb = self._case(a), self._case(b)
        if ca is None and cb is None:
            case = _Case(case_id_of(a), a, [a, b], {a[0], b[0]}, [correlation_id], at_ms,
                         self.status, double)  # fmt: skip
            for ref in (a, b):
                self._parent[ref] = a
            self._root_case[a] = case
            self._by_id[case.id] = a
            return [self._event(case, "CREATED", [a, b], [correlation_id], [], at_ms)]
        if ca is not None and cb is not None:
            if ca is cb:
                ca.correlation_ids.append(correlation_id)
                ca.newest_ms = max(ca.newest_ms, at_ms)
                if double and not ca.double_report:
                    ca.double_report = True
                    return [self._event(ca, "STATUS_CHANGED", [], [correlation_id], [], at_ms)]
                return []
            winner, loser = (ca, cb) if ca.smallest < cb.smallest else (cb, ca)
            moved = sorted(loser.members)  # named in the event, so per-incident views follow
            self._union(winner, loser)
            winner.double_report = winner.double_report or loser.double_report or double
            winner.correlation_ids.append(correlation_id)
            winner.newest_ms = max(winner.newest_ms, at_ms)
            return [self._event(winner, "MERGED", moved, [correlation_id], [loser.id], at_ms)]
        joined = cb if ca is None else ca
        new = a if ca is None else b
        assert joined is not None
        case = joined
        root = self._find(case.smallest)
        self._parent[new] = root
        case.members.append(new)
        case.agencies.add(new[0])
        case.double_report = case.double_report or double
        case.correlation_ids.append(correlation_id)
        case.newest_ms = max(case.newest_ms, at_ms)
        if new > case.smallest:
            return [self._event(case, "INCIDENT_ADDED", [new], [correlation_id], [], at_ms)]
        # the newcomer is the smallest member now: the case is renamed after it
        old_id = case.id
        del self._by_id[old_id]
        case.id, case.smallest = case_id_of(new), new
        self._by_id[case.id] = root
        return [
            self._event(case, "CREATED", sorted(case.members), [correlation_id], [], at_ms),
            self._event(case, "MERGED", [], [correlation_id], [old_id], at_ms),
        ]

    def _union(self, winner: _Case, loser: _Case) -> None:
        # union by size: the smaller tree hangs under the bigger one and the smaller member
        # list is copied; the merged case keeps the winner's id, smallest ref and status
        big, small = (winner, loser) if len(winner.members) >= len(loser.members) else (
            loser, winner)  # fmt: skip
        broot, sroot = self._find(big.smallest), self._find(small.smallest)
        self._parent[sroot] = broot
        members, cids = big.members, big.correlation_ids
        members.extend(small.members)
        cids.extend(small.correlation_ids)
        winner.members, winner.correlation_ids = members, cids
        winner.agencies |= loser.agencies
        winner.newest_ms = max(winner.newest_ms, loser.newest_ms)
        del self._root_case[sroot]
        self._root_case[broot] = winner
        del self._by_id[loser.id]
        self._by_id[winner.id] = broot

    def _ref_record(self, ref: Ref) -> dict[str, str]:
        return {"agency": ref[0], "incident_id": ref[1], "event_id": self._event_ids[ref]}

    def _event(
        self,
        case: _Case,
        event_type: str,
        incidents: Sequence[Ref],
        correlation_ids: Sequence[str],
        merged: Sequence[str],
        at_ms: int,
    ) -> dict[str, Any]:
        return {
            "case_event_id": stable_id(
                "case-event", case.id, event_type, *correlation_ids, *merged
            ),
            "case_id": case.id,
            "event_type": event_type,
            "incidents": [self._ref_record(ref) for ref in sorted(incidents)],
            "correlation_ids": list(correlation_ids),
            "merged_case_ids": list(merged),
            "status": case.status,
            "agencies": sorted(case.agencies),
            "conclusion": None,
            "at": at_ms,
            "possible_double_report": case.double_report,
        }

    # -- queries --------------------------------------------------------------------------

    def case_of(self, ref: Ref) -> str | None:
        """Id of the case holding ``ref``; None if it is in no case."""
        case = self._case(ref)
        return None if case is None else case.id

    def members(self, case_id: str) -> set[Ref]:
        """Incidents of a case (empty for an unknown or evicted id)."""
        root = self._by_id.get(case_id)
        return set() if root is None else set(self._root_case[root].members)

    def correlation_ids(self, case_id: str) -> list[str]:
        """Correlations that built a case, in arrival order."""
        root = self._by_id.get(case_id)
        return [] if root is None else list(self._root_case[root].correlation_ids)

    def cases(self) -> dict[str, set[Ref]]:
        """Every case: id to members."""
        return {case.id: set(case.members) for case in self._root_case.values()}

    def __len__(self) -> int:
        return len(self._root_case)

    def __contains__(self, ref: object) -> bool:
        """True when ``ref`` is in a case."""
        return ref in self._parent

    def evict(self, cutoff_ms: int) -> dict[str, list[Ref]]:
        """Drop the cases whose newest link is older than ``cutoff_ms``; their ids and
        members."""
        dropped = [root for root, case in self._root_case.items() if case.newest_ms < cutoff_ms]
        gone: dict[str, list[Ref]] = {}
        for root in dropped:
            case = self._root_case.pop(root)
            del self._by_id[case.id]
            for ref in case.members:
                del self._parent[ref]
                self._event_ids.pop(ref, None)
            gone[case.id] = case.members
        return gone
