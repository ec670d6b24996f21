"""The whole core on Verilator through cocotb, scoreboarded bit for bit against the golden model,
with random backpressure on all four streams, for every preset and a set of custom specs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hdl.gen import manifest, top_name, verilog_text
from hdl.golden.pipeline import GoldenError, run_golden
from hdl.job import Status, bad_dims_job, build_job, pack_pixels
from hdl.spec import PRESETS, CropSpec, NormalizeSpec, OutputSpec, PipelineSpec, ResizeSpec
from sim.cocotb.runner import run_cocotb

SEED = int(os.environ.get("PREBA_SEED", "20261123"))


def photo_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth gradients, edges and noise: resampling errors show up on all of them."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                     ((x + y) * 7) % 256], axis=-1)
    noise = rng.integers(-40, 41, (h, w, 3))
    block = ((x // 5 + y // 3) % 2)[..., None] * 60
    return np.clip(base + noise + block, 0, 255).astype(np.uint8)


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


def error_jobs(spec: PipelineSpec, rng) -> list[dict]:
    """Bad headers and wrong-length frames; each must give its code and leave the core usable."""
    good = photo_like(rng, 9, 13)
    job = build_job(spec, 13, 9)
    pix = pack_pixels(good)
    short = pix[:50].copy()
    short[-1] |= 1 << 24
    long = np.concatenate([pix & ~np.uint32(1 << 24), pack_pixels(good[:2])])
    return [
        {"name": "zero-width", "cfg": bad_dims_job(0, 5).tolist(), "pix": pack_pixels(good[:1, :5]).tolist(),
         "status": int(Status.BAD_DIMS)},
        {"name": "too-wide", "cfg": bad_dims_job(spec.max_width + 1, 2).tolist(),
         "pix": pack_pixels(good[:2, :7]).tolist(), "status": int(Status.BAD_DIMS)},
        {"name": "short-frame", "cfg": job.words.tolist(), "pix": short.tolist(),
         "status": int(Status.SHORT_FRAME)},
        {"name": "long-frame", "cfg": job.words.tolist(), "pix": long.tolist(),
         "status": int(Status.LONG_FRAME)},
    ]


def run_jobs(tmp_path, spec: PipelineSpec, jobs: list[dict], pause: float = 0.3) -> None:
    text = verilog_text(spec)
    man = manifest(spec, f"{top_name(spec)}.v", "")
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"manifest": man, "jobs": jobs}))
    print(f"cocotb seed {SEED}")
    run_cocotb(text, top_name(spec), "sim.cocotb.tb_core", f"core-{spec.name}",
               extra_env={"PREBA_JOBS": str(path), "PREBA_SEED": str(SEED),
                          "PREBA_PAUSE": str(pause)})


SMALL = dict(max_width=640, max_height=480)

SPECS = {
    "imagenet": PRESETS["imagenet"],
    "rgb8": PRESETS["rgb8"],
    # Exact-size resize with a box crop, bfloat16 HWC, its own mean/std.
    "box_bf16": PipelineSpec(name="box_bf16", **SMALL, resize=ResizeSpec(size=(40, 30)),
                             crop=CropSpec(box=(3, 2, 33, 25)),
                             normalize=NormalizeSpec((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
                             output=OutputSpec(dtype="bfloat16", layout="HWC")),
    # Quantized int8 output, CHW.
    "int8": PipelineSpec(name="int8", **SMALL, resize=ResizeSpec(shorter_side=24),
                         crop=CropSpec(center=(20, 24)), normalize=NormalizeSpec(),
                         output=OutputSpec(dtype="int8", layout="CHW", scale=0.02,
                                           zero_point=-3)),
    # Crop without resize, raw uint8.
    "crop_u8": PipelineSpec(name="crop_u8", **SMALL, crop=CropSpec(center=(5, 4)),
                            output=OutputSpec(dtype="uint8", layout="CHW")),
}

SIZES = {
    "imagenet": [(1, 1), (1, 9), (9, 1), (37, 23), (300, 260), (520, 90)],
    "rgb8": [(1, 1), (1, 17), (17, 1), (33, 21)],
    "box_bf16": [(1, 1), (41, 31), (640, 480), (7, 300), (39, 29)],
    "int8": [(1, 1), (24, 24), (250, 23), (9, 100)],
    "crop_u8": [(5, 4), (6, 9), (31, 7)],
}


@pytest.mark.parametrize("name", list(SPECS))
def test_core_bit_exact(tmp_path, name):
    spec = SPECS[name]
    rng = np.random.default_rng(SEED)
    jobs = [job_entry(spec, f"{w}x{h}", photo_like(rng, h, w)) for w, h in SIZES[name]]
    jobs[1:1] = error_jobs(spec, rng)     # errors between good images: recovery is checked too
    run_jobs(tmp_path, spec, jobs)
