"""Commands for integrators who do not write Python: key files, pseudonymisation, schemas.

- ``xborder keys generate [PATH]`` writes a new key-ring file (the format
  :meth:`xborder.pseudonym.KeyRing.from_file` reads), readable by its owner only; it
  prints the path and the key id, never the secret. ``xborder keys rotate [PATH]`` adds a
  new active key and keeps the older ones for lookups; ``xborder keys show-ids [PATH]``
  prints the ids and the worker's ``XBORDER_TOKENIZER__ACCEPTED_KEY_IDS``. PATH defaults
  to ``XBORDER_KEY_FILE``.
- ``xborder tokenizer serve`` runs the OPRF tokenisation service
  (:mod:`xborder.pseudonym.oprf_service`); ``xborder tokenizer add-agency AGENCY`` issues
  an agency's API token.
- ``xborder pseudonymise`` turns events with raw identifiers into events with tokens
  (:mod:`xborder.pseudonymise_cli`).
- ``xborder schemas export DIR`` writes each schema self-contained (references inlined),
  as every Avro library reads it, and a manifest with each one's Parsing Canonical Form
  and CRC-64-AVRO fingerprint as it appears on the wire.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from xborder.errors import ConfigurationError, XborderError
from xborder.settings import Settings

MANIFEST: Final = "manifest.json"
EXAMPLE_NOTE: Final = (
    "EXAMPLE KEY for tests and walkthroughs only: never tokenise real identifiers with it"
)
_TYPE_KEYS: Final = (
    "type", "name", "namespace", "aliases", "doc", "symbols", "default", "size",
    "logicalType", "precision", "scale", "items", "values", "fields",
)  # fmt: skip
_FIELD_KEYS: Final = ("name", "type", "default", "doc", "order", "aliases")


# -- keys -------------------------------------------------------------------------------


def generate_key_file(path: Path, key_id: str, force: bool = False, example: bool = False) -> str:
    """Write a new one-key ring to ``path`` (mode 0600); returns the key id.

    Refuses an existing ``path`` unless ``force``: it may hold the key the partner
    agencies share, and a lost key makes every token made with it unmatchable.
    """
    from xborder.pseudonym import MIN_KEY_BYTES, KeyRing

    ring = KeyRing(key_id, {key_id: secrets.token_bytes(MIN_KEY_BYTES)}, source="new key")
    document = json.loads(ring.to_json())
    if example:
        document = {"note": EXAMPLE_NOTE, **document}
    if path.exists() and not force:
        raise XborderError(
            f"{path} already exists and may hold a key in use; choose another path, or "
            "pass --force to replace it (tokens made with the old key then no longer match)"
        )
    _write_owner_only(path, json.dumps(document, indent=2) + "\n", replace=force)
    return key_id


def rotate_key_file(path: Path, key_id: str) -> tuple[str, ...]:
    """Add a new active key to the ring in ``path``, keeping the others for lookups;
    returns the ring's key ids, the new one first."""
    from xborder.pseudonym import MIN_KEY_BYTES, KeyRing

    ring = KeyRing.from_file(path).rotate(key_id, secrets.token_bytes(MIN_KEY_BYTES))
    note = json.loads(path.read_text(encoding="utf-8")).get("note")
    document = json.loads(ring.to_json())
    if note is not None:
        document = {"note": note, **document}
    _write_owner_only(path, json.dumps(document, indent=2) + "\n", replace=True)
    return ring.key_ids


