"""Runs the Faust worker with every flow registered, configured from settings."""

from __future__ import annotations

from datetime import timedelta

import faust
import mode.loop

from streams.app import build_app
from streams.flows import ingest
from streams.topics import declare_topics
from xborder.agencies import load_agencies
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.validation import EventRules
from xborder.wire import codec_for


def create_worker_app(settings: Settings) -> faust.App:
    """The Faust app with all flows attached (topics must exist, see ``xborder topics``)."""
    agencies = load_agencies(settings.agencies_config)
    names = Topics.from_settings(settings, agencies)
    app = build_app(settings)
    codec = codec_for(settings)
    rules = EventRules(
        region=agencies.region,
        max_future_skew=timedelta(seconds=settings.contract.max_future_skew_s),
        max_bytes=settings.contract.max_message_bytes,
    )
    ingest.register(
        app,
        declare_topics(app, names),
        codec,
        rules,
        batch_size=settings.worker.batch_size,
        within_s=settings.worker.batch_within_s,
    )
    return app


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run the worker until SIGTERM/SIGINT."""
    names = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, names)
    mode.loop.use("uvloop")
    app = create_worker_app(settings)
    worker = faust.Worker(app, loglevel=settings.worker.log_level, quiet=True)
    worker.execute_from_commandline()
