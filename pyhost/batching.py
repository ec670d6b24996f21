"""Dynamic batching policies and the router, as plain objects.

A policy answers one question per partition: *how large may a batch be, and how long may the
oldest waiting request wait for it to fill* (:class:`BatchLimits`). The batcher applies the same
rule for every policy (:func:`decide`): when the partition is idle, dispatch a full batch at once,
or whatever is queued once the oldest request has waited ``timeout_s``.

=========== ===================================================================================
``preba``   max batch = the partition's Batch_knee; timeout = its Time_knee / number of
            partitions (PREBA: the knee is where more batching stops buying throughput, and
            with P partitions a request arrives for this one about every P-th interval)
``triton``  a fixed max batch size and max queue delay (Triton's dynamic batcher; the delay
            defaults to 0 as in Triton: run whatever is queued as soon as the instance is free)
``slo``     gpu-let: the largest b with 2 L(b) <= SLO when the partition is saturated (a request
            may wait for one whole batch, then run in the next), else the largest b with
            L(b) + b / rate <= SLO (the time to collect b requests at the arrival rate, then run
            them); the timeout is the slack left, SLO - 2 L(b) or SLO - L(b)
``none``    one request at a time
=========== ===================================================================================

L(b) is the profile's p99 latency for a batch of b (:class:`~pyhost.profile.PartitionProfile`).

The router sends each request to the partition with the earliest *expected finish*
(:func:`expected_finish`): when that partition frees up, plus the batches queued ahead, plus the
batching wait, plus the latency of the batch this request will be in (p50, the typical case).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

from .profile import PartitionProfile

__all__ = ["BatchLimits", "BatchingPolicy", "PrebaPolicy", "TritonPolicy", "SloPolicy",
           "NoBatching", "make_policy", "POLICIES", "decide", "LaneLoad", "expected_finish",
           "pick_lane", "RateMeter"]


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int
    timeout_s: float

    def __post_init__(self):
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.timeout_s < 0 or math.isnan(self.timeout_s):
            raise ValueError(f"timeout must be >= 0, got {self.timeout_s}")


@dataclass(frozen=True)
class PartitionContext:
    """What a policy may look at: the partition's profile, how many partitions share the load,
    the arrival rate routed to this partition (requests/s, measured), and the largest batch the
    worker can run (its biggest bucket)."""
    profile: PartitionProfile
    n_partitions: int
    rate_rps: float
    max_bucket: int


class BatchingPolicy(Protocol):
    name: str

    def limits(self, ctx: PartitionContext) -> BatchLimits: ...

    def describe(self) -> dict: ...


class PrebaPolicy:
    """max batch = Batch_knee; timeout = Time_knee / number of partitions."""
    name = "preba"

    def limits(self, ctx: PartitionContext) -> BatchLimits:
        p = ctx.profile
        return BatchLimits(max(1, min(p.batch_knee, ctx.max_bucket)),
                           p.time_knee_ms / 1000.0 / max(1, ctx.n_partitions))

    def describe(self) -> dict:
        return {"policy": self.name}


class TritonPolicy:
    """Triton's dynamic batcher: ``max_batch`` (default: the largest bucket) and
    ``max_queue_delay_ms`` (default 0)."""
    name = "triton"

    def __init__(self, max_batch: int | None = None, max_queue_delay_ms: float = 0.0):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"triton max batch must be >= 1, got {max_batch}")
        if max_queue_delay_ms < 0:
            raise ValueError(f"triton max queue delay must be >= 0, got {max_queue_delay_ms}")
        self.max_batch = max_batch
        self.max_queue_delay_ms = max_queue_delay_ms

    def limits(self, ctx: PartitionContext) -> BatchLimits:
        b = ctx.max_bucket if self.max_batch is None else min(self.max_batch, ctx.max_bucket)
        return BatchLimits(b, self.max_queue_delay_ms / 1000.0)

    def describe(self) -> dict:
        return {"policy": self.name, "max_batch": self.max_batch,
                "max_queue_delay_ms": self.max_queue_delay_ms}


class SloPolicy:
    """gpu-let's SLO-aware batch size (see module doc). ``rate_rps`` fixes the arrival rate per
    partition; by default the measured rate routed to the partition is used."""
    name = "slo"

    def __init__(self, slo_ms: float, rate_rps: float | None = None):
        if not slo_ms or slo_ms <= 0:
            raise ValueError("the slo policy needs an SLO: slo_ms > 0 (--slo-ms)")
        self.slo_ms = float(slo_ms)
        self.rate_rps = rate_rps

    def batch_size(self, profile: PartitionProfile, rate_rps: float, max_bucket: int
                   ) -> tuple[int, bool]:
        """(b, saturated) by gpu-let's rule; b = 1 when even one request misses the SLO."""
        slo = self.slo_ms
        lat = profile.latency_table_ms(max_bucket)
        sizes = range(1, max_bucket + 1)
        b_sat = max([b for b in sizes if 2 * lat[b] <= slo], default=1)
        # Saturated: requests arrive at least as fast as batches of b_sat drain them.
        if rate_rps > 0 and rate_rps * lat[b_sat] / 1000.0 >= b_sat:
            return b_sat, True
        if rate_rps <= 0:
            return 1, False
        fits = [b for b in sizes if lat[b] + 1000.0 * b / rate_rps <= slo]
        return max(fits, default=1), False

    def limits(self, ctx: PartitionContext) -> BatchLimits:
        rate = self.rate_rps if self.rate_rps is not None else ctx.rate_rps
        b, saturated = self.batch_size(ctx.profile, rate, ctx.max_bucket)
        lat = ctx.profile.latency_ms(b)
        slack_ms = self.slo_ms - (2 * lat if saturated else lat)
        return BatchLimits(b, max(0.0, slack_ms) / 1000.0)

    def describe(self) -> dict:
        return {"policy": self.name, "slo_ms": self.slo_ms, "rate_rps": self.rate_rps}


