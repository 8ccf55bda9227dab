"""The pgvigil benchmark harness: builds databases, runs pgvigil beside Debian's
prometheus-postgres-exporter and records what each costs. `bench/run.py` is the entry point."""
