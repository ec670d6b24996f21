"""The ``rtl`` backend: the generated Verilog on Verilator through the fast C++ harness.

Cycle-accurate, so every image also reports its cycle count. Built once per pipeline (the build
is cached on disk by a hash of the Verilog and options, see :mod:`sim.harness.build`).
"""
from __future__ import annotations

import time

import numpy as np

from hdl.gen import manifest, top_name, verilog_text
from hdl.job import JobError, Status, assemble_tensor, build_job
from hdl.spec import PipelineSpec
from sim.harness import CoreHarness
from sim.toolchain import ensure_tools_on_path
from ..accelerator import PreprocessError, Result, check_hardware_jpeg, decode_rgb


def parse_window(text: str | tuple | None) -> tuple[int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        start, end = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--trace-window {text!r}: expected START:END cycles, e.g. 0:5000") from None
    if not 0 <= start < end:
        raise ValueError(f"--trace-window {text!r}: need 0 <= START < END")
    return start, end


class RtlBackend:
    """``backpressure``: probability per cycle that the harness stalls each input and output
    (seeded by ``seed``); results stay bit-identical and the cycle count grows.
    ``trace``/``trace_window``: waveform of the simulated cycles START..END."""

    def __init__(self, spec: PipelineSpec, backpressure: float = 0.0, seed: int = 1,
                 trace: str | None = None, trace_window=None):
        ensure_tools_on_path()
        self.spec = spec
        self.backpressure = backpressure
        self.seed = seed
        self.trace = trace
        self.trace_window = parse_window(trace_window)
        text = verilog_text(spec)
        self.harness = CoreHarness(text, manifest(spec, f"{top_name(spec)}.v", ""))

    def run_rgb(self, rgb: np.ndarray, name: str) -> Result:
        return self.run_stream([rgb], [name])[0]

    def run_stream(self, images: list[np.ndarray], names: list[str]) -> list[Result]:
        """Several images back to back in one simulation, as a host streams them: each job's
        tables load while the previous image runs. ``cycles`` per image is the time from the
        previous image's status to its own, so in a stream it includes no table load."""
        jobs = []
        for rgb, name in zip(images, names):
            h, w = rgb.shape[:2]
            try:
                jobs.append(build_job(self.spec, w, h))
            except (ValueError, JobError) as e:
                raise PreprocessError(name, str(e), int(Status.BAD_DIMS)) from None
        t0 = time.perf_counter()
        res = self.harness.run_jobs([(j.words, rgb) for j, rgb in zip(jobs, images)],
                                    backpressure=self.backpressure, seed=self.seed,
                                    trace=self.trace, trace_window=self.trace_window)
        wall = time.perf_counter() - t0
        if not res.complete:
            raise PreprocessError(names[0], f"simulation did not finish ({res.summary()})")
        feed = res.run.field("status", "feed_cycles")
        results = []
        for k, (job, rgb, name, out) in enumerate(zip(jobs, images, names, res.jobs)):
            if out.code != Status.OK:
                raise PreprocessError(name, f"hardware status {Status(out.code).name}: "
                                            f"{Status(out.code).message}", out.code)
            tensor = assemble_tensor(self.spec, job, out.offset, out.data)
            pixels = rgb.shape[0] * rgb.shape[1]
            extra = {"pixels": pixels, "cfg_words": int(len(job.words)),
                     "feed_cycles": int(feed[k]),
                     "cycles_per_pixel": int(feed[k]) / pixels,
                     "cycles_per_pixel_with_tables": out.cycles / pixels,
                     "cycles_per_second": res.cycles / res.sim_seconds if res.sim_seconds else None,
                     "wall_seconds": wall}
            results.append(Result(name, tensor, cycles=int(out.cycles),
                                  sim_seconds=float(res.sim_seconds), extra=extra))
        return results

    def run(self, data: bytes, name: str) -> Result:
        check_hardware_jpeg(data, name, self.spec)
        return self.run_rgb(decode_rgb(data, name), name)
