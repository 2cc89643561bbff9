"""Stage 5, store: SQL tables (models), engine and migrations (db), and the queries of each concern
(``runs``, the check ``plan``, result batches in ``results``, ``inventory``, ``lease``, ``history``).
SQLite or PostgreSQL.

Imports only the vocabulary; storage rows stay here, value types cross the boundary.
"""
