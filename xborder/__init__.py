"""xborder: cross-border incident exchange and correlation (the shared core package).

Holds what ``streams`` and ``sinks`` share: settings, errors, the Avro codec, topics,
the ClickHouse client factory, the local Kafka runner and the CLI. It imports nothing
from ``streams`` or ``sinks`` at module level.
"""

__version__ = "0.1.0"
