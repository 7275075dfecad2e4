"""Evidence scoring: each evidence type, the defaults' guarantees, ids, the Avro record."""

from __future__ import annotations

import math
import random

import pytest

from streams.correlation.model import IncidentView
from streams.correlation.scoring import (
    Evidence,
    ScoringConfig,
    correlation_id,
    quick_score,
    score_pair,
    to_correlation_record,
)
from tests.unit.test_correlation_support import (
    ANGIANG_DEEP,
    ANGIANG_EDGE,
    CANTHO_DEEP,
    CANTHO_EDGE,
    HOUR,
    T0,
    TOKEN_H,
    TOKEN_P,
    TOKEN_V,
    encodes,
    view,
)

CFG = ScoringConfig()


def evidence(a: IncidentView, b: IncidentView, cfg: ScoringConfig = CFG) -> dict[str, Evidence]:
    pair = score_pair(a, b, cfg)
    assert pair is not None
    assert pair.score == pytest.approx(sum(e.weight for e in pair.evidence), abs=1e-9)
    return {e.kind: e for e in pair.evidence}


def far_pair(tokens: tuple[tuple[str, str], ...] = ()) -> tuple[IncidentView, IncidentView]:
    """A cantho and an angiang incident, far apart in space and time, unrelated."""
    a = view("cantho", at=CANTHO_DEEP, t=T0, category="TRAFFIC", tokens=tokens)
    b = view("angiang", at=ANGIANG_DEEP, t=T0 + 60 * HOUR, category="FRAUD", tokens=tokens)
    return a, b


@pytest.mark.parametrize("kind,weight", [("PERSON", 12.0), ("VEHICLE", 10.0), ("PHONE", 10.0)])
def test_shared_token_per_kind(kind: str, weight: float) -> None:
    a, b = far_pair(tokens=((kind, TOKEN_V), ("PERSON", "only-a" if kind != "PERSON" else "x")))
    b = view("angiang", at=ANGIANG_DEEP, t=T0 + 60 * HOUR, tokens=((kind, TOKEN_V),))
    found = evidence(a, b)
    e = found[f"SHARED_{kind}"]
    assert e.weight == weight
    assert e.detail.startswith(f"same {kind} token 3fa2…;") and "km apart" in e.detail
    assert TOKEN_V not in e.detail  # never the whole token
    assert len([k for k in found if k.startswith("SHARED_")]) == 1


def test_several_tokens_of_one_kind_count_once() -> None:
    tokens = (("VEHICLE", TOKEN_V), ("VEHICLE", TOKEN_P))
    a, b = far_pair(tokens=tokens)
    e = evidence(a, b)["SHARED_VEHICLE"]
    assert e.weight == 10.0 and e.detail.startswith("2 shared VEHICLE tokens")


def test_distance_decays_and_stays_non_negative() -> None:
    near = evidence(view("cantho", at=CANTHO_EDGE), view("angiang", at=ANGIANG_EDGE))["DISTANCE"]
    far = evidence(*far_pair())["DISTANCE"]
    assert near.weight == pytest.approx(2.0 * math.exp(-0.7253 / 3.0), abs=1e-3)
    assert near.detail == "0.7 km apart"
    assert 0 <= far.weight < 0.01 and far.detail.endswith("km apart")


def test_time_decays_and_stays_non_negative() -> None:
    a = view("cantho", t=T0)
    soon = evidence(a, view("angiang", at=ANGIANG_EDGE, t=T0 + int(3.5 * HOUR)))["TIME"]
    assert soon.weight == pytest.approx(2.0 * math.exp(-3.5 / 6), abs=1e-4)
    assert soon.detail == "3.5 h apart"
    late = evidence(a, view("angiang", at=ANGIANG_EDGE, t=T0 + 70 * HOUR))["TIME"]
    assert 0 <= late.weight < 0.001 and late.detail == "2.9 days apart"
    assert evidence(a, view("angiang", t=T0 + 20 * 60_000))["TIME"].detail == "20 min apart"


