"""`pgvigil demo`: the demo data, the embedded database and the local Prometheus/Alertmanager
stack (also used by the tests and the benchmarks)."""
