"""Kafka security: TLS material, SCRAM principals, ACLs, and each client library's options.

In ``SASL_SSL`` mode (``XBORDER_KAFKA__SECURITY_PROTOCOL``) every listener speaks TLS,
every client authenticates as a SCRAM-SHA-512 principal, and KRaft's
``StandardAuthorizer`` allows each principal only what :func:`acl_plan` grants:

- an agency writes its own ``incidents.<agency>`` and ``verdicts.<agency>`` and reads
  what is shared with it: its ``alerts.<agency>`` and ``quarantine.<agency>``, ``cases``
  and ``verification`` (the case events and the joint-verification record it takes part
  in). ``correlations``
  (both incidents' details), ``incidents.accepted``, ``deadletters`` and the internal
  topics are not shared: details cross only through a release;
- the worker alone reads the agency topics and writes the internal and output topics;
- the sink alone reads what it stores;
- ``admin`` (the operator's tools) and ``broker`` (the broker itself) are super users.

The CA, the broker's certificate and the per-principal passwords are made per environment
by ``xborder kafka certs`` under ``<data_dir>/kafka/security/`` (never committed); the
password file is owner-only. One function per client library turns the settings into that
library's options, so each client construction site adds one line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xborder.errors import ConfigurationError, ServiceUnavailableError
from xborder.settings import KafkaSettings, Settings

logger = logging.getLogger(__name__)

SERVICES = ("admin", "broker", "worker", "sink", "registry")
"""Principals besides the agencies: the super users first, then one per service."""
SUPER_USERS = ("admin", "broker")
DEFAULT_PRINCIPAL = "admin"
REGISTRY_TOPIC = "_schemas"
"""The schema registry's own storage topic (its default ``kafkastore.topic``)."""
REGISTRY_GROUP = "schema-registry"
CA_NAME, BROKER_NAME = "ca", "broker"


def security_dir(settings: Settings) -> Path:
    """Where ``xborder kafka certs`` keeps this environment's CA, certificates, passwords."""
    return settings.kafka_data_dir / "security"


def is_secure(settings: Settings | KafkaSettings) -> bool:
    kafka = settings.kafka if isinstance(settings, Settings) else settings
    return kafka.security_protocol != "PLAINTEXT"


# -- TLS material ---------------------------------------------------------------------


def make_certs(directory: Path, hosts: Sequence[str], days: int = 825) -> list[Path]:
    """A CA and a broker certificate (server and client auth, for the mutual-TLS
    controller listener) naming ``hosts``; existing files are kept. Returns those written.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = directory / f"{CA_NAME}.pem", directory / f"{CA_NAME}.key"
    cert, key = directory / f"{BROKER_NAME}.pem", directory / f"{BROKER_NAME}.key"
    if all(p.exists() for p in (ca_cert, ca_key, cert, key)):
        return []
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    now = dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xborder"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority = (
        x509.CertificateBuilder()
        .subject_name(name(f"xborder CA {directory.parent.parent.name}"))
        .issuer_name(name(f"xborder CA {directory.parent.parent.name}"))
        .public_key(authority_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(authority_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(name(BROKER_NAME))
        .issuer_name(authority.subject)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write(ca_key, authority_key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(ca_cert, authority.public_bytes(pem), 0o644)
    # Kafka's PEM key store: the key (PKCS#8) followed by the certificate chain
    _write(key, broker_key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(cert, broker.public_bytes(pem) + authority.public_bytes(pem), 0o644)
    return [ca_cert, ca_key, cert, key]


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def broker_keystore(directory: Path) -> Path:
    """The broker's key and certificate chain in one PEM file, as Kafka's PEM key store reads."""
    store = directory / f"{BROKER_NAME}-keystore.pem"
    if not store.exists():
        data = (directory / f"{BROKER_NAME}.key").read_bytes()
        _write(store, data + (directory / f"{BROKER_NAME}.pem").read_bytes(), 0o600)
    return store


# -- principals and passwords ---------------------------------------------------------


def principals(agency_ids: Iterable[str]) -> list[str]:
    """Every SCRAM principal of a deployment: the services, then one per agency."""
    agencies = list(agency_ids)
    clash = set(agencies) & set(SERVICES)
    if clash:
        raise ConfigurationError(
            f"agency id {sorted(clash)[0]!r} is also a service principal; rename the agency "
            "in the agencies config"
        )
    return [*SERVICES, *agencies]


def read_credentials(path: Path) -> dict[str, str]:
    """The password of each principal in the credentials file (empty when absent)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the Kafka credentials file {path} ({exc}); recreate it with "
            "'xborder kafka certs' or fix XBORDER_KAFKA__CREDENTIALS_FILE"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigurationError(f"{path} is not a JSON object of passwords by principal")
    return data


