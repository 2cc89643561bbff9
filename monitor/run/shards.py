"""Splitting a run into shards by host: pure, so the packing rules are testable without a database.

Hosts are bin-packed by URL count (largest first into the lightest shard), not hashed: hashing
host names left half the shards empty in the prototype. A host that gets a shard of its own
keeps its whole per-host limit. A host above ``split_threshold`` URLs becomes url-id slices
checked at the same time, each carrying a *share* of the host's limit; the shares add up to
the limit, so however the slices spread over workers the host sees at most its limit at once
(``fetch.hosts.ProcessLimits.with_share``). A host with a minimum interval between requests is
never split: spacing, unlike a count of slots, cannot be cut into shares exactly.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Hosts checked together; ``part``/``parts`` say which slice of a split host this is, and
    ``share`` how many of the host's request slots the slice may hold."""

    hosts: tuple[str, ...]
    url_count: int
    part: int | None = None
    parts: int | None = None
    share: int | None = None


def shares(limit: int, parts: int) -> list[int]:
    """``limit`` cut into ``parts`` near-equal positive shares that add up to it exactly."""
    base, extra = divmod(limit, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def apportion(count: int, weights: list[int]) -> list[int]:
    """``count`` URLs (at least one per weight) cut in proportion to ``weights``: a slice with twice
    the share gets twice the URLs, so a host's slices take about as long. Each gets at least one
    URL and the sizes add up to ``count`` exactly."""
    total, rest = sum(weights), count - len(weights)
    sizes = [1 + rest * w // total for w in weights]
    for i in range(count - sum(sizes)):
        sizes[i] += 1  # shares are non-increasing, so the larger shares take the remainder
    return sizes


def plan(
    host_counts: Mapping[str, int],
    shard_size: int,
    split_threshold: int,
    *,
    concurrency: int = 1,
    per_host: int = 1,
    limits: Mapping[str, int] | None = None,
    spaced: Collection[str] = (),
    shards_at_once: int = 1,
) -> list[ShardSpec]:
    """Shards of about ``shard_size`` URLs; hosts above ``split_threshold`` split into at most
    ``min(ceil(n / shard_size), limit)`` concurrent slices, each with a share of the limit and
    URLs in proportion to it.

    ``limits``: per-host limits where they differ from ``per_host``; ``spaced``: hosts with a
    minimum interval, never split. A host is cut into no more slices than it needs for each to
    hold about the slots a shard gets on a busy worker (``concurrency / shards_at_once``): a
    host whose whole limit fits in those slots gains nothing from a split, and slices of one
    slot each would fill the workers' shard places while their global slots sit idle.

    Longest expected time first, so the shard that paces the run starts at once instead of
    last: a shard takes at least its URLs over ``concurrency`` and its biggest host's over that
    host's limit; a slice, its URLs over its share.
    """
    limit_of = {h: (limits or {}).get(h, per_host) for h in host_counts}
    out: list[ShardSpec] = []
    small: dict[str, int] = {}
    for host, count in sorted(host_counts.items()):
        if count <= 0:
            continue
        limit = limit_of[host]
        parts = min(math.ceil(count / shard_size), limit, math.ceil(limit * shards_at_once / concurrency))
        if count > split_threshold and parts > 1 and host not in spaced:
            cut = shares(limit, parts)
            for part, (size, share) in enumerate(zip(apportion(count, cut), cut, strict=True)):
                out.append(ShardSpec((host,), size, part=part, parts=parts, share=share))
        else:
            small[host] = count
    if small:
        bins = max(1, math.ceil(sum(small.values()) / shard_size))
        for group in pack(small, bins):
            out.append(ShardSpec(tuple(group), sum(small[h] for h in group)))

    def expected(spec: ShardSpec) -> float:
        if spec.share is not None:
            return max(spec.url_count / concurrency, spec.url_count / spec.share)
        return max(spec.url_count / concurrency, max(host_counts[h] / limit_of[h] for h in spec.hosts))

    return sorted(out, key=lambda spec: -expected(spec))  # stable: a host's slices keep their order


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
