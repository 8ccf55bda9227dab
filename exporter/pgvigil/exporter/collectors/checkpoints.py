"""Checkpoints, WAL and when the server's statistics were last reset.

    # HELP pgvigil_checkpoints_total Checkpoints performed, by what started them.
    # TYPE pgvigil_checkpoints_total counter
    pgvigil_checkpoints_total{kind="timed"} 410.0
    pgvigil_checkpoints_total{kind="requested"} 3.0
    # HELP pgvigil_checkpoint_write_seconds_total Time spent writing checkpoint files.
    pgvigil_checkpoint_write_seconds_total 81.2
    # HELP pgvigil_checkpoint_sync_seconds_total Time spent syncing checkpoint files to disk.
    pgvigil_checkpoint_sync_seconds_total 0.9
    # HELP pgvigil_checkpoint_buffers_written_total Buffers written by checkpoints.
    pgvigil_checkpoint_buffers_written_total 51200.0
    # HELP pgvigil_bgwriter_buffers_written_total Buffers written by the background writer.
    pgvigil_bgwriter_buffers_written_total 1400.0
    # HELP pgvigil_buffers_allocated_total Buffers allocated.
    pgvigil_buffers_allocated_total 98000.0
    # HELP pgvigil_wal_records_total WAL records generated (pg_stat_wal).
    pgvigil_wal_records_total 1.9e+06
    # HELP pgvigil_wal_full_page_images_total WAL full page images generated (pg_stat_wal).
    pgvigil_wal_full_page_images_total 10200.0
    # HELP pgvigil_wal_bytes_total WAL generated, in bytes (pg_stat_wal).
    pgvigil_wal_bytes_total 4.1e+08
    # HELP pgvigil_wal_buffers_full_total Times WAL was written because the WAL buffers ...
    pgvigil_wal_buffers_full_total 0.0
    # HELP pgvigil_wal_segments WAL segment files in pg_wal.
    pgvigil_wal_segments 6.0
    # HELP pgvigil_wal_size_bytes Size of the WAL segment files in pg_wal.
    pgvigil_wal_size_bytes 1.0e+08
    # HELP pgvigil_wal_archived_total WAL files archived successfully (pg_stat_archiver).
    pgvigil_wal_archived_total 0.0
    # HELP pgvigil_wal_archive_failures_total Failed attempts to archive WAL files.
    pgvigil_wal_archive_failures_total 0.0
    # HELP pgvigil_stats_reset_timestamp_seconds When a statistics view was last reset ...
    # TYPE pgvigil_stats_reset_timestamp_seconds gauge
    pgvigil_stats_reset_timestamp_seconds{view="bgwriter"} 1.7645e+09
    pgvigil_stats_reset_timestamp_seconds{view="database"} 1.7645e+09
    pgvigil_stats_reset_timestamp_seconds{view="wal"} 1.7645e+09

PostgreSQL 17 moved the checkpoint counters to `pg_stat_checkpointer`; both layouts are read
(which one, the catalog says). A counter going down after a stats reset is what `stats_reset`
explains. A view never reset has no `stats_reset` sample. `pg_ls_waldir()` needs `pg_monitor`;
where it is refused (or pg_stat_wal is missing, as on PostgreSQL 13) only the families it feeds
are dropped, with one log line naming them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector, one_row_of_each
from pgvigil.requirements import Role

CHECKPOINTS_BEFORE_17_SQL = """
SELECT checkpoints_timed AS timed, checkpoints_req AS requested,
       checkpoint_write_time / 1000.0 AS write_seconds,
       checkpoint_sync_time / 1000.0 AS sync_seconds,
       buffers_checkpoint AS checkpoint_buffers, buffers_clean AS bgwriter_buffers,
       buffers_alloc AS allocated,
       extract(epoch FROM stats_reset) AS bgwriter_reset, NULL::float8 AS checkpointer_reset
FROM pg_stat_bgwriter
"""

CHECKPOINTS_SINCE_17_SQL = """
SELECT c.num_timed AS timed, c.num_requested AS requested,
       c.write_time / 1000.0 AS write_seconds, c.sync_time / 1000.0 AS sync_seconds,
       c.buffers_written AS checkpoint_buffers, b.buffers_clean AS bgwriter_buffers,
       b.buffers_alloc AS allocated,
       extract(epoch FROM b.stats_reset) AS bgwriter_reset,
       extract(epoch FROM c.stats_reset) AS checkpointer_reset
FROM pg_stat_checkpointer c, pg_stat_bgwriter b
"""

WAL_STATS_SQL = """
SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full,
       extract(epoch FROM stats_reset) AS wal_reset
FROM pg_stat_wal
"""

WAL_FILES_SQL = """
SELECT count(*) AS segments, coalesce(sum(size), 0) AS segment_bytes
FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'
"""

ARCHIVER_SQL = """
SELECT a.archived_count, a.failed_count, extract(epoch FROM a.stats_reset) AS archiver_reset,
       (SELECT extract(epoch FROM stats_reset) FROM pg_stat_database
        WHERE datname = current_database()) AS database_reset
