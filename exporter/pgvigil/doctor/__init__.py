"""`pgvigil doctor`: above the exporter and the sidecar, whose declarations it reads."""
