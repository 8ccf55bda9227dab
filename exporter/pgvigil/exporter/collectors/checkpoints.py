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

PostgreSQL 17 moved the checkpoint counters to `pg_stat_checkpointer`; both layouts are read.
A counter going down after a stats reset is what `stats_reset` explains. A view never reset
has no `stats_reset` sample. `pg_ls_waldir()` needs `pg_monitor`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
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

WAL_SQL = """
SELECT w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_buffers_full,
       extract(epoch FROM w.stats_reset) AS wal_reset,
       a.archived_count, a.failed_count, extract(epoch FROM a.stats_reset) AS archiver_reset,
       (SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$') AS segments,
       (SELECT coalesce(sum(size), 0) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$')
           AS segment_bytes,
       (SELECT extract(epoch FROM stats_reset) FROM pg_stat_database
        WHERE datname = current_database()) AS database_reset,
       current_setting('server_version_num')::int AS version_num
FROM pg_stat_wal w, pg_stat_archiver a
"""


class CheckpointsCollector(Collector):
    name = "checkpoints"
    requires = (Role("pg_monitor"),)

    def collect(self) -> Iterable[Metric]:
        (wal,) = self.query(WAL_SQL)
        sql = CHECKPOINTS_SINCE_17_SQL if wal.version_num >= 170000 else CHECKPOINTS_BEFORE_17_SQL
        (cp,) = self.query(sql)

        checkpoints = CounterMetricFamily(
            "pgvigil_checkpoints", "Checkpoints performed, by what started them.", labels=["kind"]
        )
        checkpoints.add_metric(["timed"], float(cp.timed))
        checkpoints.add_metric(["requested"], float(cp.requested))

        def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, help_text, value=float(value))

        resets = GaugeMetricFamily(
            "pgvigil_stats_reset_timestamp_seconds",
            "When a statistics view was last reset, Unix time (absent when never reset).",
            labels=["view"],
        )
        for view, at in (
            ("archiver", wal.archiver_reset),
            ("bgwriter", cp.bgwriter_reset),
            ("checkpointer", cp.checkpointer_reset),
            ("database", wal.database_reset),
            ("wal", wal.wal_reset),
        ):
            if at is not None:
                resets.add_metric([view], float(at))

        return [
            checkpoints,
            counter(
                "pgvigil_checkpoint_write_seconds",
                "Time spent writing checkpoint files.",
                cp.write_seconds,
            ),
            counter(
                "pgvigil_checkpoint_sync_seconds",
                "Time spent syncing checkpoint files to disk.",
                cp.sync_seconds,
            ),
            counter(
                "pgvigil_checkpoint_buffers_written",
                "Buffers written by checkpoints.",
                cp.checkpoint_buffers,
            ),
            counter(
                "pgvigil_bgwriter_buffers_written",
                "Buffers written by the background writer.",
                cp.bgwriter_buffers,
            ),
            counter("pgvigil_buffers_allocated", "Buffers allocated.", cp.allocated),
            counter("pgvigil_wal_records", "WAL records generated (pg_stat_wal).", wal.wal_records),
            counter(
                "pgvigil_wal_full_page_images",
                "WAL full page images generated (pg_stat_wal).",
                wal.wal_fpi,
            ),
            counter("pgvigil_wal_bytes", "WAL generated, in bytes (pg_stat_wal).", wal.wal_bytes),
            counter(
                "pgvigil_wal_buffers_full",
                "Times WAL was written because the WAL buffers were full (pg_stat_wal).",
                wal.wal_buffers_full,
            ),
            GaugeMetricFamily(
                "pgvigil_wal_segments", "WAL segment files in pg_wal.", value=float(wal.segments)
            ),
            GaugeMetricFamily(
                "pgvigil_wal_size_bytes",
                "Size of the WAL segment files in pg_wal.",
                value=float(wal.segment_bytes),
            ),
            counter(
                "pgvigil_wal_archived",
                "WAL files archived successfully (pg_stat_archiver).",
                wal.archived_count,
            ),
            counter(
                "pgvigil_wal_archive_failures",
                "Failed attempts to archive WAL files (pg_stat_archiver).",
                wal.failed_count,
            ),
            resets,
        ]
