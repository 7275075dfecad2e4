"""Oblivious-PRF tokens (RFC 9497, OPRF(ristretto255, SHA-512), mode 0x00).

A tokenisation service holds the OPRF key and no agency does; an agency blinds
``token_input(kind, value)`` with a fresh random scalar, the service multiplies the blinded
group element by its key without learning the value, and the agency unblinds and
finalises (RFC 9497 section 3.3.1). The 64-byte output is cut to its first 32 bytes, so
a token keeps the 64-hex shape of the shared-key mode; ``key_id`` names the service key
that made it. Equal identifiers give equal tokens at every agency, yet an agency that
wants to reverse a token must ask the service once per guess, which rate-limits and
audits every evaluation (:mod:`xborder.pseudonym.oprf_service`).

The group operations are libsodium's (``crypto_core_ristretto255_*``,
``crypto_scalarmult_ristretto255``, through pysodium); hashing to the group and to
scalars is RFC 9380's ``expand_message_xmd`` with SHA-512, as the RFC's ristretto255
suite specifies. The RFC's test vectors are checked in ``tests/unit/test_oprf.py``.

The service's key ring is a key-ring file (:class:`~xborder.pseudonym.tokens.KeyRing`):
each secret is a seed from which ``DeriveKeyPair(seed, "xborder tokenizer <key id>")``
derives the OPRF private key, so ``xborder keys generate`` makes service keys too.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from xborder.errors import ConfigurationError, XborderError
from xborder.pseudonym.tokens import KeyRing, Token, token_input

logger = logging.getLogger(__name__)

try:
    import pysodium as _sodium
except (ImportError, OSError, ValueError) as exc:  # pysodium loads libsodium on import
    _sodium = None
    _SODIUM_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    _SODIUM_ERROR = None

MODE_OPRF: Final = 0
SUITE: Final = b"ristretto255-SHA512"
CONTEXT: Final = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE
"""contextString of RFC 9497 section 3.1 for this suite and mode."""
ELEMENT_BYTES: Final = 32
SCALAR_BYTES: Final = 32
TOKEN_BYTES: Final = 32
"""The OPRF output is cut to this many bytes (64 hex characters, like HMAC tokens)."""
KEY_INFO_PREFIX: Final = b"xborder tokenizer "
EVALUATE_PATH: Final = "/v1/evaluate"
KEYS_PATH: Final = "/v1/keys"
_SHA512_BLOCK: Final = 128
_KEY_IDS_TTL_S: Final = 60.0
_CACHE_SIZE: Final = 100_000


def _lib() -> Any:
    if _sodium is None:
        raise ConfigurationError(
            f"OPRF mode needs libsodium 1.0.18+ and pysodium ({_SODIUM_ERROR}); install "
            "them: apt-get install libsodium23 and pip install -e . (or use "
            "XBORDER_TOKENIZER__MODE=hmac)"
        )
    return _sodium


def expand_message_xmd(message: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512."""
    if len(dst) > 255 or length > 255 * 64:
        raise ValueError("expand_message_xmd: DST or length too long")
    ell = -(-length // 64)
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + message + length.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    out = b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    for i in range(2, ell + 1):
        b = hashlib.sha512(
            bytes(x ^ y for x, y in zip(b0, b, strict=True)) + bytes([i]) + dst_prime
        ).digest()
        out += b
    return out[:length]


def hash_to_group(message: bytes) -> bytes:
    """HashToGroup of the ristretto255 suite: a group element (32 bytes)."""
    uniform = expand_message_xmd(message, b"HashToGroup-" + CONTEXT, 64)
    return bytes(_lib().crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(message: bytes, dst: bytes) -> bytes:
    """HashToScalar of the ristretto255 suite with domain separation tag ``dst``."""
    uniform = expand_message_xmd(message, dst, 64)
    return bytes(_lib().crypto_core_ristretto255_scalar_reduce(uniform))


def derive_key(seed: bytes, info: bytes) -> bytes:
    """DeriveKeyPair (RFC 9497 section 3.2.1): the private scalar for ``seed`` and ``info``."""
    derive_input = seed + len(info).to_bytes(2, "big") + info
    for counter in range(256):
        scalar = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + CONTEXT)
        if any(scalar):
            return scalar
    raise ValueError("DeriveKeyPair: no non-zero scalar in 256 tries")  # probability ~2^-2000


def blind(message: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """Blind (RFC 9497 section 3.3.1): (blind scalar, blinded element)."""
    lib = _lib()
    r = blind_scalar if blind_scalar is not None else lib.crypto_core_ristretto255_scalar_random()
    return r, bytes(lib.crypto_scalarmult_ristretto255(r, hash_to_group(message)))


def blind_evaluate(key: bytes, blinded: bytes) -> bytes:
    """BlindEvaluate: the key times a blinded element; ValueError for an invalid element."""
    lib = _lib()
    if len(blinded) != ELEMENT_BYTES or not lib.crypto_core_ristretto255_is_valid_point(blinded):
        raise ValueError("not a ristretto255 group element")
    return bytes(lib.crypto_scalarmult_ristretto255(key, blinded))


def finalize(message: bytes, blind_scalar: bytes, evaluated: bytes) -> bytes:
    """Finalize (RFC 9497 section 3.3.1): the 64-byte PRF output."""
    lib = _lib()
    inverse = lib.crypto_core_ristretto255_scalar_invert(blind_scalar)
    unblinded = bytes(lib.crypto_scalarmult_ristretto255(inverse, evaluated))
    return hashlib.sha512(
        len(message).to_bytes(2, "big") + message
        + len(unblinded).to_bytes(2, "big") + unblinded + b"Finalize"
    ).digest()  # fmt: skip


def evaluate(key: bytes, message: bytes) -> bytes:
    """Evaluate (RFC 9497 section 3.3.1): the PRF output computed by the key holder."""
    element = bytes(_lib().crypto_scalarmult_ristretto255(key, hash_to_group(message)))
    return hashlib.sha512(
        len(message).to_bytes(2, "big") + message + len(element).to_bytes(2, "big") + element
        + b"Finalize"
    ).digest()  # fmt: skip


def service_keys(ring: KeyRing) -> dict[str, bytes]:
    """The OPRF private scalar of each key id of a service key ring (see module doc)."""
    return {
        key_id: derive_key(ring.secret(key_id), KEY_INFO_PREFIX + key_id.encode("ascii"))
        for key_id in ring.key_ids
    }


class TokenizerServiceError(XborderError):
    """The tokenisation service refused or failed a request."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class OprfTokenizer:
    """Tokens from the tokenisation service; implements :class:`~xborder.pseudonym.Tokenizer`.

    Identifiers are blinded before they leave the process and requests carry up to
    ``batch_size`` elements; :meth:`tokens` tokenises many identifiers at once, and recent
    tokens are cached in memory (this process holds the raw values anyway).
    """

    def __init__(
        self, url: str, api_token: str, timeout_s: float = 10.0, batch_size: int = 1000
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"tokenisation service URL {url!r} is not http(s)://host:port; "
                "set XBORDER_TOKENIZER__URL"
            )
        if not api_token:
            raise ConfigurationError(
                "no API token for the tokenisation service: set XBORDER_TOKENIZER__API_TOKEN "
                "(the service operator issues it with 'xborder tokenizer add-agency')"
            )
        self._parts = parts
        self._auth = f"Bearer {api_token}"
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._conn: http.client.HTTPConnection | None = None
        self._key_ids: tuple[str, ...] = ()
        self._key_ids_at = 0.0
        self._cache: OrderedDict[tuple[str, bytes], Token] = OrderedDict()

    @property
    def url(self) -> str:
        return f"{self._parts.scheme}://{self._parts.netloc}"

    def key_ids(self) -> tuple[str, ...]:
        """The service's accepted key ids, the active one first (asked once a minute)."""
        now = time.monotonic()
        if not self._key_ids or now - self._key_ids_at > _KEY_IDS_TTL_S:
            answer = self._request("GET", KEYS_PATH, None)
            ids = answer.get("key_ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(k, str) for k in ids):
                raise TokenizerServiceError(f"{self.url}{KEYS_PATH}: answer without key ids")
            self._key_ids, self._key_ids_at = tuple(ids), now
        return self._key_ids

    def token(self, kind: str, normalised: str) -> Token:
        """Token of ``normalised`` under the service's active key."""
        return self.tokens([(kind, normalised)])[0]

    def tokens_for_lookup(self, kind: str, normalised: str) -> list[Token]:
        """One token per key the service still accepts, the active key's first (one request)."""
        return self.tokens([(kind, normalised)], self.key_ids())

    def tokens(
        self, items: Iterable[tuple[str, str]], key_ids: Sequence[str] | None = None
    ) -> list[Token]:
        """Tokens of many (kind, canonical value) pairs: for each pair, one token per key of
        ``key_ids`` (default: the active key), in that order."""
        keys = tuple(key_ids) if key_ids else self.key_ids()[:1]
        messages = [token_input(kind, value) for kind, value in items]
        missing = list(
            dict.fromkeys(m for m in messages for k in keys if (k, m) not in self._cache)
        )
        for start in range(0, len(missing), max(1, self._batch_size // len(keys))):
            self._evaluate(missing[start : start + max(1, self._batch_size // len(keys))], keys)
        out = []
        for message in messages:
            for key_id in keys:
                token = self._cache[(key_id, message)]
                self._cache.move_to_end((key_id, message))
                out.append(token)
        return out

    def _evaluate(self, messages: list[bytes], key_ids: tuple[str, ...]) -> None:
        blinded = [blind(m) for m in messages]
        body = orjson.dumps({"key_ids": list(key_ids), "elements": [e.hex() for _, e in blinded]})
        answer = self._request("POST", EVALUATE_PATH, body)
        evaluated = answer.get("evaluated")
        if not isinstance(evaluated, dict) or set(evaluated) != set(key_ids):
            raise TokenizerServiceError(f"{self.url}{EVALUATE_PATH}: answer without every key")
        for key_id in key_ids:
            elements = evaluated[key_id]
            if not isinstance(elements, list) or len(elements) != len(messages):
                raise TokenizerServiceError(
                    f"{self.url}{EVALUATE_PATH}: {key_id}: {len(messages)} elements sent, "
                    "another number returned"
                )
            for message, (r, _), element in zip(messages, blinded, elements, strict=True):
                try:
                    output = finalize(message, r, bytes.fromhex(element))
                except (ValueError, TypeError) as exc:
                    raise TokenizerServiceError(
                        f"{self.url}{EVALUATE_PATH}: an evaluated element is not a group element"
                    ) from exc
                self._cache[(key_id, message)] = Token(output[:TOKEN_BYTES].hex(), key_id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self._parts.hostname or "", self._parts.port, timeout=self._timeout_s)
        return self._conn

    def _request(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        headers = {"Authorization": self._auth}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the service closed: reconnect once
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._conn = None
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise TokenizerServiceError(
                        f"tokenisation service {self.url} unreachable ({type(exc).__name__}: "
                        f"{exc}); start it ('xborder tokenizer serve') or fix "
                        "XBORDER_TOKENIZER__URL"
                    ) from exc
                continue
            break
        if response.status != 200:
            reason = data.decode("utf-8", "replace")[:200]
            hint = {
                401: "check XBORDER_TOKENIZER__API_TOKEN",
                429: "the agency's evaluation budget is spent; wait "
                f"{response.getheader('Retry-After', '?')} s",
            }.get(response.status, "see the service log")
            raise TokenizerServiceError(
                f"tokenisation service {self.url}{path}: HTTP {response.status} {reason}; {hint}",
                response.status,
            )
        answer = orjson.loads(data)
        if not isinstance(answer, dict):
            raise TokenizerServiceError(f"{self.url}{path}: answer is not a JSON object")
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"OprfTokenizer(url={self.url!r})"


class _Recorder:
    """A stand-in tokenizer that notes what would be tokenised (see :func:`prefetched`)."""

    def __init__(self) -> None:
        self.active: list[tuple[str, str]] = []
        self.lookup: list[tuple[str, str]] = []

    def token(self, kind: str, normalised: str) -> Token:
        self.active.append((kind, normalised))
        return Token("0" * 64, "prefetch")

    def tokens_for_lookup(self, kind: str, normalised: str) -> list[Token]:
        self.lookup.append((kind, normalised))
        return [Token("0" * 64, "prefetch")]


def prefetched(
    tokenizer: OprfTokenizer,
    lines: Iterable[bytes],
    convert: Callable[[Any, Any], Any],
    parse: Callable[[bytes], Any],
    chunk: int = 500,
) -> Iterator[bytes]:
    """``lines`` unchanged, each chunk's identifiers tokenised beforehand in batched requests.

    ``convert(tokenizer, parse(line))`` is first run on every line of a chunk with a
    recording stand-in tokenizer (errors are left for the real pass to report); what it
    asked for is then fetched in requests of up to ``batch_size`` elements, so the real
    pass finds every token in the cache instead of making one round trip per token.
    """
    pending: list[bytes] = []

    def fetch() -> None:
        recorder = _Recorder()
        for line in pending:
            with contextlib.suppress(Exception):  # the real pass reports the line's error
                convert(recorder, parse(line))
        if recorder.active:
            tokenizer.tokens(recorder.active)
        if recorder.lookup:
            tokenizer.tokens(recorder.lookup, tokenizer.key_ids())

    for line in lines:
        pending.append(line)
        if len(pending) >= chunk:
            fetch()
            yield from pending
            pending = []
    if pending:
        fetch()
        yield from pending


def new_api_token() -> str:
    """A fresh agency API token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_digest(api_token: str) -> str:
    """What the service stores of an API token: its SHA-256, hex."""
    return hashlib.sha256(api_token.encode("utf-8")).hexdigest()
