"""Size and free space of the filesystem that holds the data directory.

    # HELP pgvigil_filesystem_size_bytes Size of the filesystem holding the data directory.
    # TYPE pgvigil_filesystem_size_bytes gauge
    pgvigil_filesystem_size_bytes{path="/var/lib/postgresql/15/main"} 2.7e+11
    # HELP pgvigil_filesystem_avail_bytes Bytes available to unprivileged users there.
    # TYPE pgvigil_filesystem_avail_bytes gauge
    pgvigil_filesystem_avail_bytes{path="/var/lib/postgresql/15/main"} 8.6e+10

The exporter can only measure a filesystem it can see: `connection.data_directory` in the
config, else the server's own `data_directory` when that path exists here (exporter beside the
database). Otherwise nothing is exported and the log says so once; node_exporter's
`node_filesystem_*` on the database host is then the source (README, "Disk figures").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import CATALOG_TTL_SECONDS, Collector, TTLCache
from pgvigil.requirements import Role

log = logging.getLogger(__name__)

# Needs superuser or pg_read_all_settings (part of pg_monitor).
DATA_DIRECTORY_SQL = "SELECT current_setting('data_directory', true) AS path"


class DiskCollector(Collector):
    name = "disk"
    server_wide = True
    requires = (Role("pg_monitor"),)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._warned = False
        # data_directory changes only with a restart: not asked every scrape.
        self._setting = TTLCache[list[Any]](CATALOG_TTL_SECONDS)

    def _path(self) -> Path | None:
        configured = self.config.connection.data_directory
        if configured is not None:
            return configured
        (row,) = self._setting.get(lambda: self.query(DATA_DIRECTORY_SQL))
        if row.path and Path(row.path).exists():
            return Path(row.path)
        if not self._warned:
            log.warning(
                "the data directory (%s) is not visible from here: no disk metrics; set "
                "connection.data_directory or use node_exporter on the database host",
                row.path or "unknown, the role cannot read data_directory",
            )
            self._warned = True
        return None

    def collect(self) -> Iterable[Metric]:
        path = self._path()
        if path is None:
            return []
        st = os.statvfs(path)
        labels = [str(path)]
        size = GaugeMetricFamily(
            "pgvigil_filesystem_size_bytes",
            "Size of the filesystem holding the data directory.",
            labels=["path"],
        )
        size.add_metric(labels, float(st.f_blocks * st.f_frsize))
        avail = GaugeMetricFamily(
            "pgvigil_filesystem_avail_bytes",
            "Bytes of that filesystem available to unprivileged users.",
            labels=["path"],
        )
        avail.add_metric(labels, float(st.f_bavail * st.f_frsize))
        return [size, avail]
