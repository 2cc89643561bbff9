"""Splitting a run into shards by host: pure, so the packing rules are testable without a database.

Every URL of a host lands in exactly one shard, so per-host politeness holds however many
machines check a run. Hosts are bin-packed by URL count (largest first into the lightest
shard), not hashed: hashing host names left half the shards empty in the prototype. A host
above ``split_threshold`` URLs becomes consecutive url-id slices that share one lock, so
its slices run one after another and the host still sees one shard's requests at a time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Hosts checked together; ``part``/``parts`` say which slice of a split giant host this is."""

    hosts: tuple[str, ...]
    url_count: int
    lock: str | None = None
    part: int | None = None
    parts: int | None = None


def plan(
    host_counts: Mapping[str, int],
    shard_size: int,
    split_threshold: int,
    *,
    concurrency: int = 1,
    per_host: int = 1,
) -> list[ShardSpec]:
    """Shards of about ``shard_size`` URLs; giant hosts split into ``ceil(n / shard_size)`` locked slices.

    Longest expected time first, so that the shard (or chain of slices) that paces the run
    starts at once instead of last: a shard takes at least its URLs over ``concurrency`` and
    its biggest host's over ``per_host`` request times; a chain of slices, its whole host's.
    """
    shards: list[ShardSpec] = []
    small: dict[str, int] = {}
    for host, count in sorted(host_counts.items()):
        if count <= 0:
            continue
        if count > split_threshold:
            parts = math.ceil(count / shard_size)
            base, extra = divmod(count, parts)
            for part in range(parts):
                size = base + (1 if part < extra else 0)
                shards.append(ShardSpec((host,), size, lock=f"host:{host}", part=part, parts=parts))
        else:
            small[host] = count
    if small:
        bins = max(1, math.ceil(sum(small.values()) / shard_size))
        for group in pack(small, bins):
            shards.append(ShardSpec(tuple(group), sum(small[h] for h in group)))

    def expected(spec: ShardSpec) -> float:
        if spec.lock is not None:
            return host_counts[spec.hosts[0]] / per_host
        return max(spec.url_count / concurrency, max(host_counts[h] for h in spec.hosts) / per_host)

    return sorted(shards, key=lambda spec: -expected(spec))  # stable: a chain's slices keep their order


def pack(counts: Mapping[str, int], bins: int) -> list[list[str]]:
    """Hosts in at most ``bins`` sorted groups of similar URL counts: largest host first into the
    lightest group (hashing host names left half the groups empty in the prototype)."""
    heap: list[tuple[int, int]] = [(0, b) for b in range(max(1, bins))]
    members: list[list[str]] = [[] for _ in heap]
    for host, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        load, b = heapq.heappop(heap)
        members[b].append(host)
        heapq.heappush(heap, (load + count, b))
    return [sorted(group) for group in members if group]
