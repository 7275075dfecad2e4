"""Cross-border correlation: the pure logic behind the correlator's Faust agents.

Plain, deterministic Python with no Kafka or Faust imports, so every piece is unit-tested
without a broker and the agents stay thin (decode, call, send):

- ``model``: ``IncidentView``, the compact state of one incident the correlator keeps, and
  its JSON-able wire form for batched repartition messages;
- ``blocking``: blocking keys (subject tokens and coarse spatial cells) that route an
  incident to the partitions that can hold its candidates;
- ``index``: a windowed per-key index with bulk eviction, duplicate and update handling;
- ``scoring``: Fellegi-Sunter style evidence weights, the link threshold and the
  ``Correlation`` record;
- ``occurrence``: same-occurrence matching (two agencies' reports of one event near the
  boundary, a possible double report), the second match kind next to identity links;
- ``cases``: incremental connected components of links (cross-border cases) and their
  ``CaseEvent`` records;
- ``lifecycle``: joint verification of cases (verdicts, agreed conclusion, report,
  release, escalation timers) as a deterministic, snapshot-able state machine (not yet
  wired into the worker);
- ``patterns``: alert detectors (subject on both sides, border-zone incident, group
  forming) producing ``Alert`` records;
- ``engine``: ``Correlator`` (one partition's share of blocking keys) and ``CaseStage``
  (the single-partition case stage) tying the above together;
- ``bench``: ``python -m streams.correlation.bench``, the hot-path benchmark.
"""
