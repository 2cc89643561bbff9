"""Persistence: tables (models), engine and migrations (db), conversions and queries (repo)."""
