"""Tokens: keyed pseudonyms of canonical identifiers, behind one interface.

Callers hold a :class:`Tokenizer` and call ``token(kind, canonical_value)`` for a new
subject or ``tokens_for_lookup(kind, canonical_value)`` to search under every key still
accepted. A token is 64 lower-case hex characters with the id of the key that made it.

:class:`SharedKeyTokenizer` computes HMAC-SHA256 with a key the cooperating agencies share,
over a domain-separated message (:func:`token_input`: a version tag, the kind and the
canonical value, NUL-separated). A :class:`KeyRing` holds the keys by id: one active key
makes new tokens, older keys stay for lookups during a rotation.

Known weakness: whoever holds a shared key can enumerate small identifier spaces (every
plate, every phone number) and reverse tokens. The oblivious-PRF mode
(:mod:`xborder.pseudonym.oprf`, RFC 9497 OPRF(ristretto255, SHA-512)) removes it: a
tokenisation service holds the key and no agency does. :func:`tokenizer_from_settings`
builds the tokenizer ``XBORDER_TOKENIZER__MODE`` selects; callers see only the two methods.

Rotation: tokens under different keys never match, so during a rotation a producer
publishes each identifier under every key it still accepts (the active key first; see
:func:`xborder.pseudonym.pseudonymise_subjects`): a new event then shares the old key's
token with events published before the rotation, and the new key's with events after it.
Once every partner publishes under the new key and the correlation window has passed,
the old key is retired from the rings and from the worker's
``XBORDER_TOKENIZER__ACCEPTED_KEY_IDS`` (:func:`check_key_ids` dead-letters subjects under
any other id as ``unknown-key``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.pseudonym.normalise import check_kind

if TYPE_CHECKING:
    from xborder.settings import Settings

logger = logging.getLogger(__name__)

MIN_KEY_BYTES: Final = 32
"""Shortest accepted key: 256 bits, the HMAC-SHA256 output size."""

TOKEN_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
"""What every token looks like: 64 lower-case hex characters."""

DOMAIN_TAG: Final = b"xborder/pseudonym/v1"
"""First part of every tokenised message, so these MACs never equal any other use of a key."""

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class Token:
    """A pseudonymous token and the id of the key that produced it."""

    token_hex: str
    key_id: str

    def __post_init__(self) -> None:
        # A tokenizer that breaks the shape is a bug; stop it before it reaches Kafka.
        if not TOKEN_PATTERN.fullmatch(self.token_hex):
            raise ValueError("a token must be 64 lower-case hex characters")
        if not self.key_id:
            raise ValueError("a token needs the id of its key")


@runtime_checkable
class Tokenizer(Protocol):
    """Turns canonical identifiers into tokens; the only interface callers depend on."""

    def token(self, kind: str, normalised: str) -> Token:
        """Token of ``normalised`` (a canonical value of ``kind``) under the active key."""
        ...

    def tokens_for_lookup(self, kind: str, normalised: str) -> list[Token]:
        """One token per accepted key, the active key's first, to find older tokens."""
        ...


def token_input(kind: str, normalised: str) -> bytes:
    """The message a tokenizer keys: version tag, kind and canonical value, NUL-separated."""
    checked = check_kind(kind)
    if not isinstance(normalised, str) or not normalised:
        raise InvalidRecordError(f"{checked} value to tokenise is empty or not text")
    return b"\x00".join((DOMAIN_TAG, checked.encode("ascii"), normalised.encode("utf-8")))