def _write_owner_only(path: Path, text: str, replace: bool) -> None:
    """Write ``text`` beside ``path`` with mode 0600 from the start, then move it there
    (over an existing file only when ``replace``)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the path appeared meanwhile
            os.unlink(temporary)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _key_path(settings: Settings, args: argparse.Namespace) -> Path:
    path: Path | None = args.path or settings.key_file
    if path is None:
        raise ConfigurationError(
            f"xborder keys {args.action}: name the key file (PATH) or set XBORDER_KEY_FILE"
        )
    return path


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "show-ids":
        return _show_ids(settings, args)
    path = _key_path(settings, args)
    example = getattr(args, "example", False)
    key_id = args.key_id or f"{'example' if example else 'key'}-{datetime.now(UTC):%Y%m%d}"
    if args.action == "rotate":
        key_ids = rotate_key_file(path, key_id)
        print(
            f"rotated key ring {path}: new active key {key_id}; still accepted for "
            f"lookups: {', '.join(key_ids[1:])}"
        )
        print(
            "every agency needs the new ring before its tokens are published (until then "
            "producers publish each identifier under every key in their ring); the worker "
            f"accepts the ids in XBORDER_TOKENIZER__ACCEPTED_KEY_IDS={','.join(key_ids)}; "
            "retire old keys once nothing needs to match their tokens",
            file=sys.stderr,
        )
        return 0
    generate_key_file(path, key_id, force=args.force, example=example)
    print(f"wrote key ring {path} (key id {key_id}, mode 600)")
    if example:
        print("this is an EXAMPLE key: do not use it for real identifiers", file=sys.stderr)
    else:
        print(
            "share it with the partner agencies only through the key exchange the "
            "agreement sets up; every agency must tokenise with the same key",
            file=sys.stderr,
        )
    return 0


def _show_ids(settings: Settings, args: argparse.Namespace) -> int:
    """Print the key ring's ids (never a secret) and the worker setting that accepts them."""
    from xborder.pseudonym import KeyRing, key_ring_from_settings

    ring = KeyRing.from_file(args.path) if args.path else key_ring_from_settings(settings)
    print(f"active: {ring.active_key_id}")
    for key_id in ring.key_ids[1:]:
        print(f"lookup: {key_id}")
    print(f"XBORDER_TOKENIZER__ACCEPTED_KEY_IDS={','.join(ring.key_ids)}")
    return 0


# -- tokenizer --------------------------------------------------------------------------