def ensure_credentials(path: Path, names: Iterable[str]) -> dict[str, str]:
    """Add a random password for each principal the file lacks (owner-only file)."""
    known = read_credentials(path)
    missing = [n for n in names if n not in known]
    if missing or (path.exists() and path.stat().st_mode & 0o077):
        known.update({n: secrets.token_urlsafe(24) for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode(), 0o600)
    return known


def as_service(settings: Settings, service: str) -> Settings:
    """The settings of a service process (``worker``, ``sink``): it runs as its own
    principal when the credentials file holds that principal's password, else as the
    principal the settings name."""
    kafka = settings.kafka
    if not is_secure(kafka) or kafka.credentials_file is None:
        return settings
    if service not in read_credentials(kafka.credentials_file):
        logger.info("the %s's Kafka clients authenticate as %r", service, principal(kafka).username)
        return settings
    logger.info("the %s's Kafka clients authenticate as %r", service, service)
    return settings.with_overrides(**{"kafka.sasl_username": service, "kafka.sasl_password": None})


@dataclass(frozen=True)
class Principal:
    username: str
    password: str


def principal(kafka: KafkaSettings) -> Principal:
    """Who this process's clients authenticate as, with the password."""
    username = kafka.sasl_username or DEFAULT_PRINCIPAL
    if kafka.sasl_password is not None:
        return Principal(username, kafka.sasl_password.get_secret_value())
    path = kafka.credentials_file
    password = read_credentials(path).get(username) if path else None
    if password is None:
        raise ConfigurationError(
            f"no password for Kafka principal {username!r}: set XBORDER_KAFKA__SASL_PASSWORD, "
            f"or create the credentials file ({path}) with 'xborder kafka certs'"
        )
    return Principal(username, password)


# -- client options, one function per library -----------------------------------------


def _kafka(settings: Settings | KafkaSettings | None) -> KafkaSettings | None:
    if settings is None:
        return None
    kafka = settings.kafka if isinstance(settings, Settings) else settings
    return kafka if is_secure(kafka) else None


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context that trusts the configured CA."""
    cafile = kafka.ssl_cafile
    if cafile is None or not cafile.exists():
        raise ConfigurationError(
            f"the Kafka CA file {cafile} does not exist; make it with 'xborder kafka certs' "
            "or set XBORDER_KAFKA__SSL_CAFILE"
        )
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = kafka.ssl_check_hostname
    return context


def kafka_python(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """kafka-python options (KafkaConsumer, KafkaProducer, KafkaAdminClient); {} in plaintext."""
    kafka = _kafka(settings)
    if kafka is None:
        return {}
    who = principal(kafka)
    return {
        "security_protocol": kafka.security_protocol,
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": who.username,
        "sasl_plain_password": who.password,
        "ssl_context": ssl_context(kafka),
    }


def aiokafka(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """aiokafka options (AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient)."""
    return kafka_python(settings)  # the same names and types


def faust_credentials(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """Faust app options: ``broker_credentials`` (SASL over TLS) or nothing."""
    kafka = _kafka(settings)
    if kafka is None:
        return {}
    import faust

    who = principal(kafka)
    credentials = faust.SASLCredentials(
        username=who.username,
        password=who.password,
        ssl_context=ssl_context(kafka),
        mechanism=kafka.sasl_mechanism,
    )
    return {"broker_credentials": credentials}


def librdkafka(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """confluent-kafka (librdkafka) configuration entries (librdkafka refuses a None
    value, so an unset one is left out)."""
    kafka = _kafka(settings)
    if kafka is None:
        return {}
    who = principal(kafka)
    entries = {
        "security.protocol": kafka.security_protocol.lower(),
        "sasl.mechanisms": kafka.sasl_mechanism,
        "sasl.username": who.username,
        "sasl.password": who.password,
        "ssl.ca.location": str(kafka.ssl_cafile),
        "ssl.endpoint.identification.algorithm": "https" if kafka.ssl_check_hostname else "none",
    }
    return {name: value for name, value in entries.items() if value is not None}


# -- ACLs -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may ``operation`` the ``resource`` named ``name``."""

    principal: str
    resource: str  # TOPIC, GROUP, CLUSTER
    pattern: str  # LITERAL or PREFIXED
    name: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, ALL, ...

    def describe(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        return f"User:{self.principal}\t{self.operation}\t{self.resource}:{self.name}{star}"


def acl_plan(settings: Settings, agency_ids: Sequence[str]) -> list[Grant]:
    """Every ACL the deployment needs, from the settings and the agencies (see the module
    docstring for who may do what)."""
    from xborder.topics import Topics

    t = Topics(prefix=settings.topics.prefix, agency_ids=tuple(agency_ids))
    grants: list[Grant] = []

    def topic(who: str, name: str, *ops: str, prefixed: bool = False) -> None:
        pattern = "PREFIXED" if prefixed else "LITERAL"
        grants.extend(Grant(who, "TOPIC", pattern, name, op) for op in ops)

    def group(who: str, name: str, prefixed: bool = True) -> None:
        grants.append(Grant(who, "GROUP", "PREFIXED" if prefixed else "LITERAL", name, "READ"))

    for agency in t.agency_ids:
        topic(agency, t.incidents(agency), "WRITE", "DESCRIBE")
        topic(agency, t.verdicts(agency), "WRITE", "DESCRIBE")
        # its quarantine: its own events refused for a raw identifier, with their bytes
        for shared in (t.alerts(agency), t.cases, t.verification, t.quarantine(agency)):
            topic(agency, shared, "READ", "DESCRIBE")
        # writer schemas: a forged value is refused on read (its key is its fingerprint)
        topic(agency, t.schemas, "READ", "WRITE", "DESCRIBE")
        group(agency, f"{agency}.")  # its monitoring consumers' groups: '<agency>.<name>'

    worker = "worker"
    for name in (*t.all_incidents, *t.all_verdicts):
        topic(worker, name, "READ", "DESCRIBE")
    for name in (
        t.accepted, t.dead_letters, t.blocks, t.links, t.late, t.correlations, t.cases,
        t.verification, t.schemas, *t.all_alerts, *t.all_quarantine,
    ):  # fmt: skip
        topic(worker, name, "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")
    # the Faust tables' changelogs, which the worker creates before it joins its group
    topic(worker, f"{settings.worker.app_id}-", "ALL", prefixed=True)
    group(worker, settings.worker.app_id)  # the agents, '-ingest', backfill

    sink = "sink"
    for name in (*t.sunk(), t.schemas):
        topic(sink, name, "READ", "DESCRIBE")
    group(sink, settings.sink.group_id, prefixed=False)

    topic("registry", REGISTRY_TOPIC, "ALL")
    group("registry", REGISTRY_GROUP)
    return sorted(set(grants))


def _acl(grant: Grant) -> Any:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return ACL(
        principal=f"User:{grant.principal}",
        host="*",
        operation=ACLOperation[grant.operation],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            ResourceType[grant.resource], grant.name, ACLResourcePatternType[grant.pattern]
        ),
    )


def _grant(acl: Any) -> Grant:
    pattern = acl.resource_pattern
    return Grant(
        acl.principal.removeprefix("User:"),
        pattern.resource_type.name,
        pattern.pattern_type.name,
        pattern.resource_name,
        acl.operation.name,
    )


def admin(settings: Settings) -> Any:
    """A kafka-python admin client as this process's principal (the super user for the
    operator's commands)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            client_id="xborder-security",
            request_timeout_ms=settings.kafka.request_timeout_ms,
            bootstrap_timeout_ms=10_000,
            **kafka_python(settings),
        )
    except (KafkaError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} did not let "
            f"{principal(settings.kafka).username!r} in ({type(exc).__name__}): start it with "
            "'xborder kafka up', or check the address, XBORDER_KAFKA__SSL_CAFILE and the "
            "password (a refused password shows as a timeout here, and in the broker's log)"
        ) from exc


def effective_acls(client: Any) -> list[Grant]:
    """Every ACL the cluster holds."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    found, error = client.describe_acls(
        ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
    )
    if error.errno != 0:
        raise ConfigurationError(f"describing the ACLs failed: {error.__name__}")
    return sorted(_grant(a) for a in found)


