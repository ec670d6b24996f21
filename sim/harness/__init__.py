"""Fast cycle-accurate simulation: a Verilated top with a C++ stream driver, called by ctypes.

    from sim.harness import Harness
    h = Harness(verilog_text_or_path, manifest)          # or Harness.from_manifest("manifest.json")
    res = h.run({"cfg": cfg_words, "pix": pix_words}, until=("status", n_jobs),
                backpressure=0.0, seed=1, max_cycles=None, trace=None, trace_window=None)
    res.outputs["out"]; res.beat_cycles["status"]; res.cycles; res.sim_seconds; res.timed_out
    res.field("out", "offset"); res.elements("out"); res.job_cycles("status")

See docs in :mod:`sim.harness.harness` (run semantics), :mod:`sim.harness.build` (the cache)
and :mod:`sim.harness.core` (``CoreHarness.run_jobs`` for the cfg/pix -> out/status contract).
"""
from .bench import bench_cycles_per_second
from .build import BuildError, BuildOptions, Design, Port, Variant, fst_available, parse_manifest
from .core import CoreHarness, JobOutput, JobsResult
from . import fields
from .harness import Harness, RunResult

__all__ = ["Harness", "RunResult", "CoreHarness", "JobOutput", "JobsResult",
           "bench_cycles_per_second", "BuildError", "BuildOptions", "Design", "Port", "Variant",
           "fst_available", "parse_manifest", "fields"]
