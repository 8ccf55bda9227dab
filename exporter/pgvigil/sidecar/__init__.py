"""The maintenance sidecar: a schedule of jobs (ANALYZE, archival, checks, weekly report)
that each take a PostgreSQL advisory lock and report their outcome as metrics."""