@pytest.mark.parametrize(
    "x,y,weight,word",
    [
        ("THEFT", "THEFT", 1.0, "same category THEFT"),
        ("THEFT", "ROBBERY", 0.5, "related"),
        ("ORGANISED_GROUP", "DRUGS", 0.5, "related"),
        ("THEFT", "TRAFFIC", -0.5, "unrelated"),
        ("OTHER", "THEFT", 0.0, "neutral"),
    ],
)
def test_category_compatibility(x: str, y: str, weight: float, word: str) -> None:
    e = evidence(view("cantho", category=x), view("angiang", category=y))["CATEGORY"]
    assert e.weight == weight and word in e.detail


def test_modus_operandi_jaccard() -> None:
    a = view("cantho", mo=("motorbike", "night", "group"))
    e = evidence(a, view("angiang", mo=("night", "motorbike")))["MODUS_OPERANDI"]
    assert e.weight == pytest.approx(1.5 * 2 / 3, abs=1e-4)
    assert e.detail == "shared tags: motorbike, night (Jaccard 0.67)"
    none = evidence(a, view("angiang", mo=("online",)))["MODUS_OPERANDI"]
    assert none.weight == 0 and none.detail == "no shared modus-operandi tags"
    assert "MODUS_OPERANDI" not in evidence(a, view("angiang"))  # no tags: no evidence


def test_border_zone_location() -> None:
    both = evidence(view("cantho", at=CANTHO_EDGE), view("angiang", at=ANGIANG_EDGE))
    assert both["BORDER_ZONE"].weight == 1.0
    one = evidence(view("cantho", at=CANTHO_EDGE), view("angiang", at=ANGIANG_DEEP))
    assert one["BORDER_ZONE"].weight == 0.5 and "in the border zone" in one["BORDER_ZONE"].detail
    assert "BORDER_ZONE" not in evidence(*far_pair())


def test_only_cross_jurisdiction_pairs_are_scored() -> None:
    a = view("cantho", at=CANTHO_EDGE, tokens=(("VEHICLE", TOKEN_V),))
    same = view("cantho", at=CANTHO_DEEP, tokens=(("VEHICLE", TOKEN_V),))
    assert score_pair(a, same, CFG) is None and quick_score(a, same, CFG) is None
    # same agency, but the incidents lie in two jurisdictions: cross-border
    across = view("cantho", at=ANGIANG_EDGE, tokens=(("VEHICLE", TOKEN_V),))
    pair = score_pair(a, across, CFG)
    assert pair is not None and pair.linked
    # an incident outside every jurisdiction is not "another side" for its own agency
    outside = view("cantho", at=(21.0, 105.8), tokens=(("VEHICLE", TOKEN_V),))
    assert score_pair(a, outside, CFG) is None


def test_a_shared_token_alone_links_even_with_everything_else_against_it() -> None:
    for kind in ("PERSON", "VEHICLE", "PHONE"):
        a, b = far_pair(tokens=((kind, TOKEN_H),))
        pair = score_pair(a, b, CFG)
        assert pair is not None and pair.linked, (kind, pair)
    assert min(CFG.token_weights.values()) + CFG.category_unrelated >= CFG.threshold


def test_hard_negatives_do_not_link() -> None:
    """Close in space and time, same category and tags, both in the border zone, different
    subjects: everything but a shared token at its best still stays under the threshold."""
    tags = ("motorbike", "night")
    a = view("cantho", at=CANTHO_EDGE, t=T0, mo=tags, tokens=(("VEHICLE", TOKEN_V),))
    b = view("angiang", at=CANTHO_EDGE, t=T0, mo=tags, tokens=(("VEHICLE", TOKEN_P),))
    pair = score_pair(a, b, CFG)
    assert pair is not None and not pair.linked
    assert pair.score == pytest.approx(CFG.max_without_token(), abs=1e-3)
    assert CFG.max_without_token() == 7.5 < CFG.threshold


