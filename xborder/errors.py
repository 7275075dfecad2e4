"""The error hierarchy: one base, split by what the caller should do about it."""

from __future__ import annotations


class XborderError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(XborderError):
    """A setting or config file is wrong; fixed by the operator, never retried."""


class InvalidRecordError(XborderError):
    """A record is malformed or violates the contract; goes to the dead-letter topic."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
        """Short machine-readable reason (a dead-letter counter label)."""


class LocalKafkaError(XborderError):
    """The local Kafka broker could not be fetched, started or stopped."""


class ServiceUnavailableError(XborderError):
    """Kafka or ClickHouse is not reachable; start the stack or fix the address."""


class SinkError(XborderError):
    """A ClickHouse write failed."""


class TransientSinkError(SinkError):
    """A ClickHouse write failed for a reason that may pass (retry with backoff)."""


class TerminalSinkError(SinkError):
    """A ClickHouse write failed for a reason retrying will not fix (crash loudly)."""