def apply_acls(client: Any, plan: Sequence[Grant]) -> list[Grant]:
    """Create the planned ACLs the cluster lacks (idempotent); returns those created."""
    existing = set(effective_acls(client))
    missing = [g for g in plan if g not in existing]
    if missing:
        result = client.create_acls([_acl(g) for g in missing])
        failed = result.get("failed") or []
        if failed:
            raise ConfigurationError(f"creating ACLs failed: {failed[:3]}")
    return missing


def ensure_users(client: Any, credentials: dict[str, str], mechanism: str) -> list[str]:
    """Create the SCRAM credentials the cluster lacks (idempotent); returns the users added."""
    from kafka.admin import UserScramCredentialUpsertion

    described = client.describe_user_scram_credentials()
    have = {
        user
        for user, info in described.items()
        if not info.get("error")
        and any(
            c["mechanism"].name == mechanism.replace("-", "_") for c in info["credential_infos"]
        )
    }
    missing = [u for u in credentials if u not in have]
    if missing:
        result = client.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(u, mechanism, credentials[u]) for u in missing]
        )
        errors = {u: e for u, e in result.items() if e}
        if errors:
            raise ConfigurationError(f"creating SCRAM credentials failed: {errors}")
    return missing


# -- the local stack and the CLI ------------------------------------------------------