class NoBatching:
    name = "none"

    def limits(self, ctx: PartitionContext) -> BatchLimits:
        return BatchLimits(1, 0.0)

    def describe(self) -> dict:
        return {"policy": self.name}


POLICIES = ("preba", "triton", "slo", "none")


def make_policy(name: str | BatchingPolicy, *, slo_ms: float | None = None,
                triton_max_batch: int | None = None, triton_delay_ms: float = 0.0,
                rate_rps: float | None = None) -> BatchingPolicy:
    """A policy by name (an object with ``limits`` passes through unchanged)."""
    if not isinstance(name, str):
        if not hasattr(name, "limits"):
            raise TypeError(f"batching={name!r}: give a policy name or an object with limits()")
        return name
    if name == "preba":
        return PrebaPolicy()
    if name == "triton":
        return TritonPolicy(triton_max_batch, triton_delay_ms)
    if name == "slo":
        if slo_ms is None:
            raise ValueError("batching='slo' needs an SLO (slo_ms=..., --slo-ms)")
        return SloPolicy(slo_ms, rate_rps)
    if name == "none":
        return NoBatching()
    raise ValueError(f"unknown batching policy {name!r}; choose one of {', '.join(POLICIES)}")


def decide(now: float, queue_len: int, oldest_ready: float | None, idle: bool,
           limits: BatchLimits) -> tuple[int, float | None]:
    """The batcher's rule, shared by every policy.

    Returns ``(n, None)`` to dispatch n requests now, ``(0, t)`` to look again at time t (the
    oldest request's timeout), or ``(0, None)`` to wait for the partition or for a request.
    """
    if queue_len == 0 or not idle:
        return 0, None
    if queue_len >= limits.max_batch:
        return limits.max_batch, None
    due = oldest_ready + limits.timeout_s
    if now >= due:
        return queue_len, None
    return 0, due


class LaneLoad(Protocol):
    """What the router reads of a partition (the server's lanes implement it)."""
    busy_until: float      # when the batches already dispatched are expected to finish
    queue_len: int
    oldest_ready: float | None
    alive: bool

    def current_limits(self, now: float) -> BatchLimits: ...

    def expected_latency_s(self, n: int) -> float: ...


def expected_finish(now: float, lane: LaneLoad) -> float:
    """When a request sent to ``lane`` now would be answered (see module doc)."""
    lim = lane.current_limits(now)
    n = lane.queue_len + 1
    b = lim.max_batch
    t = max(now, lane.busy_until)
    full, rest = divmod(n, b)
    if full == 0:
        # This request's batch will not fill: it starts when the oldest request times out.
        oldest = lane.oldest_ready if lane.oldest_ready is not None else now
        return max(t, oldest + lim.timeout_s) + lane.expected_latency_s(rest)
    t += full * lane.expected_latency_s(b)
    if rest:
        t += lane.expected_latency_s(rest)
    return t


def pick_lane(now: float, lanes: Sequence[LaneLoad]) -> int:
    """Index of the live lane with the earliest expected finish (the first on ties); -1 if none
    is alive."""
    best, best_t = -1, math.inf
    for i, lane in enumerate(lanes):
        if not lane.alive:
            continue
        t = expected_finish(now, lane)
        if t < best_t:
            best, best_t = i, t
    return best


class RateMeter:
    """Arrival rate (events/s), an exponentially decaying count with time constant ``tau_s``."""

    def __init__(self, tau_s: float = 1.0):
        self.tau = tau_s
        self._rate = 0.0
        self._t: float | None = None

    def add(self, now: float) -> None:
        if self._t is not None:
            self._rate *= math.exp(-(now - self._t) / self.tau)
        self._rate += 1.0 / self.tau
        self._t = now

    def rate(self, now: float) -> float:
        if self._t is None:
            return 0.0
        return self._rate * math.exp(-(now - self._t) / self.tau)
