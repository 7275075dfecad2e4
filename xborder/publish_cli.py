"""``xborder publish``: validate JSON lines, publish the valid ones, report every rejection.

Every line is decoded on its own (UTF-8, then JSON), validated, and every rejected line
is reported with its number and reason; a line that is not UTF-8 or not JSON is a
rejected line like any other, and the lines around it still go. By default publishing
stops at the first rejected line (the remaining lines are still validated and reported)
and the exit status is 1; with ``--keep-going`` every valid line is published and the
exit status is 0. ``--dry-run`` validates without publishing.

A line counts as published when the broker acknowledged it. If Kafka fails part-way
(every send times out, or the producer's buffer cannot drain), publishing stops, the
summary says how many events were delivered and up to which line, and the exit status is
3. Publishing the same file again with ``--skip-delivered`` sends only what is missing:
it first reads the event ids already on the agency's topic and skips the lines that
carry them, so a resumed file is never duplicated, whichever lines the failed run got
through (partitions are acknowledged independently, so a few lines after the first
missing one may already be there). ``--from-line N`` skips the lines before N without
reading the topic, for a resume point the operator knows.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from tqdm import tqdm

from xborder.errors import InvalidRecordError, ServiceUnavailableError, XborderError
from xborder.producer import EventEncoder, IncidentPublisher

PROGRESS_MIN_BYTES = 1_000_000
EXIT_REJECTED = 1
EXIT_PARTLY_PUBLISHED = 3
EXIT_INTERRUPTED = 130


@dataclass
class PublishSummary:
    """What one publish run did."""

    accepted: int = 0
    rejected: int = 0
    published: int = 0
    """Events the broker acknowledged."""
    skipped: int = 0
    """Valid lines whose event id was already on the topic (``--skip-delivered``)."""
    bytes: int = 0
    seconds: float = 0.0
    lines: int = 0
    """Lines read (the last line number)."""
    sent: int = 0
    """Events handed to the producer (published, failed or never answered)."""
    resume_line: int | None = None
    """First line handed to the producer that was not delivered (None: all were)."""
    delivered_after: int = 0
    """Lines delivered after ``resume_line`` (their partitions were acknowledged)."""
    last_delivered_line: int = 0
    failure: str | None = None
    """Why publishing stopped early (Kafka failed, interrupted); None when it finished."""

    def line(self) -> str:
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        skipped = f", skipped {self.skipped} already delivered" if self.skipped else ""
        return (
            f"accepted {self.accepted}, rejected {self.rejected}, published {self.published}"
            f"{skipped}, {self.bytes} bytes, {rate:,.0f} events/s"
        )

    def delivery(self) -> str:
        """Where a stopped run got to, for the operator who resumes it."""
        if self.resume_line is None:
            where = f"every line through {self.lines} that was sent is delivered"
        else:
            where = f"every event before line {self.resume_line} is delivered"
            if self.delivered_after:
                where += f", and {self.delivered_after} after it"
        return (
            f"delivered {self.published} of {self.sent} events sent ({self.lines} lines read); "
            f"{where}; last delivered line {self.last_delivered_line or '-'}"
        )


@dataclass
class _Deliveries:
    """Acknowledgements and failures of the sends, reported from the producer's thread."""

    sent: list[int] = field(default_factory=list)
    """Line numbers in send order (increasing)."""
    delivered: set[int] = field(default_factory=set)
    failure: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, future: Any, number: int) -> None:
        self.sent.append(number)

        def done(_: object) -> None:
            with self.lock:
                self.delivered.add(number)

        def failed(exc: BaseException) -> None:
            with self.lock:
                if self.failure is None:
                    self.failure = exc

        future.add_callback(done)
        future.add_errback(failed)

    def settle(self, summary: PublishSummary) -> None:
        with self.lock:
            delivered = set(self.delivered)
        summary.sent = len(self.sent)
        summary.published = len(delivered)
        summary.last_delivered_line = max(delivered, default=0)
        missing = [n for n in self.sent if n not in delivered]
        if missing:
            summary.resume_line = missing[0]
            summary.delivered_after = sum(1 for n in delivered if n > missing[0])


