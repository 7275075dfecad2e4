"""Pseudonymisation: normalisers, keyed tokens with rotation, raw identifier detection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.pseudonym import (
    TOKEN_RULE,
    KeyRing,
    SharedKeyTokenizer,
    Token,
    Tokenizer,
    assert_subjects,
    assert_token,
    canonical,
    find_identifier_in_text,
    find_raw_identifier,
    normalise_birth_date,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    normalise_plate,
    person_key,
    pseudonymise_person,
    pseudonymise_subject,
    raw_forms,
    token_input,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture
def tokenizer() -> SharedKeyTokenizer:
    return SharedKeyTokenizer(KeyRing.generate())


def ring(*ids: str) -> KeyRing:
    """A ring of fresh random keys; the last id is active."""
    return KeyRing(ids[-1], {key_id: secrets.token_bytes(32) for key_id in ids})


# --- normalisers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "Nguyễn  Văn   Ánh",
        "NGUYEN VAN ANH",
        "nguyễn văn ánh",
        unicodedata.normalize("NFD", "Nguyễn Văn Ánh"),
        " nguyen\tvan\nANH ",
        "ＮＧＵＹＥＮ ＶＡＮ ＡＮＨ",  # noqa: RUF001 (full-width input is the point)
    ],
)
def test_person_name_spellings_normalise_equal(spelling: str) -> None:
    assert normalise_name(spelling) == "nguyen van anh"


def test_d_with_stroke_and_its_look_alikes_fold_to_d() -> None:
    # Ð (U+00D0, Icelandic eth) is often typed for Đ (U+0110); both mean the same letter
    assert normalise_name("Đặng Thị Đào") == "dang thi dao"
    assert normalise_name("Ðặng thị đào") == "dang thi dao"
    assert normalise_name("Trương Thị Thơ") == "truong thi tho"  # horns go too
    assert normalise_name("Y-Moan H'Hen") == "y moan hhen"


def test_marks_on_non_latin_letters_are_kept() -> None:
    # Khmer vowel signs are part of the letter; stripping them would merge distinct names
    assert normalise_name("សុខ  ចាន់") == "សុខ ចាន់"
    assert normalise_name("សុខ") != normalise_name("សខ")


@pytest.mark.parametrize(
    "birth_date",
    ["1990-05-02", "02/05/1990", "2/5/1990", "2.5.1990", "1990/05/02", date(1990, 5, 2)],
)
def test_person_key_with_birth_date_in_any_spelling(birth_date: date | str) -> None:
    assert person_key("NGUYỄN VĂN ÁNH", birth_date) == "nguyen van anh|1990-05-02"


def test_person_key_precision_is_part_of_the_key() -> None:
    assert person_key("Nguyen Van Anh") == "nguyen van anh"
    assert person_key("Nguyen Van Anh", "1990") == "nguyen van anh|1990"
    assert person_key("Nguyen Van Anh", datetime(1990, 5, 2, 7, 30)) == person_key(
        "Nguyen Van Anh", "1990-05-02"
    )
    assert person_key("Nguyen Van Anh", "1990-05-02") != person_key("Nguyen Van Anh", "1990")


@pytest.mark.parametrize(
    "spelling", ["001 090 012 345", "001.090.012.345", "001-090-012-345", " 001090012345 "]
)
def test_cccd_accepts_separators(spelling: str) -> None:
    assert normalise_national_id(spelling) == "001090012345"


def test_cmnd_has_nine_digits() -> None:
    assert normalise_national_id("385 123 456") == "385123456"


@pytest.mark.parametrize(
    "spelling",
    [
        "0912 345 678",
        "+84 912-345-678",
        "84912345678",
        "0912.345.678",
        "(+84) 912 345 678",
        "+84 (0) 912 345 678",
        "0084 912 345 678",
        "(091) 234-5678",
    ],
)
def test_phone_spellings_normalise_equal(spelling: str) -> None:
    assert normalise_phone(spelling) == "+84912345678"


def test_pre_2018_mobile_numbers_map_to_current_numbers() -> None:
    assert normalise_phone("0168 912 3456") == normalise_phone("038 912 3456") == "+84389123456"
    assert normalise_phone("+84 128 123 4567") == "+84781234567"


def test_fixed_lines_and_foreign_numbers() -> None:
    assert normalise_phone("0292 3812 345") == "+842923812345"
    assert normalise_phone("+855 12 345 678") == "+85512345678"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("65B1-234.56", "65B123456"),
        ("65B1 23456", "65B123456"),
        ("65b1-234.56", "65B123456"),
        ("65-B1 234.56", "65B123456"),
        ("67F1 23456", "67F123456"),
        ("51G-123.45", "51G12345"),
        ("51G12345", "51G12345"),
        ("51g 123 45", "51G12345"),
        ("29A-12345", "29A12345"),
        ("29A-1234", "29A1234"),
        ("51LD-123.45", "51LD12345"),
        ("29MĐ1-123.45", "29MD112345"),
        ("29-mđ1 12345", "29MD112345"),
    ],
)
def test_plate_spellings_normalise_to_upper_alnum(spelling: str, expected: str) -> None:
    assert normalise_plate(spelling) == expected


REJECTIONS: list[tuple[Callable[[Any], str], Any, str]] = [
    (normalise_name, "", "person name: is empty"),
    (normalise_name, 42, "person name: expected text, got int"),
    (normalise_name, "Nguyen Van 2", "person name: contains a digit; a name holds letters only"),
    (normalise_name, "Nguyen#Anh", "person name: contains '#'"),
    (normalise_name, "- '", "person name: has no letters"),
    (normalise_birth_date, "1990-02-30", "birth date: not a calendar date"),
    (normalise_birth_date, "May 2, 1990", "birth date: expected YYYY-MM-DD, DD/MM/YYYY or a year"),
    (normalise_birth_date, "1850", "birth date: year 1850 is outside 1900.."),
    (normalise_birth_date, "2999-01-01", "birth date: must lie between 1900-01-01 and today"),
    (normalise_national_id, "12345", "national ID number: has 5 digits; expected 12 (CCCD)"),
    (normalise_national_id, "0010900123456", "national ID number: has 13 digits"),
    (normalise_national_id, "00109001234A", "national ID number: contains 'A'"),
    (normalise_national_id, "  ", "national ID number: is empty"),
    (normalise_phone, "912345678", "phone number: has no +84, 84 or 0 prefix"),
    (normalise_phone, "0987 654 32", "phone number: has 8 digits after the +84/0 prefix"),
    (normalise_phone, "+84 912 345 678 9", "phone number: a 10-digit national number must be"),
    (normalise_phone, "0412 345 678", "phone number: a Vietnamese mobile number starts with 03"),
    (normalise_phone, "00855 12 345 678", "phone number: starts with 00; write international"),
    (normalise_phone, "+0 1234", "phone number: an international number has a country code"),
    (normalise_phone, "0912 345 678 ext 2", "phone number: contains 'e'"),
    (normalise_plate, "6B1-23456", "vehicle plate: starts with 1 digits; expected a 2-digit"),
    (normalise_plate, "05B1-23456", "vehicle plate: province code 05 does not exist"),
    (normalise_plate, "65-123456", "vehicle plate: has no series letters"),
    (normalise_plate, "65ABC-12345", "vehicle plate: has 3 series letters"),
    (normalise_plate, "65B1-234567", "vehicle plate: has 7 digits after the series letters"),
    (normalise_plate, "65B-123", "vehicle plate: has 3 digits after the series letters"),
    (normalise_plate, "65B1-2345X", "vehicle plate: has letters after the number"),
    (normalise_plate, "65B1#23456", "vehicle plate: contains '#'"),
]


@pytest.mark.parametrize(("normaliser", "value", "message"), REJECTIONS)
def test_rejections_name_the_kind_and_the_problem(
    normaliser: Callable[[Any], str], value: Any, message: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        normaliser(value)
    assert str(caught.value).startswith(message)
    assert caught.value.reason == "invalid"
    if isinstance(value, str) and len(value.strip()) > 4:
        assert value not in str(caught.value)  # raw values stay out of messages and logs


def test_canonical_dispatches_by_kind() -> None:
    assert canonical("PERSON", "001 090 012 345", "1990-05-02") == "001090012345"
    assert canonical("PERSON", "Nguyễn Văn Ánh", "02/05/1990") == "nguyen van anh|1990-05-02"
    assert canonical("VEHICLE", "65B1-234.56") == "65B123456"
    assert canonical("PHONE", "0912 345 678") == "+84912345678"
    with pytest.raises(InvalidRecordError, match=r"subject kind 'BOAT' is not one of PERSON, V"):
        canonical("BOAT", "x")


# --- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spellings"),
    [
        ("PERSON", ["Nguyễn  Văn Ánh", "NGUYEN VAN ANH", "nguyễn văn ánh"]),
        ("PERSON", ["001 090 012 345", "001090012345", "001-090-012-345"]),
        ("VEHICLE", ["65B1-234.56", "65b1 23456", "65B123456"]),
        ("PHONE", ["0912 345 678", "+84 912-345-678", "84912345678"]),
    ],
)
def test_equal_identifiers_in_different_spellings_give_equal_tokens(
    tokenizer: SharedKeyTokenizer, kind: str, spellings: list[str]
) -> None:
    subjects = [pseudonymise_subject(tokenizer, kind, s, "SUSPECT") for s in spellings]
    assert len({s["token"] for s in subjects}) == 1


def test_token_is_hmac_sha256_of_the_domain_separated_value() -> None:
    # pins the contract: every agency must compute exactly this, or nothing matches
    key = secrets.token_bytes(32)
    tokenizer = SharedKeyTokenizer(KeyRing("k1", {"k1": key}))
    expected = hmac.new(key, b"xborder/pseudonym/v1\x00PHONE\x00+84912345678", hashlib.sha256)
    assert tokenizer.token("PHONE", "+84912345678") == Token(expected.hexdigest(), "k1")
    assert token_input("PHONE", "+84912345678") == b"xborder/pseudonym/v1\x00PHONE\x00+84912345678"


def test_different_keys_and_kinds_give_different_tokens() -> None:
    first, second = SharedKeyTokenizer(ring("k1")), SharedKeyTokenizer(ring("k1"))
    assert first.token("VEHICLE", "65B123456") != second.token("VEHICLE", "65B123456")
    # domain separation: the same text under another kind is another token
    assert first.token("PERSON", "385123456") != first.token("PHONE", "385123456")


def test_rotation_keeps_old_tokens_findable() -> None:
    old_ring = ring("k1")
    old = SharedKeyTokenizer(old_ring).token("PHONE", "+84912345678")
    rotated = SharedKeyTokenizer(old_ring.rotate("k2", secrets.token_bytes(32)))
    new = rotated.token("PHONE", "+84912345678")
    assert new.key_id == "k2" and new.token_hex != old.token_hex
    lookup = rotated.tokens_for_lookup("PHONE", "+84912345678")
    assert lookup == [new, old]  # the active key first
    retired = SharedKeyTokenizer(rotated.key_ring.retire("k1"))
    assert retired.tokens_for_lookup("PHONE", "+84912345678") == [new]


def test_rotation_mistakes_are_refused() -> None:
    keys = ring("k1", "k2")
    with pytest.raises(ConfigurationError, match="cannot retire the active key 'k2'"):
        keys.retire("k2")
    with pytest.raises(ConfigurationError, match="key id 'k1' is already in use"):
        keys.rotate("k1", secrets.token_bytes(32))
    with pytest.raises(ConfigurationError, match=r"key 'k9' is not in the key ring \(k2, k1\)"):
        keys.retire("k9")


def test_short_key_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeyRing("k1", {"k1": b"x" * 31})
    message = str(caught.value)
    assert "key 'k1' is 31 bytes; keys must be at least 32 bytes" in message
    assert "secrets.token_hex(32)" in message


def write_key_file(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(0o600)
    return path


def test_key_file_accepts_hex_and_base64(tmp_path: Path) -> None:
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    k3 = b"\xfb\xff\xbf" * 11  # "-_" in the URL-safe alphabet
    path = write_key_file(
        tmp_path,
        {
            "active": "k2",
            "keys": {
                "k1": k1.hex(),
                "k2": base64.b64encode(k2).decode(),
                "k3": "base64:" + base64.urlsafe_b64encode(k3).decode().rstrip("="),
            },
        },
    )
    loaded = KeyRing.from_file(path)
    assert loaded.key_ids == ("k2", "k1", "k3")
    assert [loaded.secret(k) for k in ("k1", "k2", "k3")] == [k1, k2, k3]
    reloaded = KeyRing.from_json(loaded.to_json())
    assert [reloaded.secret(k) for k in loaded.key_ids] == [k2, k1, k3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON (line 1, column 2"),
        ({"keys": {}}, "needs 'active' (a key id) and 'keys' (an object)"),
        ({"active": "k1", "keys": {}}, "holds no keys"),
        ({"active": "k3", "keys": {"k1": "00" * 32}}, "active key 'k3' is not among the keys (k1)"),
        (
            {"active": "k1", "keys": {"k1": "00" * 16}},
            "key 'k1' is 16 bytes; keys must be at least",
        ),
        ({"active": "k1", "keys": {"k1": "not!base64"}}, "key 'k1' is neither hex nor base64"),
        ({"active": "k 1", "keys": {"k 1": "00" * 32}}, "key id 'k 1' must be 1-64 letters"),
        ({"active": "k1", "keys": {"k1": 7}}, "key 'k1' must be a hex or base64 string"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, content: Any, message: str) -> None:
    path = write_key_file(tmp_path, content)
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.from_file(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"key file .*absent\.json does not exist"):
        KeyRing.from_file(tmp_path / "absent.json")


def test_key_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_key_file(tmp_path, {"active": "k1", "keys": {"k1": "ab" * 32}})
    path.chmod(0o644)
    KeyRing.from_file(path)
    assert "accessible to other users (mode 644); restrict it: chmod 600" in caplog.text


def test_secrets_never_show_in_repr() -> None:
    keys = KeyRing.generate(2)
    text = repr(SharedKeyTokenizer(keys))
    assert (
        text
        == "SharedKeyTokenizer(KeyRing(active='example-2', key_ids=['example-2', 'example-1']))"
    )
    for key_id in keys.key_ids:
        assert keys.secret(key_id).hex() not in text


def test_generated_keys_are_fresh_examples() -> None:
    first, second = KeyRing.generate(), KeyRing.generate()
    assert first.key_ids == ("example-1",)
    assert first.secret("example-1") != second.secret("example-1")
    assert len(first.secret("example-1")) == 32


class EchoServiceTokenizer:
    """Stands in for an OPRF-service tokenizer: same interface, different machinery."""

    def token(self, kind: str, normalised: str) -> Token:
        return Token(hashlib.sha256(token_input(kind, normalised)).hexdigest(), "service-v1")

    def tokens_for_lookup(self, kind: str, normalised: str) -> list[Token]:
        return [self.token(kind, normalised)]


def test_callers_depend_only_on_the_tokenizer_interface() -> None:
    assert isinstance(SharedKeyTokenizer(ring("k1")), Tokenizer)
    replacement = EchoServiceTokenizer()
    assert isinstance(replacement, Tokenizer)
    subject = pseudonymise_subject(replacement, "PHONE", "0912 345 678", "WITNESS")
    assert subject["key_id"] == "service-v1"


def test_token_shape_is_enforced() -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        Token("AB" * 32, "k1")
    with pytest.raises(InvalidRecordError, match="VEHICLE value to tokenise is empty"):
        token_input("VEHICLE", "")


# --- subjects ----------------------------------------------------------------------------


def test_pseudonymised_subject_is_an_avro_subject(tokenizer: SharedKeyTokenizer) -> None:
    subject = pseudonymise_subject(
        tokenizer, "PERSON", "Nguyễn Văn Ánh", "SUSPECT", {"age_band": "30-39"},
        birth_date="02/05/1990",
    )  # fmt: skip
    expected = tokenizer.token("PERSON", "nguyen van anh|1990-05-02")
    assert subject == {
        "role": "SUSPECT",
        "kind": "PERSON",
        "token": expected.token_hex,
        "key_id": "example-1",
        "descriptors": {"age_band": "30-39"},
        "person_key": "NAME_BIRTH_DATE",
        "individual": "",
    }


def test_person_key_says_which_identifier_made_the_token(tokenizer: SharedKeyTokenizer) -> None:
    def key(raw: str, born: str | None = None) -> str:
        return str(
            pseudonymise_subject(tokenizer, "PERSON", raw, "SUSPECT", birth_date=born)["person_key"]
        )

    assert key("0920 9000 1234") == "NATIONAL_ID"
    assert key("Trần Thị Lan", "1990-05-02") == "NAME_BIRTH_DATE"
    assert key("Trần Thị Lan", "1990") == "NAME_BIRTH_YEAR"
    assert key("Trần Thị Lan") == "NAME"
    plate = pseudonymise_subject(tokenizer, "VEHICLE", "65B1-234.56", "SUSPECT")
    assert plate["person_key"] == "UNSPECIFIED"


def test_a_person_with_both_keys_is_two_tokens_of_one_individual(
    tokenizer: SharedKeyTokenizer,
) -> None:
    both = pseudonymise_person(
        tokenizer, "SUSPECT", national_id="092090001234", name="Trần Thị Lan",
        birth_date="02/05/1990", individual="p1",
    )  # fmt: skip
    assert [(s["person_key"], s["individual"]) for s in both] == [
        ("NATIONAL_ID", "p1"),
        ("NAME_BIRTH_DATE", "p1"),
    ]
    assert both[0]["token"] == tokenizer.token("PERSON", "092090001234").token_hex
    with pytest.raises(InvalidRecordError, match="give an individual label"):
        pseudonymise_person(tokenizer, "SUSPECT", national_id="092090001234", name="Lan")
    with pytest.raises(InvalidRecordError, match="national ID number, a name, or both"):
        pseudonymise_person(tokenizer, "SUSPECT")


def test_subject_role_and_identifying_descriptors_are_refused(
    tokenizer: SharedKeyTokenizer,
) -> None:
    with pytest.raises(InvalidRecordError, match="subject role 'BYSTANDER' is not one of SUSPECT"):
        pseudonymise_subject(tokenizer, "VEHICLE", "65B1-234.56", "BYSTANDER")
    with pytest.raises(InvalidRecordError) as caught:
        pseudonymise_subject(
            tokenizer, "VEHICLE", "65B1-234.56", "SUSPECT", {"owner": "goi 0912 345 678"}
        )
    assert str(caught.value) == (
        "descriptors['owner']: contains what looks like a phone number; descriptors must not "
        "identify anyone (tokenise the identifier as a subject of its own)"
    )
    assert caught.value.reason == "raw-identifier"


def test_encoded_event_holds_no_form_of_the_raw_identifiers(
    tokenizer: SharedKeyTokenizer,
) -> None:
    from xborder.codec import AvroCodec
    from xborder.samples import sample_events
    from xborder.schemas import SchemaStore

    raw = [("PERSON", "Nguyễn Văn Ánh"), ("VEHICLE", "65B1-234.56"), ("PHONE", "0912 345 678")]
    event = sample_events(1)[0]
    event["subjects"] = [
        pseudonymise_subject(tokenizer, kind, value, "SUSPECT", birth_date="1990-05-02")
        for kind, value in raw
    ]
    codec = AvroCodec(SchemaStore(SCHEMAS_DIR))
    payload = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
    for kind, value in raw:
        for form in raw_forms(kind, value, "1990-05-02" if kind == "PERSON" else None):
            assert form.encode() not in payload, (kind, form)


# --- raw identifier detection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("65B1-234.56", "looks like a vehicle plate"),
        ("51g 12345", "looks like a vehicle plate"),
        ("0912 345 678", "looks like a phone number"),
        ("+84912345678", "looks like a phone number"),
        ("00855 12 345 678", "looks like a phone number"),
        ("385123456", "looks like a 9-digit national ID number (CMND)"),
        ("079 090 012 345", "looks like a 12-digit national ID number (CCCD)"),
        ("Nguyễn Văn Ánh", "looks like a person's name"),
        ("an@example.vn", "looks like an e-mail address"),
        ("xe 65B1 234.56 mau den", "contains what looks like a vehicle plate"),
        ("A" * 64, "is upper-case hex; tokens are lower-case"),
        ("ab" * 16, "is 32 hex characters, not 64"),
        (" " + "a" * 64, "has white space around the token"),
        ("", "is empty"),
        ("unknown", "is not a token"),
    ],
)
def test_find_raw_identifier_describes_what_is_not_a_token(value: str, description: str) -> None:
    assert find_raw_identifier(value) == description


def test_real_tokens_pass(tokenizer: SharedKeyTokenizer) -> None:
    token = tokenizer.token("VEHICLE", "65B123456").token_hex
    assert find_raw_identifier(token) is None
    assert assert_token(token, "subjects[0].token") == token


def test_assert_token_names_the_field_and_keeps_the_value_out() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        assert_token("65B1-234.56", "subjects[0].token")
    assert str(caught.value) == (
        "subjects[0].token: looks like a vehicle plate; tokens must be 64 hex chars from "
        "xborder.pseudonym (raw identifiers never leave the agency)"
    )
    assert caught.value.reason == "raw-identifier"
    with pytest.raises(InvalidRecordError, match=r"subjects\[1\]\.token: expected a token str"):
        assert_token(None, "subjects[1].token")


def test_assert_subjects_checks_tokens_and_descriptors(tokenizer: SharedKeyTokenizer) -> None:
    good = pseudonymise_subject(tokenizer, "PHONE", "0912 345 678", "VICTIM", {"colour": "red"})
    assert_subjects([good])
    leaky = {**good, "descriptors": {"id": "CCCD 079 090 012 345"}}
    with pytest.raises(InvalidRecordError, match=r"subjects\[1\]\.descriptors\['id'\]: contains"):
        assert_subjects([good, leaky])
    raw = {**good, "token": "0912345678"}
    with pytest.raises(
        InvalidRecordError,
        match=re.escape(f"subjects[0].token: looks like a phone number; {TOKEN_RULE}"),
    ):
        assert_subjects([raw])


@pytest.mark.parametrize("text", ["30-39", "Honda Wave Alpha 110", "black", "2019", "1m70"])
def test_ordinary_descriptors_are_not_identifiers(text: str) -> None:
    assert find_identifier_in_text(text) is None


# --- raw forms ---------------------------------------------------------------------------


def test_phone_raw_forms_cover_the_usual_spellings() -> None:
    forms = raw_forms("PHONE", "0912 345 678")
    expected = {"0912 345 678", "+84912345678", "84912345678", "0912345678", "912345678",
                "+84 912 345 678", "+84 912-345-678", "0912.345.678", "091 234 5678",
                "(+84) 912 345 678", "0084912345678"}  # fmt: skip
    assert expected - forms == set()
    parsed = set()
    for form in forms - {"912345678"}:  # the bare national number has no prefix
        parsed.add(normalise_phone(form))
    assert parsed == {"+84912345678"}
    # a converted mobile also appears under its pre-2018 number
    assert "01629345678" in raw_forms("PHONE", "0329 345 678")


def test_plate_raw_forms_all_denote_the_plate() -> None:
    forms = raw_forms("VEHICLE", "65B1-234.56")
    assert {"65B1-234.56", "65B123456", "65b1 23456", "65-B1 234.56", "65B1.23456"} <= forms
    assert {normalise_plate(form) for form in forms} == {"65B123456"}


def test_national_id_and_name_raw_forms() -> None:
    id_forms = raw_forms("PERSON", "079090012345")
    assert {"079 090 012 345", "0790.9001.2345", "079-090-012-345"} <= id_forms
    assert {normalise_national_id(form) for form in id_forms} == {"079090012345"}
    name_forms = raw_forms("PERSON", "Nguyễn Văn Ánh", "1990-05-02")
    nfd = unicodedata.normalize("NFD", "NGUYỄN VĂN ÁNH")
    assert {"nguyen van anh", "NGUYEN VAN ANH", "NguyenVanAnh", nfd, "02/05/1990"} <= name_forms


def test_raw_forms_refuse_invalid_identifiers() -> None:
    with pytest.raises(InvalidRecordError, match="vehicle plate: has 3 series letters"):
        raw_forms("VEHICLE", "65ABC-12345")