class KeyRing:
    """Pseudonymisation keys by id: one active key for new tokens, older ones for lookups.

    The repr shows key ids only; secrets are never printed or logged.
    """

    __slots__ = ("_active", "_keys")

    def __init__(
        self, active_key_id: str, keys: Mapping[str, bytes], source: str = "key ring"
    ) -> None:
        checked: dict[str, bytes] = {}
        for key_id, secret in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"{source}: key id {key_id!r} must be 1-64 letters, digits, '.', '_', "
                    "':' or '-', starting with a letter or digit"
                )
            checked[key_id] = _checked_secret(secret, key_id, source)
        if not checked:
            raise ConfigurationError(f"{source}: holds no keys; {_GENERATE_HINT}")
        if active_key_id not in checked:
            raise ConfigurationError(
                f"{source}: active key {active_key_id!r} is not among the keys "
                f"({', '.join(sorted(checked))})"
            )
        self._active = active_key_id
        self._keys = MappingProxyType(checked)

    @property
    def active_key_id(self) -> str:
        """Id of the key that makes new tokens."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every accepted key, the active one first."""
        return (self._active, *(k for k in self._keys if k != self._active))

    def secret(self, key_id: str) -> bytes:
        """The secret of ``key_id``; for tokenizers only."""
        try:
            return self._keys[key_id]
        except KeyError as exc:
            raise ConfigurationError(
                f"pseudonymisation key {key_id!r} is not in the key ring "
                f"({', '.join(self.key_ids)})"
            ) from exc

    def rotate(self, new_key_id: str, secret: bytes) -> KeyRing:
        """A new ring in which ``new_key_id`` is active and the current keys stay accepted."""
        if new_key_id in self._keys:
            raise ConfigurationError(f"key ring: key id {new_key_id!r} is already in use")
        return KeyRing(new_key_id, {**self._keys, new_key_id: secret})

    def retire(self, key_id: str) -> KeyRing:
        """A new ring without ``key_id`` (once no lookup needs its tokens any more)."""
        if key_id == self._active:
            raise ConfigurationError(
                f"key ring: cannot retire the active key {key_id!r}; rotate to a new key first"
            )
        self.secret(key_id)
        return KeyRing(self._active, {k: v for k, v in self._keys.items() if k != key_id})

    @classmethod
    def generate(cls, count: int = 1, prefix: str = "example-") -> KeyRing:
        """Random example keys for tests and demos (new on every call, never stored).

        Ids are ``<prefix>1`` .. ``<prefix><count>``; the last is active.
        """
        if count < 1:
            raise ValueError("generate at least one key")
        keys = {f"{prefix}{i}": secrets.token_bytes(MIN_KEY_BYTES) for i in range(1, count + 1)}
        return cls(f"{prefix}{count}", keys, source="generated key ring")

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """Load ``{"active": "k2", "keys": {"k1": "<hex or base64>", ...}}`` from a file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"pseudonymisation key file {path} does not exist; agencies receive it "
                "through the key exchange the cooperation agreement sets up"
            ) from exc
        except OSError as exc:
            raise ConfigurationError(f"cannot read key file {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "key file %s is accessible to other users (mode %o); restrict it: chmod 600 %s",
                path,
                stat.S_IMODE(mode),
                path,
            )
        return cls.from_json(text, source=str(path))

    @classmethod
    def from_json(cls, text: str, source: str = "key ring JSON") -> KeyRing:
        """Parse the key-file JSON from text (for example an environment variable's value)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # the position only: the text holds secrets
            raise ConfigurationError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        return cls.from_mapping(data, source)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "key ring") -> KeyRing:
        """Build from the parsed key-file structure; secrets are hex or base64 text."""
        expected = '{"active": "<key id>", "keys": {"<key id>": "<hex or base64>", ...}}'
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source}: expected an object {expected}")
        active, keys = data.get("active"), data.get("keys")
        if not isinstance(active, str) or not isinstance(keys, Mapping):
            raise ConfigurationError(
                f"{source}: needs 'active' (a key id) and 'keys' (an object): {expected}"
            )
        secrets_by_id: dict[str, bytes] = {}
        for key_id, encoded in keys.items():
            if not isinstance(encoded, str):
                raise ConfigurationError(f"{source}: key {key_id!r} must be a hex or base64 string")
            secrets_by_id[key_id] = decode_secret(encoded, key_id, source)
        return cls(active, secrets_by_id, source)

    def to_json(self) -> str:
        """The key-file JSON, secrets in hex: write it only to a file readable by its owner."""
        keys = {key_id: self._keys[key_id].hex() for key_id in self.key_ids}
        return json.dumps({"active": self._active, "keys": keys}, indent=2)

    def __repr__(self) -> str:
        return f"KeyRing(active={self._active!r}, key_ids={list(self.key_ids)!r})"


def decode_secret(encoded: str, key_id: str, source: str = "key ring") -> bytes:
    """Key bytes from ``hex:...``, ``base64:...`` or unprefixed text.

    Unprefixed text of hex digits with an even length is hex, anything else base64
    (standard or URL-safe alphabet).
    """
    text = encoded.strip()
    try:
        if text.startswith("hex:"):
            return bytes.fromhex(text[4:])
        if text.startswith("base64:"):
            return _b64(text[7:])
        if _HEX.fullmatch(text) and len(text) % 2 == 0:
            return bytes.fromhex(text)
        return _b64(text)
    except (ValueError, binascii.Error) as exc:
        raise ConfigurationError(
            f"{source}: key {key_id!r} is neither hex nor base64 ({exc}); {_GENERATE_HINT}"
        ) from exc


