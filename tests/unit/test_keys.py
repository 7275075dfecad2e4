"""Key rings from settings, ``xborder keys show-ids``, the worker's unknown-key dead letter
and matching across a rotation, without a broker."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.correlation.model import view_from_event
from streams.correlation.scoring import ScoringConfig, score_pair
from tests.unit.test_correlation_support import codec, encodes, jurisdictions
from xborder.cli import main
from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.pseudonym import (
    KeyRing,
    SharedKeyTokenizer,
    check_key_ids,
    key_ring_from_settings,
    pseudonymise_person,
    pseudonymise_subject,
    pseudonymise_subjects,
    tokenizer_from_settings,
)
from xborder.samples import sample_events
from xborder.settings import load_settings, to_env

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
PLATE = "65B1-234.56"


def _ring_json(ring: KeyRing) -> str:
    return ring.to_json()


def test_the_key_ring_comes_from_the_environment_and_is_masked_in_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = KeyRing.generate(2, prefix="env-")
    text = _ring_json(ring)
    secret_hex = ring.secret("env-1").hex()
    monkeypatch.setenv("XBORDER_TOKENIZER__KEY_RING", text)
    settings = load_settings()
    loaded = key_ring_from_settings(settings)
    assert loaded.key_ids == ring.key_ids
    assert SharedKeyTokenizer(loaded).token("VEHICLE", "65B123456") == SharedKeyTokenizer(
        ring
    ).token("VEHICLE", "65B123456")
    assert main(["settings"]) == 0
    shown = capsys.readouterr().out
    assert "XBORDER_TOKENIZER__KEY_RING=" in shown
    assert secret_hex not in shown and ring.secret("env-2").hex() not in shown
    assert secret_hex in to_env(settings)["XBORDER_TOKENIZER__KEY_RING"]  # a child needs it
    assert secret_hex not in repr(settings) and secret_hex not in repr(loaded)


def test_both_key_sources_at_once_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XBORDER_TOKENIZER__KEY_RING", _ring_json(KeyRing.generate()))
    monkeypatch.setenv("XBORDER_KEY_FILE", str(tmp_path / "keys.json"))
    with pytest.raises(ConfigurationError, match="keep one"):
        key_ring_from_settings(load_settings())


def test_keys_commands_use_the_key_file_setting_and_show_ids_prints_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ring.json"
    monkeypatch.setenv("XBORDER_KEY_FILE", str(path))
    assert main(["keys", "generate", "--key-id", "k-old"]) == 0
    assert main(["keys", "rotate", "--key-id", "k-new"]) == 0
    capsys.readouterr()
    assert main(["keys", "show-ids"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "active: k-new",
        "lookup: k-old",
        "XBORDER_TOKENIZER__ACCEPTED_KEY_IDS=k-new,k-old",
    ]
    ring = KeyRing.from_file(path)
    assert all(ring.secret(k).hex() not in out for k in ring.key_ids)
    settings = load_settings()
    tokenizer = tokenizer_from_settings(settings)
    assert isinstance(tokenizer, SharedKeyTokenizer)
    assert tokenizer.key_ring.active_key_id == "k-new"


def test_keys_without_a_path_or_setting_say_what_to_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["keys", "rotate"]) != 0
    assert "XBORDER_KEY_FILE" in capsys.readouterr().err


def test_accepted_key_ids_are_a_list_of_ids() -> None:
    settings = load_settings(**{"tokenizer.accepted_key_ids": " k2, k1 ,"})
    assert settings.tokenizer.accepted_ids == frozenset({"k1", "k2"})
    assert load_settings().tokenizer.accepted_ids == frozenset()


def test_a_subject_under_an_unknown_key_is_refused_as_unknown_key() -> None:
    subjects = [{"key_id": "k1", "token": "a" * 64}, {"key_id": "rogue", "token": "b" * 64}]
    check_key_ids(subjects, frozenset())  # nothing configured: any id
    check_key_ids(subjects[:1], frozenset({"k1"}))
    with pytest.raises(InvalidRecordError) as caught:
        check_key_ids(subjects, frozenset({"k1", "k2"}))
    assert caught.value.reason == "unknown-key"
    assert "subjects[1].key_id" in str(caught.value) and "rogue" in str(caught.value)
    assert "b" * 64 not in str(caught.value)


def test_the_worker_classifies_a_subject_under_an_unknown_key_as_a_dead_letter() -> None:
    from streams.flows.ingest import Accepted, classify
    from xborder.agencies import load_agencies
    from xborder.codec import AvroCodec
    from xborder.deadletter import DeadLetter
    from xborder.producer import EventEncoder
    from xborder.schemas import SchemaStore

    settings = load_settings()
    encoder = EventEncoder(
        settings,
        load_agencies(settings.agencies_config),
        AvroCodec(SchemaStore(settings.schemas_dir)),
        "cantho",
    )
    event = copy.deepcopy(sample_events(1, now=NOW)[0])
    ring = KeyRing.generate(1, prefix="k")
    tokenizer = SharedKeyTokenizer(ring)
    event["subjects"] = [pseudonymise_subject(tokenizer, "VEHICLE", PLATE, "SUSPECT")]
    codec = encoder.codec
    payload = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
    now_ms = int(NOW.timestamp() * 1000)

    def outcome(accepted: frozenset[str]) -> Any:
        return classify(
            codec, encoder.rules, b"k", payload, "incidents.cantho", 0, 7, now_ms, accepted
        )

    assert isinstance(outcome(frozenset({"k1"})), Accepted)
    assert isinstance(outcome(frozenset()), Accepted)
    refused = outcome(frozenset({"k2", "k3"}))
    assert isinstance(refused, DeadLetter)
    assert (refused.reason, refused.value, refused.offset) == ("unknown-key", payload, 7)


def _pair() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two sample events of two agencies that share a plate (the samples' first two)."""
    first, second = sample_events(2, now=NOW)
    assert first["agency"] != second["agency"]
    return first, second