def cmd_tokenizer(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from xborder.pseudonym.oprf import new_api_token
    from xborder.pseudonym.oprf_service import add_agency, serve

    if args.action == "serve":
        asyncio.run(serve(settings))
        return 0
    path = args.agencies_file or settings.tokenizer.agencies_file
    if path is None:
        raise ConfigurationError(
            "xborder tokenizer add-agency: pass --agencies-file or set "
            "XBORDER_TOKENIZER__AGENCIES_FILE"
        )
    api_token = new_api_token()
    add_agency(path, args.agency, api_token)
    print(api_token)
    print(
        f"agency {args.agency}: token digest written to {path} (mode 600); hand the token "
        "above to the agency only, as its XBORDER_TOKENIZER__API_TOKEN: it is not stored",
        file=sys.stderr,
    )
    return 0


# -- pseudonymise -----------------------------------------------------------------------


def cmd_pseudonymise(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.pseudonym import tokenizer_from_settings
    from xborder.pseudonym.oprf import OprfTokenizer, prefetched
    from xborder.pseudonymise_cli import pseudonymise_event, pseudonymise_lines
    from xborder.publish_cli import decode_line, open_source

    tokenizer = tokenizer_from_settings(settings, args.key_file)
    name, stream, _ = open_source(args.file)
    with contextlib.ExitStack() as stack:
        if stream is not sys.stdin.buffer:
            stack.callback(stream.close)
        out = sys.stdout
        if args.output is not None and str(args.output) != "-":
            out = stack.enter_context(open(args.output, "w", encoding="utf-8"))
        lines: Iterable[bytes] = stream
        if isinstance(tokenizer, OprfTokenizer):  # batched requests, not one per token
            lines = prefetched(tokenizer, stream, pseudonymise_event, decode_line)
        summary = pseudonymise_lines(tokenizer, lines, name, out, sys.stderr)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


# -- schemas ----------------------------------------------------------------------------


def _ordered(node: Any, field: bool = False) -> Any:
    """A schema document with the attributes in the order people write them, without
    fastavro's private ``__`` keys."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    keys = _FIELD_KEYS if field else _TYPE_KEYS
    out: dict[str, Any] = {}
    for key in (*keys, *sorted(node)):
        if key in node and key not in out and not key.startswith("__"):
            value = node[key]
            if key == "fields":
                out[key] = [_ordered(f, field=True) for f in value]
            elif key in ("type", "items", "values"):
                out[key] = _ordered(value)
            else:
                out[key] = value
    return out


def export_schemas(settings: Settings, directory: Path) -> list[dict[str, Any]]:
    """Write each current schema as ``<full name>.avsc`` (self-contained) and the manifest.

    Each file is read back before it is listed: its canonical form must be the one the
    codec fingerprints, or the export fails.
    """
    import fastavro
    from fastavro.schema import to_parsing_canonical_form

    from xborder.schemas import SchemaStore

    store = SchemaStore(settings.schemas_dir)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for full_name in store.names():
        stored = store.current(full_name)
        document = _ordered(stored.parsed)
        reread = to_parsing_canonical_form(fastavro.parse_schema(document, _write_hint=False))
        if reread != stored.canonical:
            raise ConfigurationError(
                f"{full_name}: the exported schema's canonical form differs from the "
                "codec's; this is a bug in the export, please report it"
            )
        path = directory / f"{full_name}.avsc"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        entries.append(
            {
                "name": full_name,
                "type": document["type"],
                "file": path.name,
                "fingerprint": stored.fingerprint.hex(),
                "canonical_form": stored.canonical,
            }
        )
    manifest = {
        "fingerprint_algorithm": "CRC-64-AVRO",
        "fingerprint_format": "hex of the 8 fingerprint bytes in wire order (little-endian), "
        "as they follow the magic C3 01 in Avro single-object encoding",
        "schemas": entries,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


def cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    entries = export_schemas(settings, args.directory)
    for entry in entries:
        print(f"{entry['fingerprint']}  {args.directory / entry['file']}")
    print(f"{len(entries)} schemas and {args.directory / MANIFEST}", file=sys.stderr)
    return 0


# -- parser -----------------------------------------------------------------------------


def add_integrator_parsers(sub: Any) -> None:
    """Register ``keys``, ``pseudonymise`` and ``schemas`` on the CLI's subparsers."""
    keys = sub.add_parser("keys", help="pseudonymisation key files")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    generate = keys_sub.add_parser(
        "generate", help="write a new key-ring file (owner-only), print its path and key id"
    )
    generate.add_argument(
        "path", type=Path, nargs="?", help="key file to create (default XBORDER_KEY_FILE)"
    )
    generate.add_argument("--key-id", help="id of the new key (default key-<UTC date>)")
    generate.add_argument("--force", action="store_true", help="replace an existing file")
    generate.add_argument(
        "--example",
        action="store_true",
        help="mark the key as an example (id example-<date>, a note in the file)",
    )
    rotate = keys_sub.add_parser(
        "rotate", help="add a new active key to a key-ring file, keeping the others for lookups"
    )
    rotate.add_argument(
        "path",
        type=Path,
        nargs="?",
        help="key file to rotate (rewritten, mode 600; default XBORDER_KEY_FILE)",
    )
    rotate.add_argument("--key-id", help="id of the new key (default key-<UTC date>)")
    show = keys_sub.add_parser(
        "show-ids",
        help="print the key ids of a key ring (never a secret) and the worker's "
        "XBORDER_TOKENIZER__ACCEPTED_KEY_IDS line",
    )
    show.add_argument(
        "path",
        type=Path,
        nargs="?",
        help="key file (default XBORDER_KEY_FILE or XBORDER_TOKENIZER__KEY_RING)",
    )
    keys.set_defaults(handler=cmd_keys)

    tokenizer = sub.add_parser(
        "tokenizer", help="the OPRF tokenisation service (holds the key; agencies blind)"
    )
    tokenizer_sub = tokenizer.add_subparsers(dest="action", required=True)
    tokenizer_sub.add_parser(
        "serve",
        help="run the service on XBORDER_TOKENIZER__HOST:PORT with the key ring in "
        "XBORDER_TOKENIZER__SERVICE_KEY_FILE",
    )
    add_agency = tokenizer_sub.add_parser(
        "add-agency",
        help="issue an API token for an agency: its SHA-256 goes to the credentials file, "
        "the token to standard output, once",
    )
    add_agency.add_argument("agency", help="agency id (as in the agencies config)")
    add_agency.add_argument(
        "--agencies-file",
        type=Path,
        help="credentials file (default XBORDER_TOKENIZER__AGENCIES_FILE)",
    )
    tokenizer.set_defaults(handler=cmd_tokenizer)

    pseudonymise = sub.add_parser(
        "pseudonymise",
        help="events with raw identifiers in (JSON lines), events with tokens out",
    )
    pseudonymise.add_argument("file", nargs="?", default="-", help="JSON lines, '-' for stdin")
    pseudonymise.add_argument(
        "-o", "--output", type=Path, help="output file (default standard output)"
    )
    pseudonymise.add_argument(
        "--key-file", type=Path, help="key-ring file (default XBORDER_KEY_FILE)"
    )
    pseudonymise.set_defaults(handler=cmd_pseudonymise)

    schemas = sub.add_parser("schemas", help="the Avro schemas, for other languages' libraries")
    schemas_sub = schemas.add_subparsers(dest="action", required=True)
    export = schemas_sub.add_parser(
        "export",
        help="write each schema self-contained (<full name>.avsc) with a manifest of "
        "canonical forms and fingerprints",
    )
    export.add_argument("directory", type=Path, help="output directory (created if missing)")
    schemas.set_defaults(handler=cmd_schemas)
    from xborder.schema_topic import add_publish_parser

    add_publish_parser(schemas_sub)
