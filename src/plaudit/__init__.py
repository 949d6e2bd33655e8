"""plaudit: a SQL-first badge and achievement engine for PostgreSQL."""

__version__ = "0.1.0"