def _b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    return base64.b64decode(padded, validate=True)


def _checked_secret(secret: object, key_id: str, source: str) -> bytes:
    if not isinstance(secret, bytes):
        raise ConfigurationError(f"{source}: key {key_id!r} must be bytes")
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"{source}: key {key_id!r} is {len(secret)} bytes; keys must be at least "
            f"{MIN_KEY_BYTES} bytes (256 bits); {_GENERATE_HINT}"
        )
    return secret


class SharedKeyTokenizer:
    """HMAC-SHA256 tokens under keys the cooperating agencies share (see module doc)."""

    def __init__(self, key_ring: KeyRing) -> None:
        self.key_ring = key_ring

    def token(self, kind: str, normalised: str) -> Token:
        """Token of ``normalised`` under the active key."""
        return self._token(self.key_ring.active_key_id, token_input(kind, normalised))

    def tokens_for_lookup(self, kind: str, normalised: str) -> list[Token]:
        """One token per accepted key, the active key's first."""
        message = token_input(kind, normalised)
        return [self._token(key_id, message) for key_id in self.key_ring.key_ids]

    def _token(self, key_id: str, message: bytes) -> Token:
        digest = hmac.new(self.key_ring.secret(key_id), message, hashlib.sha256).hexdigest()
        return Token(digest, key_id)

    def __repr__(self) -> str:
        return f"SharedKeyTokenizer({self.key_ring!r})"


def key_ring_from_settings(settings: Settings, key_file: Path | None = None) -> KeyRing:
    """The HMAC key ring: ``key_file`` if given, else ``XBORDER_TOKENIZER__KEY_RING`` (the
    JSON itself) or ``XBORDER_KEY_FILE`` (one of them, not both)."""
    if key_file is not None:
        return KeyRing.from_file(key_file)
    in_env, path = settings.tokenizer.key_ring, settings.key_file
    if in_env is not None and path is not None:
        raise ConfigurationError(
            "both XBORDER_TOKENIZER__KEY_RING and XBORDER_KEY_FILE are set; keep one"
        )
    if in_env is not None:
        return KeyRing.from_json(in_env.get_secret_value(), source="XBORDER_TOKENIZER__KEY_RING")
    if path is None:
        raise ConfigurationError(
            "no pseudonymisation key ring: set XBORDER_KEY_FILE (create one with 'xborder "
            "keys generate PATH') or XBORDER_TOKENIZER__KEY_RING, or pass --key-file"
        )
    return KeyRing.from_file(path)


def tokenizer_from_settings(settings: Settings, key_file: Path | None = None) -> Tokenizer:
    """The tokenizer ``XBORDER_TOKENIZER__MODE`` selects: shared-key HMAC with the key
    ring of :func:`key_ring_from_settings`, or the OPRF client of the tokenisation service."""
    config = settings.tokenizer
    if config.mode == "oprf":
        from xborder.pseudonym.oprf import OprfTokenizer

        api_token = config.api_token.get_secret_value() if config.api_token else ""
        return OprfTokenizer(config.service_url, api_token, config.timeout_s, config.batch_size)
    return SharedKeyTokenizer(key_ring_from_settings(settings, key_file))


def check_key_ids(subjects: Any, accepted: frozenset[str]) -> None:
    """Refuse subjects whose ``key_id`` is not among ``accepted`` (empty accepts any):
    InvalidRecordError with reason ``unknown-key``. The message names the key id, which
    is no secret, and never the token."""
    if not accepted or not isinstance(subjects, list):
        return
    for index, subject in enumerate(subjects):
        key_id = subject.get("key_id") if isinstance(subject, Mapping) else None
        if key_id not in accepted:
            raise InvalidRecordError(
                f"subjects[{index}].key_id: {str(key_id)[:64]!r} is not an accepted key id "
                f"({', '.join(sorted(accepted))}); re-tokenise with the current key ring, or "
                "add the id to XBORDER_TOKENIZER__ACCEPTED_KEY_IDS if it is a new key",
                reason="unknown-key",
            )