def decode_line(raw: bytes) -> dict[str, object]:
    """One input line as a JSON object; raises InvalidRecordError naming what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}; "
            "save the file as UTF-8"
        ) from exc
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(event, dict):
        raise InvalidRecordError("a line must hold one JSON object")
    return event


def publish_lines(
    encoder: EventEncoder,
    publisher: IncidentPublisher | None,
    lines: Iterable[bytes],
    source_name: str,
    record_name: str,
    keep_going: bool,
    err: TextIO,
    skip_event_ids: set[str] | None = None,
    from_line: int = 1,
) -> PublishSummary:
    """Validate each line with ``encoder``; publish through ``publisher`` (None: dry run).

    Lines before ``from_line`` are not read as events; valid lines whose event id is in
    ``skip_event_ids`` (lower case) are counted as skipped, not sent. Stops early when
    Kafka fails or on Ctrl-C: ``summary.failure`` then says why."""
    summary = PublishSummary()
    deliveries = _Deliveries()
    started = time.monotonic()
    publishing = publisher is not None
    try:
        for number, line in enumerate(lines, start=1):
            summary.lines = number
            if number < from_line or not line.strip():
                continue
            try:
                event = decode_line(line)
                payload = encoder.encode(event, record_name)
            except InvalidRecordError as exc:
                summary.rejected += 1
                err.write(f"{source_name}:{number}: rejected: {exc}\n")
                publishing = publishing and keep_going
                continue
            summary.accepted += 1
            if skip_event_ids and str(event.get("event_id", "")).lower() in skip_event_ids:
                summary.skipped += 1
                continue
            if publishing and publisher is not None:
                deliveries.track(publisher.send_encoded(event, payload), number)
                summary.bytes += len(payload)
                if deliveries.failure is not None:
                    raise ServiceUnavailableError(_kafka_failure(deliveries.failure))
    except ServiceUnavailableError as exc:
        summary.failure = str(exc)
    except KeyboardInterrupt:
        summary.failure = "interrupted"
    if publisher is not None:
        try:
            publisher.flush()
        except ServiceUnavailableError as exc:
            summary.failure = summary.failure or str(exc)
        except KeyboardInterrupt:
            summary.failure = "interrupted"
    deliveries.settle(summary)
    if summary.failure is None and deliveries.failure is not None:
        summary.failure = _kafka_failure(deliveries.failure)
    summary.seconds = time.monotonic() - started
    return summary


def _kafka_failure(exc: BaseException) -> str:
    name = type(exc).__name__
    detail = str(exc).strip() or "no answer"
    if not detail.startswith(name):
        detail = f"{name}: {detail}"
    return f"Kafka did not acknowledge an event ({detail})"


def open_source(path: str) -> tuple[str, BinaryIO, int]:
    """The display name, the byte stream and its size in bytes (0 when unknown)."""
    if path == "-":
        return "<stdin>", sys.stdin.buffer, 0
    try:
        stream = open(path, "rb")  # decoded per line: one bad line is one rejected line
    except OSError as exc:
        raise XborderError(f"cannot read {path}: {exc.strerror}") from exc
    return path, stream, os.path.getsize(path)


def with_progress(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Lines of ``stream``, with a progress bar on stderr for large files on a terminal."""
    if size < PROGRESS_MIN_BYTES:
        yield from stream
        return
    with tqdm(total=size, unit="B", unit_scale=True, desc="publishing", file=sys.stderr) as bar:
        for line in stream:
            bar.update(len(line))
            yield line


def exit_status(summary: PublishSummary, keep_going: bool) -> int:
    """0 all done, 1 rejected lines (without ``--keep-going``), 3 Kafka failed part-way,
    130 interrupted."""
    if summary.failure == "interrupted":
        return EXIT_INTERRUPTED
    if summary.failure is not None:
        return EXIT_PARTLY_PUBLISHED
    return EXIT_REJECTED if summary.rejected and not keep_going else 0
