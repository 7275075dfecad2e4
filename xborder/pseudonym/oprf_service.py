"""The tokenisation service: holds the OPRF key, evaluates blinded elements for agencies.

``xborder tokenizer serve`` runs it (aiohttp, bound to 127.0.0.1 by default). It sees
group elements only, never an identifier: an agency blinds ``token_input(kind, value)``
before sending it (:mod:`xborder.pseudonym.oprf`). Per request:

1. authenticate the agency by its API token (``Authorization: Bearer``; the service keeps
   only the tokens' SHA-256, in ``XBORDER_TOKENIZER__AGENCIES_FILE``): else 401;
2. charge ``elements x keys`` evaluations to the agency's token bucket
   (``XBORDER_TOKENIZER__RATE_PER_S`` refill, ``XBORDER_TOKENIZER__BURST`` size): else
   429 with Retry-After. A dictionary attack (every phone number of a prefix) becomes
   slow, and visible in the audit;
3. evaluate every element under every asked key (``POST /v1/evaluate``, body
   ``{"key_ids": [...], "elements": ["<64 hex>", ...]}``, at most
   ``XBORDER_TOKENIZER__BATCH_SIZE`` evaluations);
4. count it in the audit: one JSON line per agency per minute (requests, evaluations,
   refused), never a value.

``GET /v1/keys`` names the accepted key ids, the active one first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from xborder.errors import ConfigurationError
from xborder.pseudonym.oprf import (
    ELEMENT_BYTES,
    EVALUATE_PATH,
    KEYS_PATH,
    blind_evaluate,
    service_keys,
    token_digest,
)
from xborder.pseudonym.tokens import KeyRing
from xborder.settings import Settings, TokenizerSettings

logger = logging.getLogger(__name__)

AUDIT_FLUSH_S: Final = 5.0
_HEX_CHARS: Final = frozenset("0123456789abcdefABCDEF")


@dataclass
class TokenBucket:
    """Evaluations an agency may make: ``burst`` at once, refilled at ``rate_per_s``."""

    rate_per_s: float
    burst: float
    level: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level = self.burst

    def take(self, count: int, now: float | None = None) -> float:
        """Charge ``count``; 0.0 when granted, else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if count <= self.level:
            self.level -= count
            return 0.0
        if count > self.burst:
            return float("inf")
        return (count - self.level) / self.rate_per_s


