"""Finding the record batch a consumer cannot decode in a fetch's raw record set."""

from __future__ import annotations

import struct

import aiokafka.codec
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from xborder.undecodable import scan

NONE, ZSTD = 0, 4


def _batch(codec: int, base_offset: int, count: int) -> bytes:
    """A v2 record batch of ``count`` records as a producer builds it, at ``base_offset``
    as the broker assigns it (the base offset is outside the CRC)."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
    for i in range(count):
        builder.append(i, 1_700_000_000_000, b"k", b"value %d " % i * 20, [])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base_offset)
    return bytes(raw)


def _log() -> bytes:
    """Offsets 0-1 uncompressed, 2-4 in one zstd batch, 5 uncompressed."""
    return _batch(NONE, 0, 2) + _batch(ZSTD, 2, 3) + _batch(NONE, 5, 1)


def test_a_log_that_decodes_has_no_bad_batch() -> None:
    assert scan(_log(), 0, "t[0]") == (6, None)
    assert scan(_log(), 4, "t[0]") == (2, None)  # a fetch from inside a batch


def test_the_batch_the_codec_is_missing_for_is_found_with_the_records_before_it() -> None:
    raw = _log()
    saved = aiokafka.codec.has_zstd
    aiokafka.codec.has_zstd = lambda: False  # as on a consumer without the zstd library
    try:
        found, found_inside = scan(raw, 0, "t[0]"), scan(raw, 3, "t[0]")
    finally:
        aiokafka.codec.has_zstd = saved
    good, bad = found
    assert good == 2
    assert bad is not None
    assert (bad.first, bad.end) == (2, 5)
    assert bad.error.startswith("t[0]: record batch 2..4 (zstd) cannot be decoded")
    assert "UnsupportedCodecError" in bad.error
    # fetched from inside the batch: only the offsets from the fetch position are skipped
    good, bad = found_inside
    assert good == 0
    assert bad is not None
    assert (bad.first, bad.end) == (3, 5)


def test_a_batch_with_a_bad_crc_is_found() -> None:
    middle = bytearray(_batch(NONE, 2, 3))
    middle[-5] ^= 0xFF  # a byte of the last record's value
    raw = _batch(NONE, 0, 2) + bytes(middle) + _batch(NONE, 5, 1)
    good, bad = scan(raw, 0, "t[0]")
    assert good == 2
    assert bad is not None
    assert (bad.first, bad.end) == (2, 5)
    assert "CRC" in bad.error


def test_a_truncated_last_batch_is_left_for_the_next_fetch() -> None:
    raw = _batch(NONE, 0, 2) + _batch(NONE, 2, 3)[:-10]
    assert scan(raw, 0, "t[0]") == (2, None)