def test_weights_and_threshold_are_configurable() -> None:
    cfg = ScoringConfig(threshold=5.5, token_weights={"VEHICLE": 3.0}, border_both=0.0)
    a = view("cantho", at=CANTHO_EDGE, t=T0, mo=("night",), tokens=(("PHONE", TOKEN_P),))
    b = view("angiang", at=ANGIANG_EDGE, t=T0 + HOUR, mo=("night",), tokens=(("PHONE", TOKEN_P),))
    found = evidence(a, b, cfg)
    assert "SHARED_PHONE" not in found  # not a weighted kind in this config
    assert found["BORDER_ZONE"].weight == 0.0
    pair = score_pair(a, b, cfg)
    assert pair is not None and pair.linked and pair.threshold == 5.5


def test_quick_score_equals_the_full_score() -> None:
    rng = random.Random(11)
    places = [CANTHO_EDGE, ANGIANG_EDGE, CANTHO_DEEP, ANGIANG_DEEP]
    cats = ["THEFT", "ROBBERY", "DRUGS", "OTHER", "TRAFFIC"]
    tokens = [("VEHICLE", TOKEN_V), ("PHONE", TOKEN_P), ("PERSON", TOKEN_H)]
    for _ in range(500):
        a, b = (
            view(
                rng.choice(["cantho", "angiang"]),
                at=rng.choice(places),
                t=T0 + rng.randrange(0, 80 * HOUR),
                category=rng.choice(cats),
                mo=tuple(rng.sample(["a", "b", "c", "d"], rng.randrange(0, 4))),
                tokens=tuple(rng.sample(tokens, rng.randrange(0, 4))),
            )
            for _ in range(2)
        )
        full = score_pair(a, b, CFG)
        assert quick_score(a, b, CFG) == (None if full is None else full.score)


def test_pair_order_and_correlation_id_are_canonical() -> None:
    a = view("cantho", incident="CT-9", tokens=(("VEHICLE", TOKEN_V),))
    b = view("angiang", incident="AG-1", at=ANGIANG_EDGE, tokens=(("VEHICLE", TOKEN_V),))
    ab, ba = score_pair(a, b, CFG), score_pair(b, a, CFG)
    assert ab == ba and ab is not None
    assert (ab.a.agency, ab.b.agency) == ("angiang", "cantho")
    assert ab.correlation_id == correlation_id(a.ref, b.ref) == correlation_id(b.ref, a.ref)
    assert len(ab.correlation_id) == 64
    assert correlation_id(("x", "1"), ("y", "2")) != correlation_id(("x", "2"), ("y", "1"))


def test_correlation_record_encodes_with_the_real_codec() -> None:
    a = view("cantho", t=T0, tokens=(("VEHICLE", TOKEN_V),), mo=("night",))
    b = view("angiang", at=ANGIANG_EDGE, t=T0 + HOUR, tokens=(("VEHICLE", TOKEN_V),), mo=("night",))
    pair = score_pair(a, b, CFG)
    assert pair is not None
    record = to_correlation_record(pair)
    assert record["created_at"] == T0 + HOUR
    back = encodes("Correlation", record)
    assert back["correlation_id"] == pair.correlation_id
    incident_a = {**back["incident_a"], "event_id": str(back["incident_a"]["event_id"])}
    assert incident_a == {"agency": "angiang", "incident_id": b.incident_id, "event_id": b.event_id}
    assert [e["kind"] for e in back["evidence"]] == [
        "SHARED_VEHICLE", "DISTANCE", "TIME", "CATEGORY", "MODUS_OPERANDI", "BORDER_ZONE"
    ]  # fmt: skip
    assert back["score"] == record["score"] == pair.score
    assert to_correlation_record(pair, 123)["created_at"] == 123


