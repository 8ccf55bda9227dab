"""Managed PostgreSQL services: which one this is, and which figures it cannot give.

A managed service is recognised from its catalog (the roles and functions it installs), never
from a host name: `rds_superuser` (Amazon RDS; Aurora adds `aurora_version()`),
`cloudsqlsuperuser` (Google Cloud SQL), `azure_pg_admin`, `azure_superuser` or the
`azure.extensions` parameter (Azure Database for PostgreSQL). None of them hands out a real
superuser, nor lets the exporter see the data directory's filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

DETECT_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser') AS rds,
       EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'aurora_version') AS aurora,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqlsuperuser') AS cloudsql,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('azure_superuser', 'azure_pg_admin'))
         OR current_setting('azure.extensions', true) IS NOT NULL AS azure
"""

# Where the disk alerts get their figure when pgvigil_filesystem_* cannot exist.
DISK_DOC = "docs/managed-databases.md#disk-figures"


@dataclass(frozen=True)
class Missing:
    """A figure the service cannot give, and what to use instead."""

    figure: str
    instead: str


@dataclass(frozen=True)
class Service:
    name: str
    admin_role: str  # who runs the GRANTs and CREATE EXTENSIONs in place of a superuser
    parameters: str  # where shared_preload_libraries and other server parameters are set
    missing: tuple[Missing, ...]


def _disk(metric: str) -> Missing:
    return Missing(
        "disk: pgvigil_filesystem_size_bytes / _avail_bytes (the data directory's filesystem "
        "is not visible from the exporter), so PgvigilDiskUsageHigh and the disk part of the "
        "health score stay silent",
        f"{metric}, recorded as pgvigil:filesystem_used:ratio by the rule in {DISK_DOC}",
    )


SERVICES = {
    "rds": Service(
        "Amazon RDS for PostgreSQL",
        "rds_superuser",
        "the DB parameter group",
        (_disk("CloudWatch FreeStorageSpace against the allocated storage"),),
    ),
    "aurora": Service(
        "Amazon Aurora PostgreSQL",
        "rds_superuser",
        "the DB cluster parameter group",
        (
            Missing(
                "disk: pgvigil_filesystem_* (Aurora's cluster volume grows by itself; only "
                "temporary files use local storage)",
                "CloudWatch FreeLocalStorage, recorded as pgvigil:filesystem_used:ratio by the "
                f"rule in {DISK_DOC}",
            ),
            Missing(
                "WAL files: pgvigil_wal_segments / pgvigil_wal_size_bytes (Aurora does not "
                "support pg_ls_waldir(); its log lives in the cluster volume), so doctor "
                "reports the checkpoints collector's skipped families there",
                "pgvigil_wal_bytes_total (pg_stat_wal) for the WAL generated",
            ),
            Missing(
                "replication: Aurora replicas share the storage and do not stream WAL, so "
                "they are not in pg_stat_replication (pgvigil_replication_lag_*)",
                "CloudWatch AuroraReplicaLag, or aurora_replica_status() as a custom query",
            ),
        ),
    ),
    "cloudsql": Service(
        "Google Cloud SQL for PostgreSQL",
        "cloudsqlsuperuser",
        "the instance's database flags",
        (_disk("Cloud Monitoring database/disk/bytes_used against database/disk/quota"),),
    ),
    "azure": Service(
        "Azure Database for PostgreSQL",
        "azure_pg_admin",
        "the server parameters (and azure.extensions to allow an extension)",
        (_disk("Azure Monitor storage_used against storage_limit"),),
    ),
}


def detect(conn: psycopg.Connection[Any]) -> Service | None:
    row = conn.execute(DETECT_SQL).fetchone()
    assert row is not None
    rds, aurora, cloudsql, azure = row
    if aurora:
        return SERVICES["aurora"]
    if rds:
        return SERVICES["rds"]
    if cloudsql:
        return SERVICES["cloudsql"]
    if azure:
        return SERVICES["azure"]
    return None
