"""The OPRF tokenisation service in a real subprocess (``xborder tokenizer serve``), with
two agency clients: equal identifiers give equal tokens (the RFC 9497 output of the
service key), requests carry group elements only, the rate limit answers 429, an
unauthenticated client gets 401, and the audit counts evaluations without values."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pysodium
import pytest

from tests.conftest import free_port_pair
from xborder.cli import main
from xborder.pseudonym import KeyRing, token_input
from xborder.pseudonym.oprf import (
    OprfTokenizer,
    TokenizerServiceError,
    blind,
    evaluate,
    service_keys,
)
from xborder.pseudonym.oprf_service import add_agency

BURST = 2000
PLATES = [f"65B1{n:05d}" for n in range(40)]
PHONES = [f"+8490{n:07d}" for n in range(40)]


class RecordingTokenizer(OprfTokenizer):
    """The agency client, keeping every request body it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[bytes] = []

    def _request(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        if body is not None:
            self.bodies.append(body)
        return super()._request(method, path, body)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("tokenizer")
    ring = KeyRing.generate(2, prefix="oprf-")
    key_file = home / "service-keys.json"
    key_file.write_text(ring.to_json())
    key_file.chmod(0o600)
    agencies_file = home / "agencies.json"
    tokens = {agency: f"token-of-{agency}-{os.urandom(8).hex()}" for agency in ("angiang", "probe")}
    for agency, api_token in tokens.items():
        add_agency(agencies_file, agency, api_token)
    port = free_port_pair()
    env = {
        **os.environ,
        "XBORDER_DATA_DIR": str(home / "data"),
        "XBORDER_TOKENIZER__PORT": str(port),
        "XBORDER_TOKENIZER__SERVICE_KEY_FILE": str(key_file),
        "XBORDER_TOKENIZER__AGENCIES_FILE": str(agencies_file),
        "XBORDER_TOKENIZER__AUDIT_FILE": str(home / "audit.jsonl"),
        "XBORDER_TOKENIZER__BURST": str(BURST),
        "XBORDER_TOKENIZER__RATE_PER_S": "20",
        "XBORDER_TOKENIZER__BATCH_SIZE": "500",
    }
    # the operator's command issues the third agency's token (printed once, stored hashed)
    issued = io.StringIO()
    with contextlib.redirect_stdout(issued):
        assert (
            main(["tokenizer", "add-agency", "cantho", "--agencies-file", str(agencies_file)]) == 0
        )
    tokens["cantho"] = issued.getvalue().strip()
    assert tokens["cantho"] not in agencies_file.read_text()
    process = subprocess.Popen(
        [sys.executable, "-m", "xborder", "tokenizer", "serve"],
        env={k: v for k, v in env.items() if not k.startswith("XBORDER_KEY")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded by the pytest timeout
        assert "tokenizer listening" in line, process.stderr.read() if process.stderr else line
        yield {
            "url": f"http://127.0.0.1:{port}",
            "tokens": tokens,
            "ring": ring,
            "process": process,
            "audit": home / "audit.jsonl",
        }
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def _client(service: dict[str, Any], agency: str, **kwargs: Any) -> RecordingTokenizer:
    return RecordingTokenizer(service["url"], service["tokens"][agency], **kwargs)


def test_two_agencies_get_equal_tokens_and_the_service_sees_only_group_elements(
    service: dict[str, Any],
) -> None:
    cantho, angiang = _client(service, "cantho"), _client(service, "angiang", batch_size=16)
    items = [("VEHICLE", p) for p in PLATES] + [("PHONE", p) for p in PHONES]
    mine = cantho.tokens(items)
    theirs = angiang.tokens(list(reversed(items)))[::-1]
    assert [t.token_hex for t in mine] == [t.token_hex for t in theirs]
    assert len({t.token_hex for t in mine}) == len(items)
    assert {t.key_id for t in mine} == {"oprf-2"}  # the service's active key
    assert len(angiang.bodies) == 5  # 80 identifiers in batches of 16, not one request each

    # the tokens are RFC 9497 outputs of the service key, cut to 32 bytes
    key = service_keys(service["ring"])["oprf-2"]
    kind, value = items[0]
    assert mine[0].token_hex == evaluate(key, token_input(kind, value))[:32].hex()

    # what left each agency: group elements, none the hash of an identifier, none repeated
    seen: list[str] = []
    for client in (cantho, angiang):
        for body in client.bodies:
            request = orjson.loads(body)
            assert set(request) == {"key_ids", "elements"}
            for element in request["elements"]:
                assert len(element) == 64
                assert pysodium.crypto_core_ristretto255_is_valid_point(bytes.fromhex(element))
            seen.extend(request["elements"])
            text = body.decode()
            for _, raw in items:
                assert raw not in text and raw.encode().hex() not in text
    assert len(set(seen)) == len(seen) == 2 * len(items)  # blinded afresh every time

    # a single token and the lookup tokens go through the same interface
    assert cantho.token("VEHICLE", PLATES[0]) == mine[0]
    lookup = cantho.tokens_for_lookup("VEHICLE", PLATES[0])
    assert [t.key_id for t in lookup] == ["oprf-2", "oprf-1"] and lookup[0] == mine[0]


def _post(service: dict[str, Any], headers: dict[str, str]) -> http.client.HTTPResponse:
    host, port = service["url"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    element = blind(b"anything")[1].hex()
    conn.request("POST", "/v1/evaluate", body=json.dumps({"elements": [element]}), headers=headers)
    return conn.getresponse()


def test_an_unauthenticated_client_is_refused(service: dict[str, Any]) -> None:
    assert _post(service, {}).status == 401
    assert _post(service, {"Authorization": "Bearer not-a-token"}).status == 401
    ok = _post(service, {"Authorization": f"Bearer {service['tokens']['probe']}"})
    assert ok.status == 200, ok.read()
    stranger = OprfTokenizer(service["url"], "guessed-token")
    with pytest.raises(TokenizerServiceError) as caught:
        stranger.token("PHONE", PHONES[0])
    assert caught.value.status == 401
    assert "XBORDER_TOKENIZER__API_TOKEN" in str(caught.value)


def test_pseudonymise_tokenises_a_file_in_batched_requests(service: dict[str, Any]) -> None:
    """The command line's OPRF path: a chunk's identifiers go in one request per key set,
    and the output equals the one made token by token."""
    from xborder.pseudonym.oprf import prefetched
    from xborder.pseudonymise_cli import pseudonymise_event, pseudonymise_lines
    from xborder.publish_cli import decode_line
    from xborder.samples import sample_events

    lines = []
    for n, event in enumerate(sample_events(30)):
        event["subjects"] = [
            {"kind": "PHONE", "raw": f"0912{n:06d}", "role": "SUSPECT"},
            {"kind": "PERSON", "national_id": f"0792010{n:05d}", "name": "Tran Thi Binh",
             "birth_date": "1991-02-03", "role": "VICTIM"},
        ]  # fmt: skip
        lines.append(json.dumps(event).encode() + b"\n")
    batched = _client(service, "probe")
    out, err = io.StringIO(), io.StringIO()
    fed = prefetched(batched, lines, pseudonymise_event, decode_line, chunk=20)
    summary = pseudonymise_lines(batched, fed, "test", out, err)
    assert (summary.written, summary.failed, err.getvalue()) == (30, 0, "")
    # one request per chunk: every identifier under both keys of the service's ring
    assert len(batched.bodies) == 2
    one_by_one = _client(service, "probe")
    reference = io.StringIO()
    pseudonymise_lines(one_by_one, lines, "test", reference, io.StringIO())
    assert out.getvalue() == reference.getvalue()
    assert len(one_by_one.bodies) == 30 + 30 + 1  # phones, national IDs, one shared name


def test_evaluations_beyond_the_budget_are_refused_with_429(service: dict[str, Any]) -> None:
    probe = _client(service, "probe", batch_size=500)
    spent = 0
    with pytest.raises(TokenizerServiceError) as caught:
        for start in range(0, 10 * BURST, 500):  # a dictionary attack on phone numbers
            probe.tokens([("PHONE", f"+8491{n:07d}") for n in range(start, start + 500)])
            spent += 500
    assert caught.value.status == 429
    assert "Retry-After" not in str(caught.value) and "wait" in str(caught.value)
    assert BURST - 500 <= spent <= BURST + 500  # the burst, plus the slow refill at most


def test_the_audit_counts_evaluations_per_agency_and_holds_no_values(
    service: dict[str, Any],
) -> None:
    process = service["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    lines = [json.loads(line) for line in service["audit"].read_text().splitlines()]
    assert lines and all(
        set(line) == {"minute", "agency", "requests", "evaluations", "refused"} for line in lines
    )
    totals: dict[str, dict[str, int]] = {}
    for line in lines:
        entry = totals.setdefault(line["agency"], {"evaluations": 0, "refused": 0})
        entry["evaluations"] += line["evaluations"]
        entry["refused"] += line["refused"]
    assert totals["cantho"]["evaluations"] == 80 + 2  # 80 tokens, then a lookup under 2 keys
    assert totals["angiang"]["evaluations"] == 80
    assert totals["probe"]["refused"] >= 500
    text = service["audit"].read_text()
    assert not any(p in text for p in PLATES + PHONES)
