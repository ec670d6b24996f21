"""Convenience layer for the preprocessing core's port contract (docs/architecture.md):
inputs ``cfg`` (32-bit job words) and ``pix`` ({r, g, b, last}), outputs ``out``
({offset, data: elements x E, last}) and ``status`` ({code, ...}, one beat per job)."""
from __future__ import annotations

import dataclasses

import numpy as np

from .harness import Harness, RunResult


@dataclasses.dataclass
class JobOutput:
    """One job's share of a batched run. ``out``: its ``out`` beats (raw words);
    ``offset``/``data``/``last``: their fields; ``status``: the raw status word, ``code`` its
    code field; ``cycles``: cycles since the previous job's status beat (the first job: since
    reset); ``end_cycle``: cycle of its status beat."""
    index: int
    out: np.ndarray
    offset: np.ndarray
    data: np.ndarray
    last: np.ndarray
    status: int
    code: int
    cycles: int
    end_cycle: int


@dataclasses.dataclass
class JobsResult:
    run: RunResult
    jobs: list

    def __getattr__(self, name):          # cycles, sim_seconds, timed_out, ... of the run
        return getattr(self.run, name)


class CoreHarness(Harness):
    """:class:`Harness` with :meth:`run_jobs` for the cfg/pix -> out/status contract."""

    def __init__(self, verilog, manifest, *, cfg="cfg", pix="pix", out="out", status="status",
                 **kw):
        super().__init__(verilog, manifest, **kw)
        self.names = dict(cfg=cfg, pix=pix, out=out, status=status)

    def pixel_words(self, rgb: np.ndarray) -> np.ndarray:
        """(n, 3) uint8 RGB pixels in raster order -> ``pix`` beats with ``last`` on the final one."""
        rgb = np.asarray(rgb).reshape(-1, 3)
        last = np.zeros(len(rgb), np.uint8)
        if len(rgb):
            last[-1] = 1
        return self.pack(self.names["pix"], r=rgb[:, 0], g=rgb[:, 1], b=rgb[:, 2], last=last)

    def run_jobs(self, jobs, **run_kw) -> JobsResult:
        """Run several jobs in one simulation: ``jobs`` is a list of (cfg words, pix beats);
        pix beats may also be an (h, w, 3) / (n, 3) uint8 image (then ``last`` is set here).

        All cfg words go into the cfg stream and all pixels into the pix stream, in job order;
        the run stops after one status beat per job. ``out`` beats are assigned to jobs by the
        cycle of each job's status beat (the core sends a job's status after its last output).
        Other keyword arguments go to :meth:`Harness.run`.
        """
        n = self.names
        cfgs, pixs = [], []
        for cfg, pix in jobs:
            cfgs.append(np.asarray(cfg, np.uint32).reshape(-1))
            pix = np.asarray(pix)
            if pix.dtype == np.uint8 and pix.shape[-1:] == (3,):
                pix = self.pixel_words(pix)
            pixs.append(pix)
        cfg_all = np.concatenate(cfgs) if cfgs else np.zeros(0, np.uint32)
        pix_all = np.concatenate(pixs) if pixs else np.zeros(0, np.uint32)
        run_kw.setdefault("until", (n["status"], len(jobs)))
        res = self.run({n["cfg"]: cfg_all, n["pix"]: pix_all}, **run_kw)
        status_cyc = res.beat_cycles[n["status"]].astype(np.int64)
        out_cyc = res.beat_cycles[n["out"]].astype(np.int64)
        out_words = res.outputs[n["out"]]
        fields = res.fields(n["out"])
        data = res.elements(n["out"]) if self.ports[n["out"]].elements else None
        codes = res.field(n["status"], "code") if len(status_cyc) else np.zeros(0, np.uint8)
        per_job, prev, start = [], -1, 0
        for j, sc in enumerate(status_cyc):
            stop = int(np.searchsorted(out_cyc, sc, side="right"))
            sl = slice(start, stop)
            per_job.append(JobOutput(
                j, out_words[sl], fields.get("offset", np.zeros(0))[sl],
                data[sl] if data is not None else None, fields.get("last", np.zeros(0))[sl],
                int(np.asarray(res.outputs[n["status"]])[j].reshape(-1)[0]), int(codes[j]),
                int(sc - prev), int(sc)))
            prev, start = int(sc), stop
        return JobsResult(res, per_job)
