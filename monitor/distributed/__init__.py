"""Distributed checking: one run split into host shards, checked by ``monitor worker`` processes
on several machines through a Procrastinate queue in the shared PostgreSQL database.

``executor`` is the Procrastinate executor (and ``executor_for``, the choice between it and the
local one), ``ledger`` owns the shard tables, ``queue`` wires Procrastinate, ``runs`` starts and
finalizes a run, ``worker`` runs shards and reaps stalled ones. Builds on ``monitor.run``.
"""
