"""The ClickHouse password (in XBORDER_CLICKHOUSE__URL) never appears in output: not in
'xborder settings', not in the error for a bad or unreachable server URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from xborder.cli import main
from xborder.settings import mask_url

PASSWORD = "s3cret-Pw-93"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"http://bob:{PASSWORD}@ch.example:8123/db", "http://bob:**********@ch.example:8123/db"),
        (f"https://bob:{PASSWORD}@ch.example", "https://bob:**********@ch.example"),
        (f"bob:{PASSWORD}@ch.example", "bob:**********@ch.example"),
        ("http://bob@ch.example:8123", "http://bob@ch.example:8123"),
        ("http://ch.example:8123/db", "http://ch.example:8123/db"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_print_the_clickhouse_url_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XBORDER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XBORDER_CLICKHOUSE__URL", f"http://bob:{PASSWORD}@127.0.0.1:1/db")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert "XBORDER_CLICKHOUSE__URL=http://bob:**********@127.0.0.1:1/db" in out


@pytest.mark.parametrize(
    "url",
    [f"ftp://bob:{PASSWORD}@127.0.0.1:1/db", f"http://bob:{PASSWORD}@127.0.0.1:1/db"],
    ids=["bad-scheme", "unreachable"],
)
def test_clickhouse_url_errors_do_not_print_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XBORDER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XBORDER_CLICKHOUSE__URL", url)
    assert main(["migrate"]) != 0
    captured = capsys.readouterr()
    assert "ClickHouse" in captured.err
    assert PASSWORD not in captured.out + captured.err