FROM pg_stat_archiver a
"""

# Each optional query with the families it feeds (what a failure's log line names).
OPTIONAL = {
    WAL_STATS_SQL: "pgvigil_wal_*_total (pg_stat_wal)",
    WAL_FILES_SQL: "pgvigil_wal_segments, pgvigil_wal_size_bytes",
    ARCHIVER_SQL: "pgvigil_wal_archived_total, archive failures",
}


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=float(value))


class CheckpointsCollector(Collector):
    """The checkpoint counters are required; WAL statistics (pg_stat_wal, PostgreSQL 14+),
    the WAL files (pg_ls_waldir, which managed services may forbid) and the archiver each
    stand alone: one that fails drops only its own families."""

    name = "checkpoints"
    server_wide = True
    requires = (Role("pg_monitor"),)

    def collect(self) -> Iterable[Metric]:
        # Feature detection by catalog: PostgreSQL 17 moved the counters to their own view;
        # PostgreSQL 13 has no pg_stat_wal.
        since_17 = self.has_relation("pg_catalog.pg_stat_checkpointer")
        has_wal = self.has_relation("pg_catalog.pg_stat_wal")
        checkpoints_sql = CHECKPOINTS_SINCE_17_SQL if since_17 else CHECKPOINTS_BEFORE_17_SQL
        optional = (*([WAL_STATS_SQL] if has_wal else []), WAL_FILES_SQL, ARCHIVER_SQL)
        # Usually all four answer: one round trip. When one fails they run one by one, each
        # optional part on its own.
        rows = self.together(
            [OPTIONAL[sql] for sql in optional], one_row_of_each(checkpoints_sql, *optional)
        )
        if rows is not None:
            (row,) = rows
            cp, wal, files, archiver = row, row if has_wal else None, row, row
        else:
            (cp,) = self.query(checkpoints_sql)
            wal = self._one(WAL_STATS_SQL) if has_wal else None
            files = self._one(WAL_FILES_SQL)
            archiver = self._one(ARCHIVER_SQL)
        checkpoints = CounterMetricFamily(
            "pgvigil_checkpoints", "Checkpoints performed, by what started them.", labels=["kind"]
        )
        checkpoints.add_metric(["timed"], float(cp.timed))
        checkpoints.add_metric(["requested"], float(cp.requested))
        families: list[Metric] = [
            checkpoints,
            _counter(
                "pgvigil_checkpoint_write_seconds",
                "Time spent writing checkpoint files.",
                cp.write_seconds,
            ),
            _counter(
                "pgvigil_checkpoint_sync_seconds",
                "Time spent syncing checkpoint files to disk.",
                cp.sync_seconds,
            ),
            _counter(
                "pgvigil_checkpoint_buffers_written",
                "Buffers written by checkpoints.",
                cp.checkpoint_buffers,
            ),
            _counter(
                "pgvigil_bgwriter_buffers_written",
                "Buffers written by the background writer.",
                cp.bgwriter_buffers,
            ),
            _counter("pgvigil_buffers_allocated", "Buffers allocated.", cp.allocated),
        ]
        resets = {"bgwriter": cp.bgwriter_reset, "checkpointer": cp.checkpointer_reset}

        if wal is not None:
            families += _wal_families(wal)
            resets["wal"] = wal.wal_reset
        if files is not None:
            families += [
                GaugeMetricFamily(
                    "pgvigil_wal_segments",
                    "WAL segment files in pg_wal.",
                    value=float(files.segments),
                ),
                GaugeMetricFamily(
                    "pgvigil_wal_size_bytes",
                    "Size of the WAL segment files in pg_wal.",
                    value=float(files.segment_bytes),
                ),
            ]
        if archiver is not None:
            a = archiver
            families += [
                _counter(
                    "pgvigil_wal_archived",
                    "WAL files archived successfully (pg_stat_archiver).",
                    a.archived_count,
                ),
                _counter(
                    "pgvigil_wal_archive_failures",
                    "Failed attempts to archive WAL files (pg_stat_archiver).",
                    a.failed_count,
                ),
            ]
            resets.update(archiver=a.archiver_reset, database=a.database_reset)

        reset_family = GaugeMetricFamily(
            "pgvigil_stats_reset_timestamp_seconds",
            "When a statistics view was last reset, Unix time (absent when never reset).",
            labels=["view"],
        )
        for view, at in sorted(resets.items()):
            if at is not None:
                reset_family.add_metric([view], float(at))
        return [*families, reset_family]

    def _one(self, sql: str) -> Any | None:
        rows = self.optional(OPTIONAL[sql], sql)
        return rows[0] if rows else None


def _wal_families(w: Any) -> list[Metric]:
    return [
        _counter("pgvigil_wal_records", "WAL records generated (pg_stat_wal).", w.wal_records),
        _counter(
            "pgvigil_wal_full_page_images",
            "WAL full page images generated (pg_stat_wal).",
            w.wal_fpi,
        ),
        _counter("pgvigil_wal_bytes", "WAL generated, in bytes (pg_stat_wal).", w.wal_bytes),
        _counter(
            "pgvigil_wal_buffers_full",
            "Times WAL was written because the WAL buffers were full (pg_stat_wal).",
            w.wal_buffers_full,
        ),
    ]
