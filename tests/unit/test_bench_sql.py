"""The SQL benchmark's pure parts: the doc's queries, rows as columns, medians. No broker."""

from __future__ import annotations

import math

from sinks.rows import INCIDENT_COLUMNS
from xborder.bench.sql import (
    DOC,
    FIELDS_ONLY_DEFAULTED,
    Sample,
    doc_queries,
    format_t1,
    medians,
    to_columns,
)

TEXT = """# Guide

Links by evidence kind, with
their mean weight:

```sql
SELECT evidence_kind, count()
FROM correlation_evidence
GROUP BY evidence_kind
```

```sql
SELECT 1
```
"""


def test_every_sql_block_is_found_with_the_paragraph_before_it_as_label() -> None:
    queries = doc_queries(TEXT)
    assert queries == [
        (
            "Links by evidence kind, with their mean weight:",
            "SELECT evidence_kind, count()\nFROM correlation_evidence\nGROUP BY evidence_kind",
        ),
        ("Links by evidence kind, with their mean weight:", "SELECT 1"),
    ]


def test_the_analyst_guide_has_at_least_twelve_labelled_queries() -> None:
    queries = doc_queries(DOC.read_text())
    assert len(queries) >= 12
    assert all(label and len(label) <= 48 and sql.startswith("SELECT") for label, sql in queries)


def test_rows_become_columns_with_milliseconds_and_without_defaulted_columns() -> None:
    row = [
        "5a3c0a0e-8b0b-4c84-9d56-2f1f0b7e0f01", "cantho", "CT-1", "IncidentReported",
        1767225600.123, 1767225601.5, 10.0, 105.7, "10219", "Ward", None, None, "THEFT",
        "LOW", ["PERSON"], ["SUSPECT"], ["t" * 64], [], None, "cms",
        "incidents.cantho", 1, 42,
    ]  # fmt: skip
    names, types, columns = to_columns([row, row], INCIDENT_COLUMNS, FIELDS_ONLY_DEFAULTED)
    assert "placement" not in names and len(names) == len(INCIDENT_COLUMNS) - 1
    assert columns[names.index("occurred_at")] == [1767225600123, 1767225600123]
    assert columns[names.index("reported_at")] == [1767225601500, 1767225601500]
    assert types[names.index("agency")] == "LowCardinality(String)"
    assert columns[names.index("source_offset")] == [42, 42]


def test_nullable_and_array_timestamps_become_milliseconds() -> None:
    columns = (("at", "Nullable(DateTime64(3, 'UTC'))"), ("ats", "Array(DateTime64(3, 'UTC'))"))
    _, _, values = to_columns([[None, [1.5, 2.0]], [3.25, []]], columns, frozenset())
    assert values == [[None, 3250], [[1500, 2000], []]]


def test_medians_per_variant_and_ratios_to_the_bare_insert() -> None:
    samples = [
        Sample("sink", 1000, 1.0, 0.2),
        Sample("bare insert", 1000, 0.5, 0.1),
        Sample("sink", 1000, 2.0, 0.4),
        Sample("bare insert", 1000, 1.0, 0.1),
        Sample("sink", 1000, 4.0, 0.3),
        Sample("bare insert", 1000, 0.25, 0.3),
    ]
    best = medians(samples)
    assert list(best) == ["sink", "bare insert"]
    assert math.isclose(best["sink"].rows_per_s, 500.0)
    assert math.isclose(best["sink"].cpu_per_1000, 0.3)
    assert math.isclose(best["bare insert"].rows_per_s, 2000.0)
    assert math.isclose(best["bare insert"].cpu_per_1000, 0.1)
    assert "rate 0.25x bare, CPU/row 3.00x bare" in format_t1(samples)
