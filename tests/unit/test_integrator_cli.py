"""The integrators' commands without a broker: ``keys generate`` (owner-only file, no
secret printed, no silent overwrite), ``pseudonymise`` (raw identifiers in, the library's
tokens out, per-line errors that never repeat a raw value) and ``schemas export``
(self-contained files whose fingerprints stock fastavro and the wire agree on)."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from xborder.agencies import load_agencies
from xborder.cli import main
from xborder.codec import AvroCodec
from xborder.producer import EventEncoder
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subject
from xborder.pseudonymise_cli import pseudonymise_lines
from xborder.samples import sample_events
from xborder.settings import load_settings

PLATE_SPELLINGS = ("65B1-234.56", "65 B1 234 56", "65b1.23456")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _raw_event(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid cantho IncidentReported event whose subjects are raw entries."""
    event = sample_events(1)[0]
    return {**event, "subjects": subjects}


@pytest.fixture
def key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "keys.json"
    assert _run(capsys, "keys", "generate", str(path), "--example")[0] == 0
    return path


# -- keys generate ----------------------------------------------------------------------


def test_keys_generate_writes_an_owner_only_ring_and_prints_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agency-keys.json"
    status, out, err = _run(capsys, "keys", "generate", str(path), "--key-id", "k2026-12")
    assert status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = KeyRing.from_file(path)
    assert ring.key_ids == ("k2026-12",)
    secret = ring.secret("k2026-12")
    assert len(secret) == 32
    assert str(path) in out and "k2026-12" in out
    for shown in (out, err):
        assert secret.hex() not in shown
    assert "EXAMPLE" not in path.read_text()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_keys_generate_refuses_to_overwrite_unless_forced(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = key_file.read_text()
    status, _, err = _run(capsys, "keys", "generate", str(key_file))
    assert status == 2
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert key_file.read_text() == before
    assert _run(capsys, "keys", "generate", str(key_file), "--force", "--key-id", "k2")[0] == 0
    assert KeyRing.from_file(key_file).key_ids == ("k2",)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_example_keys_are_marked_as_such(key_file: Path) -> None:
    document = json.loads(key_file.read_text())
    assert "EXAMPLE" in document["note"]
    assert document["active"].startswith("example-")


# -- pseudonymise -----------------------------------------------------------------------


def test_pseudonymise_gives_the_library_tokens_and_events_publish_accepts(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: AvroCodec
) -> None:
    people = [
        {"kind": "PHONE", "raw": "0912 345 678", "role": "SUSPECT"},
        {"kind": "PERSON", "national_id": "079 203 001 234", "role": "SUSPECT"},
        {"kind": "PERSON", "name": "Nguyễn Văn Ánh", "birth_date": "12/03/1990", "role": "VICTIM"},
    ]
    vehicle = {"kind": "VEHICLE", "role": "SUSPECT", "descriptors": {"c": "b"}}
    events = [_raw_event([{**vehicle, "raw": plate}, *people]) for plate in PLATE_SPELLINGS]
    source = tmp_path / "raw.jsonl"
    source.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    target = tmp_path / "tokens.jsonl"
    status, _, err = _run(
        capsys, "pseudonymise", str(source), "--key-file", str(key_file), "-o", str(target)
    )
    assert status == 0, err
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(out) == 3
    tokenizer = SharedKeyTokenizer(KeyRing.from_file(key_file))
    expected = [
        pseudonymise_subject(tokenizer, "VEHICLE", "65B123456", "SUSPECT", {"c": "b"}),
        pseudonymise_subject(tokenizer, "PHONE", "+84912345678", "SUSPECT"),
        pseudonymise_subject(tokenizer, "PERSON", "079203001234", "SUSPECT"),
        pseudonymise_subject(
            tokenizer, "PERSON", "nguyen van anh", "VICTIM", birth_date="1990-03-12"
        ),
    ]
    for event, raw in zip(out, events, strict=True):
        assert event["subjects"] == expected  # every spelling, one token
        assert {k: v for k, v in event.items() if k != "subjects"} == {
            k: v for k, v in raw.items() if k != "subjects"
        }
    # what 'xborder publish' validates and encodes
    settings = load_settings()
    encoder = EventEncoder(settings, load_agencies(settings.agencies_config), codec, "cantho")
    for event in out:
        assert encoder.encode(event)[:2] == b"\xc3\x01"


def test_a_person_with_a_national_id_and_a_name_is_two_tokens_of_one_individual(
    key_file: Path,
) -> None:
    person = {
        "kind": "PERSON",
        "national_id": "079203001234",
        "name": "Tran Thi B",
        "birth_date": "1985",
        "role": "SUSPECT",
    }
    event = _raw_event([person, {**person, "national_id": "001099000111", "name": "Le C"}])
    out = io.StringIO()
    tokenizer = SharedKeyTokenizer(KeyRing.from_file(key_file))
    pseudonymise_lines(tokenizer, [json.dumps(event).encode()], "x", out, io.StringIO())
    subjects = json.loads(out.getvalue())["subjects"]
    assert [(s["kind"], s["person_key"], s["individual"]) for s in subjects] == [
        ("PERSON", "NATIONAL_ID", "p1"),
        ("PERSON", "NAME_BIRTH_YEAR", "p1"),
        ("PERSON", "NATIONAL_ID", "p2"),
        ("PERSON", "NAME_BIRTH_YEAR", "p2"),
    ]
    assert len({s["token"] for s in subjects}) == 4


def test_bad_lines_are_reported_by_number_without_their_values_and_the_rest_go(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _raw_event([{"kind": "PHONE", "raw": "+84 912-345-678", "role": "WITNESS"}])
    bad_subjects = [
        ({"kind": "PHONE", "raw": "55512", "role": "SUSPECT"}, "phone number"),
        ({"kind": "PERSON", "name": "079203001234", "role": "SUSPECT"}, "digit"),
        ({"kind": "PERSON", "national_id": "07920300", "role": "SUSPECT"}, "8 digits"),
        ({"kind": "PERSON", "name": "Pham D", "birthdate": "1990", "role": "SUSPECT"},
         "unknown field(s) birthdate"),
        ({"kind": "VEHICLE", "plate": "65B123456", "role": "SUSPECT"}, "unknown field(s) plate"),
        ({"kind": "BOAT", "raw": "AG-1234", "role": "SUSPECT"}, "kind must be one of"),
        ({"kind": "PHONE", "raw": "0912345678"}, "role is missing"),
    ]  # fmt: skip
    lines = [json.dumps(good), "{not json", ""]
    lines += [json.dumps(_raw_event([good["subjects"][0], s])) for s, _ in bad_subjects]
    lines.append(json.dumps(good))
    source = tmp_path / "raw.jsonl"
    source.write_text("\n".join(lines) + "\n")
    status, out, err = _run(capsys, "pseudonymise", str(source), "--key-file", str(key_file))
    assert status == 1
    assert len(out.splitlines()) == 2  # the two good lines, nothing of the bad ones
    errors = err.splitlines()[:-1]
    assert errors[0].startswith(f"{source}:2: not valid JSON")
    for n, (line, (_, why)) in enumerate(zip(errors[1:], bad_subjects, strict=True), start=4):
        assert line.startswith(f"{source}:{n}: subjects[1]"), line
        assert why in line, line
    for raw in ("55512", "079203001234", "07920300", "Pham D", "65B123456", "AG-1234"):
        assert raw not in err
    assert err.splitlines()[-1] == "pseudonymised 2 events (2 subjects), 8 lines failed"


def test_the_key_file_comes_from_the_flag_or_the_setting(
    key_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "raw.jsonl"
    source.write_text(json.dumps(_raw_event([])) + "\n")
    status, out, err = _run(capsys, "pseudonymise", str(source))
    assert status == 2 and out == ""
    assert "XBORDER_KEY_FILE" in err and "xborder keys generate" in err
    status, _, err = _run(capsys, "pseudonymise", str(source), "--key-file", "missing.json")
    assert status == 2 and "does not exist" in err
    monkeypatch.setenv("XBORDER_KEY_FILE", str(key_file))
    status, out, _ = _run(capsys, "pseudonymise", str(source))
    assert status == 0 and json.loads(out)["subjects"] == []


# -- schemas export ---------------------------------------------------------------------


def test_exported_schemas_are_self_contained_and_fingerprinted_as_on_the_wire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: AvroCodec
) -> None:
    out_dir = tmp_path / "avsc"
    status, out, _ = _run(capsys, "schemas", "export", str(out_dir))
    assert status == 0
    manifest = json.loads((out_dir / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["schemas"]}
    assert set(entries) == set(codec.store.names())
    assert "xborder.v1.IncidentReported" in entries
    for name, entry in entries.items():
        path = out_dir / f"{name}.avsc"
        assert entry["file"] == path.name and f"{entry['fingerprint']}  {path}" in out
        stored = codec.store.current(name)
        assert entry["fingerprint"] == stored.fingerprint.hex()
        assert entry["canonical_form"] == stored.canonical
        # stock fastavro on the file alone: no sibling to resolve a reference from
        alone = tmp_path / "alone" / name
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        for parsed in (
            fastavro.parse_schema(json.loads(path.read_text())),
            load_schema(alone / path.name),
        ):
            canonical = to_parsing_canonical_form(parsed)
            assert canonical == entry["canonical_form"]
            assert fingerprint(canonical, "CRC-64-AVRO") == entry["fingerprint"]
    # the fingerprint as it is on the wire, after the magic C3 01
    event = codec.from_json("IncidentReported", sample_events(1)[0])
    wire = codec.encode("IncidentReported", event)
    assert wire[2:10].hex() == entries["xborder.v1.IncidentReported"]["fingerprint"]


# -- docs/integration.md ----------------------------------------------------------------


def test_every_xborder_command_in_the_integration_guide_parses() -> None:
    """The guide's commands exist with those flags (tests/integration/test_integrator_kit.py
    runs them all against the real broker and worker)."""
    from tests.integration.test_integrator_kit import GUIDE, doc_blocks
    from xborder.cli import build_parser

    commands = [
        shlex.split(line)
        for _, language, code in doc_blocks(GUIDE.read_text())
        if language == "sh"
        for line in code.replace("\\\n", " ").splitlines()
        if line.startswith("xborder ")
    ]
    assert {c[1] for c in commands} >= {"keys", "pseudonymise", "publish", "schemas", "status"}
    for command in commands:
        assert build_parser().parse_args(command[1:]).handler is not None, command


def test_keys_rotate_adds_an_active_key_and_keeps_the_old_one_for_lookups(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = KeyRing.from_file(key_file)
    status, out, err = _run(capsys, "keys", "rotate", str(key_file), "--key-id", "k-next")
    assert status == 0 and "k-next" in out and old.active_key_id in out
    ring = KeyRing.from_file(key_file)
    assert ring.key_ids == ("k-next", old.active_key_id)
    assert ring.secret(old.active_key_id) == old.secret(old.active_key_id)
    assert ring.secret("k-next").hex() not in out + err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "EXAMPLE" in json.loads(key_file.read_text())["note"]
    status, _, err = _run(capsys, "keys", "rotate", str(key_file), "--key-id", "k-next")
    assert status == 2 and "already in use" in err
