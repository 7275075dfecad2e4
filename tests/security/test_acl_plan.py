"""The ACL plan, the secret settings and the TLS material, without a broker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from xborder import kafka_security
from xborder.cli import main
from xborder.errors import ConfigurationError
from xborder.settings import Settings, load_settings, to_env

AGENCIES = ["cantho", "angiang"]


def secure_settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        **{
            "data_dir": tmp_path,
            "kafka.security_protocol": "SASL_SSL",
            "topics.prefix": "p.",
            **overrides,
        }
    )


def test_an_agency_writes_only_its_own_topics_and_reads_only_what_is_shared(
    tmp_path: Path,
) -> None:
    plan = kafka_security.acl_plan(secure_settings(tmp_path), AGENCIES)
    cantho = [g for g in plan if g.principal == "cantho"]
    writes = {g.name for g in cantho if g.operation in ("WRITE", "ALL")}
    reads = {g.name for g in cantho if g.resource == "TOPIC" and g.operation == "READ"}
    assert writes == {"p.incidents.cantho", "p.verdicts.cantho", "p.schemas"}
    assert reads == {
        "p.alerts.cantho", "p.quarantine.cantho", "p.cases", "p.verification", "p.schemas",
    }  # fmt: skip
    assert all(g.pattern == "LITERAL" for g in cantho if g.resource == "TOPIC")


def test_only_the_worker_writes_internal_and_output_topics(tmp_path: Path) -> None:
    settings = secure_settings(tmp_path)
    plan = kafka_security.acl_plan(settings, AGENCIES)
    outputs = {
        "p.incidents.accepted", "p.deadletters", "p.correlation.blocks", "p.correlation.links",
        "p.correlations", "p.cases", "p.verification", "p.alerts.cantho", "p.alerts.angiang",
    }  # fmt: skip
    for topic in outputs:
        writers = {g.principal for g in plan if g.name == topic and g.operation == "WRITE"}
        assert writers == {"worker"}, topic
    sink = {g.name for g in plan if g.principal == "sink" and g.resource == "TOPIC"}
    assert not any(g.operation == "WRITE" for g in plan if g.principal == "sink")
    assert sink == {  # the shared dead letters (headers and sizes), never a quarantine topic
        "p.incidents.accepted", "p.correlations", "p.cases", "p.verification",
        "p.alerts.cantho", "p.alerts.angiang", "p.schemas", "p.deadletters",
    }  # fmt: skip


def test_an_agency_named_like_a_service_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="also a service principal"):
        kafka_security.principals(["cantho", "worker"])


def test_the_secure_files_default_under_the_data_dir_and_follow_a_child(tmp_path: Path) -> None:
    settings = secure_settings(tmp_path)
    assert settings.kafka.credentials_file == tmp_path / "kafka/security/credentials.json"
    assert settings.kafka.ssl_cafile == tmp_path / "kafka/security/ca.pem"
    child = settings.with_overrides(**{"data_dir": tmp_path / "worker-0"})
    assert child.kafka.credentials_file == settings.kafka.credentials_file
    plain = load_settings(**{"data_dir": tmp_path})
    assert plain.kafka.credentials_file is None and kafka_security.kafka_python(plain) == {}


def test_the_password_reaches_a_child_but_is_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = secure_settings(tmp_path, **{"kafka.sasl_password": "s3cr3t-value"})
    assert to_env(settings)["XBORDER_KAFKA__SASL_PASSWORD"] == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)
    monkeypatch.setenv("XBORDER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("XBORDER_KAFKA__SASL_PASSWORD", "s3cr3t-value")
    assert main(["--data-dir", str(tmp_path), "settings"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-value" not in out
    assert "XBORDER_KAFKA__SASL_PASSWORD=**********" in out


def test_certs_and_passwords_are_made_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XBORDER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    assert main(["--data-dir", str(tmp_path), "kafka", "certs"]) == 0
    directory = tmp_path / "kafka" / "security"
    credentials = json.loads((directory / "credentials.json").read_text())
    assert set(credentials) == {"admin", "broker", "worker", "sink", "registry", *AGENCIES}
    out = capsys.readouterr().out
    assert not any(p in out for p in credentials.values())
    for private in ("credentials.json", "ca.key", "broker.key", "broker-keystore.pem"):
        assert stat.S_IMODE((directory / private).stat().st_mode) == 0o600, private
    broker = x509.load_pem_x509_certificates((directory / "broker.pem").read_bytes())[0]
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    before = (directory / "ca.pem").read_bytes()
    assert main(["--data-dir", str(tmp_path), "kafka", "certs"]) == 0  # kept, not remade
    assert (directory / "ca.pem").read_bytes() == before
    assert json.loads((directory / "credentials.json").read_text()) == credentials
    assert main(["--data-dir", str(tmp_path), "kafka", "credentials", "--show", "cantho"]) == 0
    assert capsys.readouterr().out.strip().endswith(credentials["cantho"])