class Audit:
    """Evaluations per agency per minute, appended as JSON lines once the minute is over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: {"requests": 0, "evaluations": 0, "refused": 0}
        )

    def count(self, agency: str, evaluations: int, refused: bool = False) -> None:
        minute = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        entry = self._counts[(minute, agency)]
        entry["requests"] += 1
        entry["refused" if refused else "evaluations"] += evaluations

    def flush(self, everything: bool = False) -> None:
        """Append the finished minutes (every minute with ``everything``)."""
        current = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        done = sorted(k for k in self._counts if everything or k[0] < current)
        if not done:
            return
        with self.path.open("a", encoding="utf-8") as out:
            for minute, agency in done:
                line = {"minute": minute, "agency": agency, **self._counts.pop((minute, agency))}
                out.write(json.dumps(line) + "\n")


def load_agencies(path: Path | None) -> dict[str, str]:
    """Agency -> SHA-256 hex of its API token, from ``{"agencies": {"a": {"token_sha256":
    "..."}}}``."""
    if path is None:
        raise ConfigurationError(
            "the tokenisation service needs agency credentials: set "
            "XBORDER_TOKENIZER__AGENCIES_FILE (add one with 'xborder tokenizer add-agency')"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"agency credentials file {path} does not exist; create it with "
            "'xborder tokenizer add-agency AGENCY'"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read agency credentials {path}: {exc}") from exc
    agencies = data.get("agencies") if isinstance(data, dict) else None
    if not isinstance(agencies, dict) or not agencies:
        raise ConfigurationError(
            f"{path}: holds no agencies; add one with 'xborder tokenizer add-agency'"
        )
    out = {}
    for agency, entry in agencies.items():
        digest = entry.get("token_sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64:
            raise ConfigurationError(f"{path}: agency {agency!r} needs token_sha256 (64 hex)")
        out[agency] = digest.lower()
    return out


class TokenizerService:
    """The HTTP handlers and the state behind them (keys, buckets, audit)."""

    def __init__(
        self, ring: KeyRing, agencies: dict[str, str], config: TokenizerSettings, audit: Audit
    ) -> None:
        self.active = ring.active_key_id
        self.key_ids = ring.key_ids
        self._keys = service_keys(ring)
        self._agencies = agencies
        self._config = config
        self._buckets = {a: TokenBucket(config.rate_per_s, config.burst) for a in agencies}
        self.audit = audit

    def _agency(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential:
            digest = token_digest(credential.strip())
            for agency, expected in self._agencies.items():
                if hmac.compare_digest(digest, expected):
                    return agency
        raise web.HTTPUnauthorized(
            text="missing or unknown API token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="xborder tokenizer"'},
        )

    async def keys(self, request: web.Request) -> web.Response:
        self._agency(request)
        return web.json_response({"active": self.active, "key_ids": list(self.key_ids)})

    async def evaluate(self, request: web.Request) -> web.Response:
        agency = self._agency(request)
        try:
            body = orjson.loads(await request.read())
            elements = body["elements"]
            key_ids = body.get("key_ids") or [self.active]
            if not isinstance(elements, list) or not isinstance(key_ids, list):
                raise TypeError("elements and key_ids must be lists")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise web.HTTPBadRequest(
                text=f'expected {{"key_ids": [...], "elements": ["<64 hex>", ...]}} ({exc})'
            ) from exc
        unknown = [k for k in key_ids if k not in self._keys]
        if unknown:
            raise web.HTTPBadRequest(
                text=f"unknown key ids {unknown}; accepted: {list(self.key_ids)}"
            )
        count = len(elements) * len(key_ids)
        if count > self._config.batch_size:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self._config.batch_size,
                actual_size=count,
                text=f"{count} evaluations in one request; at most {self._config.batch_size}",
            )
        wait_s = self._buckets[agency].take(count)
        if wait_s:
            self.audit.count(agency, count, refused=True)
            logger.warning("agency %s: %d evaluations refused (rate limit)", agency, count)
            retry = "3600" if wait_s == float("inf") else str(max(1, round(wait_s + 0.5)))
            raise web.HTTPTooManyRequests(
                text=f"evaluation budget spent ({self._config.rate_per_s:g}/s, burst "
                f"{self._config.burst}); retry in {retry} s",
                headers={"Retry-After": retry},
            )
        try:
            raw = [_element(e) for e in elements]
            evaluated = {
                key_id: [blind_evaluate(self._keys[key_id], e).hex() for e in raw]
                for key_id in key_ids
            }
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=f"an element is not a ristretto255 element: {exc}"
            ) from exc
        self.audit.count(agency, count)
        return web.Response(
            body=orjson.dumps({"evaluated": evaluated}), content_type="application/json"
        )


def _element(text: Any) -> bytes:
    if (
        not isinstance(text, str)
        or len(text) != 2 * ELEMENT_BYTES
        or not _HEX_CHARS.issuperset(text)
    ):
        raise ValueError("each element is 64 hex characters")
    return bytes.fromhex(text)


def build_service(settings: Settings) -> TokenizerService:
    """The service from settings; a missing key or credentials file fails here, with the fix."""
    config = settings.tokenizer
    if config.service_key_file is None:
        raise ConfigurationError(
            "the tokenisation service needs its OPRF key ring: set "
            "XBORDER_TOKENIZER__SERVICE_KEY_FILE (create one with 'xborder keys generate PATH')"
        )
    ring = KeyRing.from_file(config.service_key_file)
    audit_path = config.audit_file or settings.data_dir / "tokenizer" / "audit.jsonl"
    return TokenizerService(ring, load_agencies(config.agencies_file), config, Audit(audit_path))


def build_app(service: TokenizerService) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post(EVALUATE_PATH, service.evaluate)
    app.router.add_get(KEYS_PATH, service.keys)
    return app


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; the audit's last minute is written on the way out."""
    service = build_service(settings)
    config = settings.tokenizer
    runner = web.AppRunner(build_app(service), access_log=None)  # no per-request lines
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(
            f"tokenisation service cannot listen on {config.host}:{config.port} ({exc}); "
            "choose another XBORDER_TOKENIZER__PORT"
        ) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info(
        "tokenisation service on http://%s:%d: keys %s (active %s), %d agencies, audit %s",
        config.host, config.port, ", ".join(service.key_ids), service.active,
        len(service._agencies), service.audit.path,
    )  # fmt: skip
    print(f"tokenizer listening on http://{config.host}:{config.port}", flush=True)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), AUDIT_FLUSH_S)
            service.audit.flush()
    finally:
        service.audit.flush(everything=True)
        await runner.cleanup()


def add_agency(path: Path, agency: str, api_token: str) -> None:
    """Record ``agency``'s token digest in the credentials file (created owner-only)."""
    data: dict[str, Any] = {"agencies": {}}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("agencies", {})
    data["agencies"][agency] = {"token_sha256": token_digest(api_token)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
