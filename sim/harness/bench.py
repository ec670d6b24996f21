"""Harness speed benchmark, for ``make bench``."""
from __future__ import annotations

import time

from .harness import Harness


def bench_cycles_per_second(harness: Harness | None = None, inputs: dict | None = None,
                            until: tuple | None = None, *, pixels: int = 2_000_000,
                            backpressure: float = 0.0, seed: int = 1, element_width: int = 16,
                            **run_kw) -> dict:
    """Build (or reuse) a model and time one run.

    Without ``harness``/``inputs`` this uses the self-test design (:mod:`sim.harness.selftest`,
    one pixel per cycle) with ``pixels`` pixels in 64 jobs. Returns a dict with ``cycles``,
    ``sim_seconds``, ``cycles_per_second``, ``build_seconds`` (0 when cached) and ``beats``.
    """
    if harness is None:
        from . import selftest
        harness = Harness(selftest.verilog(element_width), selftest.manifest(element_width))
        if inputs is None:
            jobs = 64
            cfg, pix, _ = selftest.make_jobs(jobs, max(1, pixels // jobs), seed=seed)
            inputs, until = {"cfg": cfg, "pix": pix}, ("status", jobs)
    if inputs is None:
        raise ValueError("pass inputs= with a harness")
    t0 = time.perf_counter()
    harness.build()
    build_seconds = time.perf_counter() - t0
    res = harness.run(inputs, until=until, backpressure=backpressure, seed=seed, **run_kw)
    return {"design": harness.design.top, "backpressure": backpressure, "cycles": res.cycles,
            "sim_seconds": res.sim_seconds, "cycles_per_second": res.cycles_per_second,
            "build_seconds": build_seconds, "stop_reason": res.stop_reason,
            "beats": {p: len(v) for p, v in res.beat_cycles.items()}}

