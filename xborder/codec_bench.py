"""Codec benchmark: the library's encode/decode against bare fastavro on the same records.

Run ``xborder bench codec [--records N]``; it prints records/s for each and the ratios, in one run,
on one core (this process), so the figures are comparable.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro

from xborder.codec import AvroCodec
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings


@dataclass(frozen=True)
class CodecFigures:
    """Records per second of each path, and the library/bare ratios."""

    records: int
    bare_encode: float
    library_encode: float
    bare_decode: float
    library_decode: float

    @property
    def encode_ratio(self) -> float:
        return self.library_encode / self.bare_encode

    @property
    def decode_ratio(self) -> float:
        return self.library_decode / self.bare_decode


def _rate(count: int, run: Callable[[], None], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def sample_bodies(codec: AvroCodec, records: int) -> tuple[Any, list[dict[str, Any]], list[bytes]]:
    """The parsed IncidentReported schema, ``records`` sample values and their Avro bodies."""
    schema = codec.store.current("IncidentReported").parsed
    values: list[dict[str, Any]] = [
        codec.from_json("IncidentReported", e) for e in sample_events(records)
    ]
    bodies: list[bytes] = []
    for value in values:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, value)
        bodies.append(out.getvalue())
    return schema, values, bodies


def bare_decode_rate(schema: Any, bodies: Sequence[bytes], repeats: int = 5) -> float:
    """Best-of-``repeats`` bodies/s of fastavro's ``schemaless_reader`` alone."""

    def bare_decode() -> None:
        for body in bodies:
            fastavro.schemaless_reader(io.BytesIO(body), schema, None)

    return _rate(len(bodies), bare_decode, repeats)


def measure(codec: AvroCodec, records: int = 50_000, repeats: int = 5) -> CodecFigures:
    """Best-of-``repeats`` rates for ``records`` IncidentReported events."""
    schema, values, bodies = sample_bodies(codec, records)
    framed = [codec.encode("IncidentReported", v) for v in values]

    def bare_encode() -> None:
        for value in values:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema, value)
            out.getvalue()

    def library_encode() -> None:
        for value in values:
            codec.encode("IncidentReported", value)

    def library_decode() -> None:
        for message in framed:
            codec.decode(message)

    return CodecFigures(
        records=records,
        bare_encode=_rate(records, bare_encode, repeats),
        library_encode=_rate(records, library_encode, repeats),
        bare_decode=bare_decode_rate(schema, bodies, repeats),
        library_decode=_rate(records, library_decode, repeats),
    )


def report(figures: CodecFigures) -> str:
    """Plain-text table of the figures."""
    return "\n".join(
        [
            f"codec benchmark, {figures.records} IncidentReported records, best of runs, one core",
            f"  encode  bare fastavro {figures.bare_encode:>10,.0f}/s   library "
            f"{figures.library_encode:>10,.0f}/s   ratio {figures.encode_ratio:.2f}x",
            f"  decode  bare fastavro {figures.bare_decode:>10,.0f}/s   library "
            f"{figures.library_decode:>10,.0f}/s   ratio {figures.decode_ratio:.2f}x",
        ]
    )


def main(settings: Settings, argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``xborder bench codec [--records N] [--repeats N]``."""
    parser = argparse.ArgumentParser(prog="xborder bench codec", description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    print(report(measure(codec, records=args.records, repeats=args.repeats)))