def _decoded(event: dict[str, Any]) -> dict[str, Any]:
    return encodes("IncidentReported", codec().from_json("IncidentReported", event))


def _score(a: dict[str, Any], b: dict[str, Any]) -> Any:
    located = jurisdictions()
    return score_pair(
        view_from_event(_decoded(a), located),
        view_from_event(_decoded(b), located),
        ScoringConfig(),
    )


def _linked(a: dict[str, Any], b: dict[str, Any]) -> bool:
    pair = _score(a, b)
    return pair is not None and bool(pair.linked)


def test_an_old_key_event_and_a_new_key_event_of_one_identifier_still_correlate() -> None:
    """Rotation: agency A published before the rotation (old key only); agency B, with the
    rotated ring, publishes the identifier under both keys; they share the old-key token
    and link. Two events after the rotation share the new-key token."""
    old_ring = KeyRing.generate(1, prefix="k-old-")
    new_ring = old_ring.rotate("k-new", b"\x07" * 32)
    before, during = _pair()
    before["subjects"] = pseudonymise_subjects(
        SharedKeyTokenizer(old_ring), "VEHICLE", PLATE, "SUSPECT"
    )
    during["subjects"] = pseudonymise_subjects(
        SharedKeyTokenizer(new_ring), "VEHICLE", "65 b1 234 56", "SUSPECT"
    )
    assert [s["key_id"] for s in before["subjects"]] == ["k-old-1"]
    assert [s["key_id"] for s in during["subjects"]] == ["k-new", "k-old-1"]
    assert during["subjects"][1]["token"] == before["subjects"][0]["token"]
    assert _linked(before, during)

    # the evidence counts once however many keys carry it
    both = _score(before, during)
    one = _score(before, dict(during, subjects=during["subjects"][1:]))
    assert both is not None and one is not None and both.score == one.score

    # without the transition (new key only) the pair would be lost: why every key is sent
    during["subjects"] = pseudonymise_subjects(
        SharedKeyTokenizer(new_ring), "VEHICLE", PLATE, "SUSPECT", every_key=False
    )
    assert not _linked(before, during)


def test_a_person_is_published_under_every_accepted_key() -> None:
    ring = KeyRing.generate(2, prefix="k")
    subjects = pseudonymise_person(
        SharedKeyTokenizer(ring),
        "SUSPECT",
        national_id="079201001234",
        name="Nguyen Van An",
        birth_date="1990-05-17",
        individual="p1",
    )
    assert [(s["key_id"], s["person_key"]) for s in subjects] == [
        ("k2", "NATIONAL_ID"),
        ("k1", "NATIONAL_ID"),
        ("k2", "NAME_BIRTH_DATE"),
        ("k1", "NAME_BIRTH_DATE"),
    ]
    assert json.dumps(subjects).count("079201001234") == 0


def test_pseudonymise_publishes_under_every_key_of_a_rotated_ring() -> None:
    from xborder.pseudonymise_cli import pseudonymise_event

    event = copy.deepcopy(sample_events(1, now=NOW)[0])
    event["subjects"] = [{"kind": "VEHICLE", "raw": PLATE, "role": "SUSPECT"}]
    ring = KeyRing.generate(1, prefix="k-old-").rotate("k-new", b"\x05" * 32)
    out = pseudonymise_event(SharedKeyTokenizer(ring), event)
    assert [s["key_id"] for s in out["subjects"]] == ["k-new", "k-old-1"]