# -- person keys ---------------------------------------------------------------------------

NAME_T, ID_A, ID_B = "a1" * 32, "b2" * 32, "c3" * 32


def _person(
    agency: str,
    at: tuple[float, float],
    t: int,
    keys: tuple[tuple[str, str], ...] = (),
    individuals: tuple[tuple[str, str], ...] = (),
) -> IncidentView:
    """An incident recording persons by declared keys (token, PersonKey)."""
    category = "TRAFFIC" if agency == "cantho" else "FRAUD"
    tokens = tuple(sorted({("PERSON", token) for token, _ in keys}))
    base = view(agency, at=at, t=t, category=category, tokens=tokens)
    return base._replace(person_keys=tuple(sorted(keys)), individuals=tuple(sorted(individuals)))


@pytest.mark.parametrize(
    "key,weight,kind",
    [
        ("NATIONAL_ID", 12.0, "SHARED_NATIONAL_ID"),
        ("NAME_BIRTH_DATE", 10.0, "SHARED_NAME_BIRTH_DATE"),
        ("NAME_BIRTH_YEAR", 5.0, "SHARED_NAME_BIRTH_YEAR"),
        ("NAME", 3.0, "SHARED_NAME"),
    ],
)
def test_a_shared_person_token_weighs_by_its_person_key(key: str, weight: float, kind: str) -> None:
    a = _person("cantho", CANTHO_DEEP, T0, keys=((NAME_T, key),))
    b = _person("angiang", ANGIANG_DEEP, T0 + 60 * HOUR, keys=((NAME_T, key),))
    found = evidence(a, b)
    assert found[kind].weight == weight and "SHARED_PERSON" not in found
    pair = score_pair(a, b, CFG)
    assert pair is not None and quick_score(a, b, CFG) == pair.score
    assert pair.linked is (weight >= 10)  # far apart and unrelated: only strong keys link alone


def test_the_weaker_declared_key_counts_and_an_undeclared_side_takes_the_other() -> None:
    a = _person("cantho", CANTHO_DEEP, T0, keys=((NAME_T, "NAME_BIRTH_DATE"),))
    b = _person("angiang", ANGIANG_DEEP, T0 + 60 * HOUR, keys=((NAME_T, "NAME"),))
    assert "SHARED_NAME" in evidence(a, b)
    legacy = _person("angiang", ANGIANG_DEEP, T0 + 60 * HOUR)._replace(tokens=(("PERSON", NAME_T),))
    assert "SHARED_NAME_BIRTH_DATE" in evidence(a, legacy)


def test_a_national_id_disagreement_counts_against_a_name_agreement() -> None:
    def side(agency: str, at: tuple[float, float], national: str) -> IncidentView:
        return _person(
            agency, at, T0,
            keys=((NAME_T, "NAME_BIRTH_DATE"), (national, "NATIONAL_ID")),
            individuals=((NAME_T, national),),
        )  # fmt: skip

    namesakes = evidence(side("cantho", CANTHO_EDGE, ID_A), side("angiang", ANGIANG_EDGE, ID_B))
    assert "SHARED_NAME_BIRTH_DATE" not in namesakes
    mismatch = namesakes["NATIONAL_ID_MISMATCH"]
    assert mismatch.weight == -7.0 and "different national ID tokens" in mismatch.detail
    pair = score_pair(side("cantho", CANTHO_EDGE, ID_A), side("angiang", ANGIANG_EDGE, ID_B), CFG)
    assert pair is not None and not pair.linked  # close in space and time, still not linked
    same = evidence(side("cantho", CANTHO_EDGE, ID_A), side("angiang", ANGIANG_EDGE, ID_A))
    assert same["SHARED_NATIONAL_ID"].weight == 12.0
    assert same["SHARED_NAME_BIRTH_DATE"].weight == 10.0 and "NATIONAL_ID_MISMATCH" not in same
