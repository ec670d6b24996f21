"""The whole core on Verilator through cocotb, scoreboarded bit for bit against the golden model,
with random backpressure on all four streams, for every preset and a set of custom specs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hdl.gen import manifest, top_name, verilog_text
from hdl.golden.pipeline import run_golden
from hdl.job import Status, build_job, pack_pixels
from hdl.spec import PipelineSpec
from sim.cocotb.runner import run_cocotb
from sim.regression import SIZES, SPECS, error_jobs, photo_like

SEED = int(os.environ.get("PREBA_SEED", "20261123"))


def element_bits(t: np.ndarray) -> np.ndarray:
    flat = t.reshape(-1)
    if flat.dtype == np.float16:
        return flat.view(np.uint16).astype(np.int64)
    if flat.dtype == np.int8:
        return flat.view(np.uint8).astype(np.int64)
    return flat.astype(np.int64)


def job_entry(spec: PipelineSpec, name: str, rgb: np.ndarray) -> dict:
    h, w = rgb.shape[:2]
    golden = run_golden(spec, rgb)
    job = build_job(spec, w, h)
    g = job.geometry
    return {"name": name, "cfg": job.words.tolist(), "pix": pack_pixels(rgb).tolist(),
            "expected": element_bits(golden).tolist(), "status": int(Status.OK),
            "stride": g.out_w * g.out_h if spec.output.layout == "CHW" else 1}


def run_jobs(tmp_path, spec: PipelineSpec, jobs: list[dict], pause: float = 0.3) -> None:
    text = verilog_text(spec)
    man = manifest(spec, f"{top_name(spec)}.v", "")
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"manifest": man, "jobs": jobs}))
    print(f"cocotb seed {SEED}")
    run_cocotb(text, top_name(spec), "sim.cocotb.tb_core", f"core-{spec.name}",
               extra_env={"PREBA_JOBS": str(path), "PREBA_SEED": str(SEED),
                          "PREBA_PAUSE": str(pause)})


@pytest.mark.parametrize("name", list(SPECS))
def test_core_bit_exact(tmp_path, name):
    spec = SPECS[name]
    rng = np.random.default_rng(SEED)
    jobs = [job_entry(spec, f"{w}x{h}", photo_like(rng, h, w)) for w, h in SIZES[name]]
    errors = [dict(e, cfg=e["cfg"].tolist(), pix=e["pix"].tolist()) for e in error_jobs(spec, rng)]
    jobs[1:1] = errors     # errors between good images: recovery is checked too
    run_jobs(tmp_path, spec, jobs)
