"""``xborder publish``: validate JSON lines, publish the valid ones, report every rejection.

Every line is validated and every rejected line is reported with its number and reason.
By default publishing stops at the first rejected line (the remaining lines are still
validated and reported) and the exit status is 1; with ``--keep-going`` every valid line
is published and the exit status is 0. ``--dry-run`` validates without publishing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

from xborder.errors import InvalidRecordError, XborderError
from xborder.producer import EventEncoder, IncidentPublisher

PROGRESS_MIN_BYTES = 1_000_000


@dataclass
class PublishSummary:
    """What one publish run did."""

    accepted: int = 0
    rejected: int = 0
    published: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        return (
            f"accepted {self.accepted}, rejected {self.rejected}, published {self.published}, "
            f"{self.bytes} bytes, {rate:,.0f} events/s"
        )


def _parse(line: str) -> dict[str, object]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(event, dict):
        raise InvalidRecordError("a line must hold one JSON object")
    return event


def publish_lines(
    encoder: EventEncoder,
    publisher: IncidentPublisher | None,
    lines: Iterable[str],
    source_name: str,
    record_name: str,
    keep_going: bool,
    err: TextIO,
) -> PublishSummary:
    """Validate each line with ``encoder``; publish through ``publisher`` (None: dry run)."""
    summary = PublishSummary()
    started = time.monotonic()
    publishing = publisher is not None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = _parse(line)
            payload = encoder.encode(event, record_name)
        except InvalidRecordError as exc:
            summary.rejected += 1
            err.write(f"{source_name}:{number}: rejected: {exc}\n")
            publishing = publishing and keep_going
            continue
        summary.accepted += 1
        if publishing and publisher is not None:
            publisher.send_encoded(event, payload)
            summary.published += 1
            summary.bytes += len(payload)
    if publisher is not None:
        publisher.flush()
    summary.seconds = time.monotonic() - started
    return summary


def open_source(path: str) -> tuple[str, TextIO, int]:
    """The display name, the text stream and its size in bytes (0 when unknown)."""
    if path == "-":
        return "<stdin>", sys.stdin, 0
    try:
        stream = open(path, encoding="utf-8")
    except OSError as exc:
        raise XborderError(f"cannot read {path}: {exc.strerror}") from exc
    return path, stream, os.path.getsize(path)


def with_progress(stream: TextIO, size: int) -> Iterable[str]:
    """Lines of ``stream``, with a progress bar on stderr for large files on a terminal."""
    if size < PROGRESS_MIN_BYTES:
        yield from stream
        return
    with tqdm(total=size, unit="B", unit_scale=True, desc="publishing", file=sys.stderr) as bar:
        for line in stream:
            bar.update(len(line.encode("utf-8")))
            yield line
