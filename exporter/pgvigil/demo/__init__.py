"""`pgvigil demo` and the local infrastructure it runs on, which the tests and the benchmarks
use too: command.py (the command), data.py (the chat schema and its traffic), cluster.py
(throwaway PostgreSQL clusters), services.py (Prometheus, Alertmanager, the SMTP sink), stack.py
(those with the project's configs), ports.py (free loopback ports)."""
