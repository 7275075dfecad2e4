"""RFC 9497 OPRF(ristretto255, SHA-512) against the RFC's own test vectors (Appendix
A.1.1, OPRF mode), and the service's token bucket."""

from __future__ import annotations

import pytest

from xborder.errors import ConfigurationError
from xborder.pseudonym import KeyRing, Tokenizer, tokenizer_from_settings
from xborder.pseudonym.oprf import (
    OprfTokenizer,
    blind,
    blind_evaluate,
    derive_key,
    evaluate,
    finalize,
    service_keys,
)
from xborder.pseudonym.oprf_service import TokenBucket
from xborder.settings import load_settings

SEED = bytes.fromhex("a3" * 32)
KEY_INFO = bytes.fromhex("74657374206b6579")  # "test key"
SK = "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e"
BLIND = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
VECTORS = [  # input, blinded element, evaluation element, output
    (
        "00",
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    ),
    (
        "5a" * 17,
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    ),
]


def test_the_derived_key_is_the_rfcs() -> None:
    assert derive_key(SEED, KEY_INFO).hex() == SK


@pytest.mark.parametrize(("message", "blinded", "evaluated", "output"), VECTORS)
def test_blind_evaluate_finalize_follow_the_rfc_vectors(
    message: str, blinded: str, evaluated: str, output: str
) -> None:
    key = bytes.fromhex(SK)
    data = bytes.fromhex(message)
    _, element = blind(data, BLIND)
    assert element.hex() == blinded
    result = blind_evaluate(key, element)
    assert result.hex() == evaluated
    assert finalize(data, BLIND, result).hex() == output
    assert evaluate(key, data).hex() == output


def test_random_blinds_give_one_output() -> None:
    key = derive_key(b"s" * 32, b"info")
    outputs = set()
    for _ in range(3):
        r, element = blind(b"same input")
        outputs.add(finalize(b"same input", r, blind_evaluate(key, element)))
    assert outputs == {evaluate(key, b"same input")}


def test_an_invalid_element_is_refused() -> None:
    with pytest.raises(ValueError, match="ristretto255"):
        blind_evaluate(bytes.fromhex(SK), b"\xff" * 32)


def test_service_keys_differ_per_key_id() -> None:
    keys = service_keys(KeyRing.generate(2))
    assert len(set(keys.values())) == 2


def test_the_token_bucket_grants_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=100, updated=0.0)
    assert bucket.take(100, now=0.0) == 0.0
    assert bucket.take(10, now=0.0) == pytest.approx(1.0)
    assert bucket.take(10, now=1.0) == 0.0
    assert bucket.take(101, now=100.0) == float("inf")  # more than the burst: never


def test_oprf_mode_is_selected_by_settings_and_needs_an_api_token() -> None:
    with pytest.raises(ConfigurationError, match="XBORDER_TOKENIZER__API_TOKEN"):
        tokenizer_from_settings(load_settings(**{"tokenizer.mode": "oprf"}))
    settings = load_settings(**{"tokenizer.mode": "oprf", "tokenizer.api_token": "t"})
    tokenizer = tokenizer_from_settings(settings)
    assert isinstance(tokenizer, OprfTokenizer) and isinstance(tokenizer, Tokenizer)
    assert tokenizer.url == "http://127.0.0.1:18093"
