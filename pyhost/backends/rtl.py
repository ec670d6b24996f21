"""The ``rtl`` backend: the generated Verilog on Verilator through the fast C++ harness.

Cycle-accurate, so every image also reports its cycle count. Built once per pipeline (the build
is cached on disk by a hash of the Verilog and options, see :mod:`sim.harness.build`).
"""
from __future__ import annotations

import time

import numpy as np

from hdl.gen import manifest, top_name, verilog_text
from hdl.job import JobError, Status, assemble_tensor, build_job, pack_jpeg, pack_pixels
from hdl.spec import PipelineSpec
from sim.harness import Harness
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
        self.harness = Harness(text, manifest(spec, f"{top_name(spec)}.v", ""))

    def run_rgb(self, rgb: np.ndarray, name: str) -> Result:
        return self.run_stream([rgb], [name])[0]

    def run(self, data: bytes, name: str) -> Result:
        check_hardware_jpeg(data, name, self.spec)
        if self.spec.jpeg_decoder and data[:2] == b"\xff\xd8":
            return self.run_stream([data], [name])[0]     # JPEG bytes into the hardware decoder
        return self.run_rgb(decode_rgb(data, name), name)

    def _job(self, item, name):
        """(job, cfg words, pix beats, jpg beats, input pixels) for an image array or JPEG."""
        if isinstance(item, np.ndarray):
            h, w = item.shape[:2]
            job = build_job(self.spec, w, h)
            return job, pack_pixels(item), np.zeros(0, np.uint32), w * h
        from hdl.jpeg import read_header
        w, h = read_header(item, max_width=self.spec.max_width,
                           max_height=self.spec.max_height)[:2]
        job = build_job(self.spec, w, h, jpeg=True)
        return job, np.zeros(0, np.uint32), pack_jpeg(item), w * h

    def run_stream(self, items: list, names: list[str]) -> list[Result]:
        """Several images (HxWx3 arrays, or JPEG bytes for the hardware decoder) back to back in
        one simulation, as a host streams them: each job's tables load while the previous image
        runs. ``cycles`` per image is the time from the previous image's status to its own, so
        in a stream it includes no table load."""
        jobs, pix, jpg, pixels = [], [], [], []
        for item, name in zip(items, names):
            try:
                job, p, j, n = self._job(item, name)
            except (ValueError, JobError) as e:
                raise PreprocessError(name, str(e), int(Status.BAD_DIMS)) from None
            jobs.append(job)
            pix.append(p)
            jpg.append(j)
            pixels.append(n)
        inputs = {"cfg": np.concatenate([j.words for j in jobs]), "pix": np.concatenate(pix)}
        if self.spec.jpeg_decoder:
            inputs["jpg"] = np.concatenate(jpg)
        t0 = time.perf_counter()
        res = self.harness.run(inputs, until=("status", len(jobs)),
                               backpressure=self.backpressure, seed=self.seed,
                               trace=self.trace, trace_window=self.trace_window)
        wall = time.perf_counter() - t0
        if not res.complete:
            raise PreprocessError(names[0], f"simulation did not finish ({res.summary()})")
        status_cycles = res.beat_cycles["status"].astype(np.int64)
        out_cycles = res.beat_cycles["out"].astype(np.int64)
        offsets, data = res.field("out", "offset"), res.elements("out")
        codes, feed = res.field("status", "code"), res.field("status", "feed_cycles")
        results, start, prev = [], 0, -1
        for k, (job, name) in enumerate(zip(jobs, names)):
            stop = int(np.searchsorted(out_cycles, status_cycles[k], side="right"))
            code = int(codes[k])
            if code != Status.OK:
                raise PreprocessError(name, f"hardware status {code}: {status_message(code)}",
                                      code)
            tensor = assemble_tensor(self.spec, job, offsets[start:stop], data[start:stop])
            cycles = int(status_cycles[k] - prev)
            start, prev = stop, int(status_cycles[k])
            extra = {"pixels": pixels[k], "cfg_words": int(len(job.words)),
                     "hw_input": "jpeg" if len(jpg[k]) else "pixels",
                     "decode_scale": f"1/{job.geometry.denom}",
                     "decoded_pixels": job.geometry.in_w * job.geometry.in_h,
                     "feed_cycles": int(feed[k]),
                     "cycles_per_pixel": int(feed[k]) / pixels[k],
                     "cycles_per_pixel_with_tables": cycles / pixels[k],
                     "cycles_per_second": res.cycles / res.sim_seconds if res.sim_seconds else None,
                     "wall_seconds": wall}
            results.append(Result(name, tensor, cycles=cycles,
                                  sim_seconds=float(res.sim_seconds), extra=extra))
        return results


def status_message(code: int) -> str:
    """The core's status codes (0-15) and the JPEG decoder's (16 and up)."""
    if code < 16:
        return f"{Status(code).name}: {Status(code).message}"
    from hdl.jpeg import STATUS_MESSAGES, JpegStatus
    return f"{JpegStatus(code).name}: {STATUS_MESSAGES[JpegStatus(code)]}"
