"""pgvigil: keeps an application's PostgreSQL database healthy."""

__version__ = "0.1.0"
