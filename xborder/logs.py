"""Logging set-up shared by every command: one format, topic[partition]@offset in messages."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    """Log to stderr with timestamps; quiet the chatty client libraries."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "urllib3"):  # their retries log warnings we handle
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
