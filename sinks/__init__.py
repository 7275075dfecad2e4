"""Sinks: batched, idempotent writers from Kafka topics into ClickHouse."""
