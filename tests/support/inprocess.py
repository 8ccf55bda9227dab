"""Run a pgvigil scrape in the test process against a real database."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.exporter.scrape import make_registry
from pgvigil.exporter.targets import build_scrape


def scraper(params: dict[str, Any], **config: Any) -> tuple[CollectorRegistry, Database]:
    """A private registry whose every read is one real scrape of the database."""
    cfg = config_module.validate(config, source="test")
    db = Database(params, Timeouts.from_config(cfg.connection))
    return make_registry(build_scrape(db, cfg)), db
