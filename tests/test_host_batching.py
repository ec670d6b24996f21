"""Batching policies, the batcher rule, the router and profiles: pure logic, no processes."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhost.batching import (BatchLimits, NoBatching, PartitionContext, PrebaPolicy, RateMeter,
                             SloPolicy, TritonPolicy, decide, expected_finish, make_policy,
                             pick_lane)
from pyhost.profile import (BatchStats, PartitionProfile, Profile, find_knee,
                            stats_from_samples, synthetic_profile)


def corner_profile(fixed_ms=40.0, per_image_ms=10.0, sizes=(1, 2, 4, 8, 16, 32)):
    """L(b) = max(fixed, per_image * b): flat, then linear; the corner is at fixed/per_image."""
    return PartitionProfile("cpu:1t", [BatchStats(b, max(fixed_ms, per_image_ms * b),
                                                  max(fixed_ms, per_image_ms * b),
                                                  max(fixed_ms, per_image_ms * b),
                                                  max(fixed_ms, per_image_ms * b),
                                                  b * 1000 / max(fixed_ms, per_image_ms * b))
                                       for b in sizes])


def ctx(profile, n=1, rate=0.0, max_bucket=32):
    return PartitionContext(profile, n, rate, max_bucket)


# --- knee ---------------------------------------------------------------------------------------
def test_knee_is_the_corner_of_flat_then_linear():
    p = corner_profile(40, 10)  # corner at b = 4
    assert p.batch_knee == 4
    assert p.time_knee_ms == 40
    assert corner_profile(80, 10).batch_knee == 8


def test_knee_of_a_straight_line_uses_per_image_rule():
    # L = 5 + 10 b: no point lies below the chord, so the knee is the first batch whose p99
    # per image is within 10% of the best (b = 32: 10.16 ms/image).
    b = [1, 2, 4, 8, 16, 32]
    lat = [5 + 10 * x for x in b]
    per = [l / x for l, x in zip(lat, b)]
    best = min(per)
    expect = next(x for x, pi in zip(b, per) if pi <= best * 1.1)
    assert find_knee(b, lat) == expect


def test_knee_flat_curve_is_largest_batch():
    assert find_knee([1, 2, 4, 8], [3.0, 3.0, 3.0, 3.0]) == 8


def test_profile_interpolation_and_padding():
    p = corner_profile(40, 10)
    assert p.latency_ms(3) == pytest.approx(40)
    assert p.latency_ms(12) == pytest.approx(120)       # between 8 (80) and 16 (160)
    assert p.latency_ms(64) == pytest.approx(320 + 10 * 32)  # extrapolated on the last slope
    padded = PartitionProfile("g", corner_profile(40, 10).batches, padded=True)
    assert padded.latency_ms(9) == pytest.approx(160)   # a CUDA graph runs its bucket (16)


def test_profile_json_roundtrip(tmp_path):
    prof = Profile("m", {"cpu:1t": corner_profile()}, "cpu", "test")
    prof.save(tmp_path / "p.json")
    back = Profile.load(tmp_path / "p.json")
    assert back["cpu:1t"].batch_knee == 4
    assert back["cpu:1t"].latency_ms(8) == pytest.approx(80)
    with pytest.raises(KeyError, match="no partition kind 'mig:1g.10gb'"):
        back["mig:1g.10gb"]


def test_stats_from_samples():
    s = stats_from_samples(4, [10.0] * 99 + [100.0])
    assert s.p50_ms == 10.0 and s.p99_ms > 10.0 and s.samples == 100
    assert s.throughput_ips == pytest.approx(4 * 1000 / s.mean_ms)


# --- policies -----------------------------------------------------------------------------------
def test_preba_policy_knee_and_time_knee_over_partitions():
    p = corner_profile(40, 10)
    assert PrebaPolicy().limits(ctx(p, n=1)) == BatchLimits(4, 0.040)
    assert PrebaPolicy().limits(ctx(p, n=4)) == BatchLimits(4, 0.010)
    assert PrebaPolicy().limits(ctx(p, n=1, max_bucket=2)).max_batch == 2


def test_triton_policy_defaults_like_triton():
    p = corner_profile()
    assert TritonPolicy().limits(ctx(p, max_bucket=32)) == BatchLimits(32, 0.0)
    assert TritonPolicy(8, 2.5).limits(ctx(p)) == BatchLimits(8, 0.0025)


def test_slo_policy_saturated_rule():
    # L(b) = 40 ms flat to 4, then 10 ms per image. SLO 200: 2 L(b) <= 200 -> L(b) <= 100 ->
    # b = 10. Saturated when rate * L(10) / 1000 >= 10, i.e. rate >= 100/s.
    pol = SloPolicy(200)
    p = corner_profile(40, 10)
    b, sat = pol.batch_size(p, 500.0, 32)
    assert (b, sat) == (10, True)
    lim = pol.limits(ctx(p, rate=500.0))
    assert lim == BatchLimits(10, (200 - 2 * 100) / 1000)


def test_slo_policy_unsaturated_rule():
    pol = SloPolicy(200)
    p = corner_profile(40, 10)
    # rate 50/s: largest b with L(b) + 1000 b / 50 <= 200 -> b=4: 40 + 80 = 120 ok;
    # b=5: 50 + 100 = 150 ok; b=6: 60 + 120 = 180 ok; b=7: 70 + 140 = 210 no -> 6.
    b, sat = pol.batch_size(p, 50.0, 32)
    assert (b, sat) == (6, False)
    assert pol.limits(ctx(p, rate=50.0)) == BatchLimits(6, (200 - 60) / 1000)
    # a fixed rate overrides the measured one
    assert SloPolicy(200, rate_rps=50.0).limits(ctx(p, rate=1e6)).max_batch == 6


def test_slo_policy_needs_slo_and_rejects_unknown():
    with pytest.raises(ValueError, match="needs an SLO"):
        make_policy("slo")
    with pytest.raises(ValueError, match="unknown batching policy 'fifo'"):
        make_policy("fifo")
    assert make_policy("none").limits(ctx(corner_profile())) == BatchLimits(1, 0.0)
    custom = NoBatching()
    assert make_policy(custom) is custom


# --- the batcher rule ---------------------------------------------------------------------------
def test_decide():
    lim = BatchLimits(4, 0.010)
    assert decide(1.0, 0, None, True, lim) == (0, None)
    assert decide(1.0, 5, 1.0, False, lim) == (0, None)          # partition busy
    assert decide(1.0, 5, 1.0, True, lim) == (4, None)           # full batch at once
    assert decide(1.0, 2, 0.995, True, lim) == (0, pytest.approx(1.005))  # wait for timeout
    assert decide(1.006, 2, 0.995, True, lim) == (2, None)       # timed out: what is there


@settings(max_examples=200, deadline=None)
@given(q=st.integers(0, 100), b=st.integers(1, 64), timeout=st.floats(0, 1),
       waited=st.floats(0, 2), idle=st.booleans())
def test_decide_never_exceeds_max_batch(q, b, timeout, waited, idle):
    n, due = decide(10.0, q, 10.0 - waited if q else None, idle, BatchLimits(b, timeout))
    assert 0 <= n <= min(q, b)
    if idle and q >= b:
        assert n == b
    if n == 0 and due is not None:
        assert due > 10.0


# --- routing ------------------------------------------------------------------------------------
@dataclass
class FakeLane:
    busy_until: float
    queue_len: int
    oldest_ready: float | None
    limits: BatchLimits
    per_batch_s: float
    alive: bool = True
    full: bool = False

    def current_limits(self, now):
        return self.limits

    def expected_latency_s(self, n):
        return self.per_batch_s * n


def test_expected_finish_counts_busy_queue_and_timeout():
    lim = BatchLimits(4, 0.5)
    idle = FakeLane(0.0, 0, None, lim, 0.1)
    assert expected_finish(10.0, idle) == pytest.approx(10.0 + 0.5 + 0.1)  # waits the timeout
    busy = FakeLane(12.0, 3, 9.0, lim, 0.1)   # 3 queued + this = a full batch of 4
    assert expected_finish(10.0, busy) == pytest.approx(12.0 + 0.4)
    deep = FakeLane(10.0, 9, 9.0, lim, 0.1)   # 10 = 2 full batches + 2
    assert expected_finish(10.0, deep) == pytest.approx(10.0 + 2 * 0.4 + 0.2)


def test_router_picks_earliest_finish():
    lim = BatchLimits(1, 0.0)
    lanes = [FakeLane(11.0, 0, None, lim, 0.1),      # busy until 11
             FakeLane(10.0, 2, 10.0, lim, 0.1),      # 3 batches of 0.1 -> 10.3
             FakeLane(10.0, 0, None, lim, 0.5)]      # slow partition, idle -> 10.5
    assert pick_lane(10.0, lanes) == 1
    lanes[1].alive = False
    assert pick_lane(10.0, lanes) == 2
    lanes[2].alive = False
    lanes[0].alive = False
    assert pick_lane(10.0, lanes) == -1


def test_router_prefers_faster_partition_until_its_queue_grows():
    lim = BatchLimits(1, 0.0)
    fast = FakeLane(0.0, 0, None, lim, 0.01)
    slow = FakeLane(0.0, 0, None, lim, 0.05)
    picks = []
    for _ in range(12):
        i = pick_lane(0.0, [fast, slow])
        picks.append(i)
        [fast, slow][i].queue_len += 1
    # finish on fast after k requests: 0.01 k; on slow: 0.05 k -> 5 to fast per 1 to slow
    assert picks.count(0) == 10 and picks.count(1) == 2


def test_rate_meter():
    m = RateMeter(1.0)
    t = 0.0
    for _ in range(2000):
        t += 0.01
        m.add(t)
    assert m.rate(t) == pytest.approx(100.0, rel=0.02)
    assert m.rate(t + 5) < 1.0


def test_synthetic_profile_is_linear():
    p = synthetic_profile("x", 2.0, 1.0)
    assert p.latency_ms(8) == pytest.approx(10.0)
    assert p.best_throughput(slo_ms=12.0) == (4, pytest.approx(4 * 1000 / 6.0))  # 2 L(4) = 12
    assert not math.isnan(p.time_knee_ms)
