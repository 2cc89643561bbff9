"""Wiring of the soft-404 probes into a run: stored baselines in, this run's probes out.

``open_probes`` gives the fetcher a ``fetch.soft404.SoftProbes`` seeded with the baselines
younger than their host's ``baseline_ttl_hours`` (those hosts get no probe), or None when no
host may be probed (the fetcher then pays nothing per URL); ``save_probes`` stores what the run
probed. Both run in a thread: they touch the database.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import Engine

from monitor.clock import utcnow
from monitor.fetch.soft404 import SoftProbes, probe_wanted
from monitor.policy import Soft404Settings
from monitor.store.baselines import load_baselines, save_baselines

__all__ = ["open_probes", "save_probes"]


async def open_probes(rules: Soft404Settings, engine: Engine) -> SoftProbes | None:
    if not probe_wanted(rules):
        return None
    probes = SoftProbes(rules)
    ttls = [rules.baseline_ttl_hours, *(t.baseline_ttl_hours for t in rules.hosts.values())]
    longest = max(ttls)
    if longest <= 0:
        return probes
    now = utcnow()
    stored = await asyncio.to_thread(load_baselines, engine, now - timedelta(hours=longest))
    probes.seed(
        base for base, at in stored if now - at <= timedelta(hours=probes.rules(base.host).baseline_ttl_hours)
    )
    return probes


async def save_probes(probes: SoftProbes | None, engine: Engine) -> None:
    if probes is None or not probes.fresh:
        return
    fresh, probes.fresh = probes.fresh, []
    await asyncio.to_thread(save_baselines, engine, fresh, utcnow())
