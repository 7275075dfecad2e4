"""ClickHouse access control in server mode: users, roles and row policies per agency.

The SQL lives in ``deploy/clickhouse/`` (``access.sql``: profiles, the base read role,
the sink's writer and the auditors; ``agency.sql``: one agency's role, user and row
policies, rendered once per agency of the agencies config). ``xborder clickhouse access``
prints the rendered statements (passwords appear only as SHA-256 hashes); ``--apply``
runs them on the server of ``XBORDER_CLICKHOUSE__URL``, whose user must have access
management. Passwords are generated once per environment into a mode-600 JSON file in
the data directory and printed only with ``--show-passwords``.

Embedded chDB has no users: there, analysts' SQL runs read-only through
:mod:`xborder.sql_http` instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from string import Template
from typing import Any

from xborder.agencies import load_agencies
from xborder.errors import ConfigurationError
from xborder.settings import REPO_ROOT, Settings

DEPLOY_DIR = REPO_ROOT / "deploy" / "clickhouse"
WRITER = "xborder_writer"
AUDITOR = "xborder_auditor"
PASSWORDS_FILE = "clickhouse-access.json"
"""In the data directory: the generated passwords by user name (mode 600)."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def agency_user(agency: str) -> str:
    """The ClickHouse user of an agency's analysts."""
    return f"xborder_{agency.replace('-', '_')}"


def agency_role(agency: str) -> str:
    """The role whose row policies give an agency its rows."""
    return f"xborder_agency_{agency.replace('-', '_')}"


def passwords_path(settings: Settings) -> Path:
    return settings.data_dir / PASSWORDS_FILE


def load_passwords(path: Path, users: list[str]) -> dict[str, str]:
    """The password of each of ``users``, generating (and saving) those the file lacks.
    The file is created mode 600 and kept so."""
    passwords: dict[str, str] = {}
    if path.exists():
        try:
            passwords = dict(json.loads(path.read_text()))
        except ValueError as exc:
            raise ConfigurationError(
                f"{path} is not a JSON object of passwords: {exc.__class__.__name__}; "
                "fix it or remove it to generate new passwords (then apply again)"
            ) from exc
    missing = [user for user in users if not passwords.get(user)]
    for user in missing:
        passwords[user] = secrets.token_urlsafe(24)
    if missing or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(passwords, out, indent=1, sort_keys=True)
        os.replace(partial, path)
    os.chmod(path, 0o600)
    return passwords


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _template(name: str) -> Template:
    """A file of ``deploy/clickhouse/`` without its ``--`` comment lines."""
    lines = (DEPLOY_DIR / name).read_text().splitlines()
    return Template("\n".join(line for line in lines if not line.lstrip().startswith("--")))


def split_statements(sql: str) -> list[str]:
    """The statements of a rendered template, split on ``;``, each on one line."""
    return [" ".join(part.split()) for part in sql.split(";") if part.strip()]


def render(database: str, agencies: list[str], passwords: dict[str, str]) -> list[str]:
    """Every access-control statement, in the order to run them."""
    if not _IDENTIFIER.match(database):
        raise ConfigurationError(
            f"database name {database!r} must be letters, digits and '_' to be used in "
            "access-control SQL; set XBORDER_CLICKHOUSE__DATABASE"
        )
    shared = _template("access.sql").substitute(
        database=database,
        writer_sha256=_sha256(passwords[WRITER]),
        auditor_sha256=_sha256(passwords[AUDITOR]),
    )
    statements = split_statements(shared)
    template = _template("agency.sql")
    for agency in agencies:
        user = agency_user(agency)
        statements += split_statements(
            template.substitute(
                database=database,
                agency=agency,
                role=agency_role(agency),
                user=user,
                policy=f"xborder_{agency.replace('-', '_')}",
                user_sha256=_sha256(passwords[user]),
            )
        )
    return statements


def users_of(agencies: list[str]) -> list[str]:
    return [WRITER, AUDITOR, *(agency_user(a) for a in agencies)]


def cmd_clickhouse_access(settings: Settings, args: argparse.Namespace) -> int:
    agencies = load_agencies(settings.agencies_config).ids
    path = passwords_path(settings)
    passwords = load_passwords(path, users_of(agencies))
    if args.show_passwords:  # on request only
        for user in users_of(agencies):
            print(f"{user} {passwords[user]}")
        return 0
    statements = render(settings.clickhouse.database, agencies, passwords)
    if not args.apply:
        for statement in statements:
            print(f"{statement};")
        return 0
    url = settings.clickhouse.url
    if not url:
        raise ConfigurationError(
            "access control needs a ClickHouse server: set XBORDER_CLICKHOUSE__URL to an "
            "administrator with access management (embedded chDB has no users; its analyst "
            "SQL is read-only through 'xborder query' and the sink's endpoint)"
        )
    from xborder.clickhouse import _server_client, migrate

    client = _server_client(url, settings.clickhouse.database)
    try:
        migrate(client)  # the row policies name the tables
        for statement in statements:
            client.command(statement)
    finally:
        client.close()
    print(
        f"applied {len(statements)} access-control statements: users "
        f"{', '.join(users_of(agencies))}; passwords in {path} (mode 600, "
        "'xborder clickhouse access --show-passwords' prints them)"
    )
    return 0


def add_clickhouse_parser(sub: Any) -> None:
    """The ``clickhouse`` subcommand group."""
    clickhouse = sub.add_parser("clickhouse", help="ClickHouse server administration")
    commands = clickhouse.add_subparsers(dest="clickhouse_command", required=True)
    access = commands.add_parser(
        "access",
        help="users, roles and row policies per agency (deploy/clickhouse/): print the SQL, "
        "or --apply it on the server",
    )
    access.add_argument(
        "--apply", action="store_true", help="run the statements on XBORDER_CLICKHOUSE__URL"
    )
    access.add_argument(
        "--show-passwords",
        action="store_true",
        help="print each user's generated password (and nothing else)",
    )
    access.set_defaults(handler=cmd_clickhouse_access)
