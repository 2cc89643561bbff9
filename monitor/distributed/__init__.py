"""Distributed checking: one run split into host shards, checked by ``monitor worker`` processes
on several machines through a Procrastinate queue in the shared PostgreSQL database.

``shards`` plans (pure), ``ledger`` owns the shard tables, ``queue`` wires Procrastinate,
``runs`` starts and finalizes a run, ``worker`` runs shards and reaps stalled ones.
"""