def credentials_path(settings: Settings) -> Path:
    return settings.kafka.credentials_file or security_dir(settings) / "credentials.json"


def prepare(settings: Settings, agency_ids: Sequence[str]) -> dict[str, str]:
    """Make this environment's CA, broker certificate and passwords where missing."""
    make_certs(security_dir(settings), [settings.local_kafka.host])
    return ensure_credentials(credentials_path(settings), principals(agency_ids))


def as_admin(settings: Settings) -> Settings:
    """The operator's settings: the super user ``admin`` with its password from the file."""
    kafka = settings.kafka.model_copy(update={"sasl_username": "admin", "sasl_password": None})
    return settings.model_copy(update={"kafka": kafka})


def local_broker(settings: Settings, agency_ids: Sequence[str]) -> Any:
    """The local broker's :class:`~xborder.local_kafka.BrokerSecurity`, None in plaintext."""
    from xborder.local_kafka import BrokerSecurity

    if not is_secure(settings):
        return None
    users = prepare(settings, agency_ids)
    return BrokerSecurity(
        directory=security_dir(settings),
        users=users,
        mechanism=settings.kafka.sasl_mechanism,
        client_options=kafka_python(as_admin(settings)),
    )


def provision(settings: Settings, agency_ids: Sequence[str]) -> tuple[list[str], list[Grant]]:
    """Create the missing SCRAM users and ACLs as ``admin``; returns what was created."""
    users = prepare(settings, agency_ids)
    client = admin(as_admin(settings))
    try:
        added = ensure_users(client, users, settings.kafka.sasl_mechanism)
        created = apply_acls(client, acl_plan(settings, agency_ids))
    finally:
        client.close()
    return added, created


def command(settings: Settings, action: str, apply: bool, show: str | None = None) -> int:
    """``xborder kafka certs|acls|credentials``."""
    import sys

    from xborder.agencies import load_agencies

    agency_ids = list(load_agencies(settings.agencies_config).ids)
    if action == "certs":
        written = make_certs(security_dir(settings), [settings.local_kafka.host])
        broker_keystore(security_dir(settings))  # what a broker outside 'kafka up' reads
        names = principals(agency_ids)
        ensure_credentials(credentials_path(settings), names)
        state = f"made {len(written)} files" if written else "kept the existing CA and certificate"
        where = credentials_path(settings)
        print(f"{state} in {security_dir(settings)}; passwords of {', '.join(names)} in {where}")
        return 0
    if action == "credentials":
        users = read_credentials(credentials_path(settings))
        if show is None:
            print("\n".join(sorted(users)) or "no credentials file; run 'xborder kafka certs'")
            return 0
        if show not in users:
            print(f"no principal {show!r} in {credentials_path(settings)}", file=sys.stderr)
            return 1
        print(users[show])  # asked for explicitly
        return 0
    if not is_secure(settings):
        print("the ACLs need XBORDER_KAFKA__SECURITY_PROTOCOL=SASL_SSL", file=sys.stderr)
        return 2
    if apply:
        added, created = provision(settings, agency_ids)
        print(f"# created {len(added)} SCRAM users, {len(created)} ACLs")
    client = admin(as_admin(settings))
    try:
        effective = effective_acls(client)
    finally:
        client.close()
    for grant in effective:
        print(grant.describe())
    missing = set(acl_plan(settings, agency_ids)) - set(effective)
    if missing:
        print(f"# {len(missing)} planned ACLs missing: run 'xborder kafka acls --apply'")
    return 1 if missing else 0
