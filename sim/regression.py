"""The RTL regression: pipeline specs, image sizes and error cases shared by the cocotb
scoreboard (tests/test_rtl_core.py) and ``make coverage`` (:func:`coverage_jobs`)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from hdl.job import Status, bad_dims_job, build_job, pack_pixels
from hdl.spec import PRESETS, CropSpec, NormalizeSpec, OutputSpec, PipelineSpec, ResizeSpec

SMALL = dict(max_width=640, max_height=480, jpeg_decoder=False)

SPECS = {
    "imagenet": PRESETS["imagenet"],
    "rgb8": PipelineSpec(name="rgb8_raw", output=OutputSpec(dtype="uint8", layout="HWC"),
                         jpeg_decoder=False),
    "efficientnet_lite": replace(PRESETS["efficientnet_lite"], name="efficientnet_lite_raw",
                                 jpeg_decoder=False),
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

#: The presets run here with the pixel input (``jpeg_decoder=False``), which keeps the cocotb
#: builds small; the JPEG decoder in front of them is checked through the harness
#: (tests/test_rtl_backend.py, tests/test_jpeg_rtl.py).

#: (width, height): 1x1, one row, one column, odd sizes, large-ratio downscales, upscales.
SIZES = {
    "imagenet": [(1, 1), (1, 9), (9, 1), (37, 23), (300, 260), (520, 90)],
    "rgb8": [(1, 1), (1, 17), (17, 1), (33, 21)],
    "efficientnet_lite": [(1, 1), (227, 149), (90, 400)],
    "box_bf16": [(1, 1), (41, 31), (640, 480), (7, 300), (39, 29)],
    "int8": [(1, 1), (24, 24), (250, 23), (9, 100)],
    "crop_u8": [(5, 4), (6, 9), (31, 7)],
}


def photo_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth gradients, edges and noise: resampling errors show up on all of them."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                     ((x + y) * 7) % 256], axis=-1)
    noise = rng.integers(-40, 41, (h, w, 3))
    block = ((x // 5 + y // 3) % 2)[..., None] * 60
    return np.clip(base + noise + block, 0, 255).astype(np.uint8)


def error_jobs(spec: PipelineSpec, rng) -> list[dict]:
    """Bad headers and wrong-length frames: each must give its code and leave the core usable.
    Each: {"name", "cfg", "pix", "status"}."""
    good = photo_like(rng, 9, 13)
    job = build_job(spec, 13, 9)
    pix = pack_pixels(good)
    short = pix[:50].copy()
    short[-1] |= 1 << 24
    long = np.concatenate([pix & ~np.uint32(1 << 24), pack_pixels(good[:2])])
    return [
        {"name": "zero-width", "cfg": bad_dims_job(0, 5), "pix": pack_pixels(good[:1, :5]),
         "status": int(Status.BAD_DIMS)},
        {"name": "too-wide", "cfg": bad_dims_job(spec.max_width + 1, 2),
         "pix": pack_pixels(good[:2, :7]), "status": int(Status.BAD_DIMS)},
        {"name": "short-frame", "cfg": job.words, "pix": short, "status": int(Status.SHORT_FRAME)},
        {"name": "long-frame", "cfg": job.words, "pix": long, "status": int(Status.LONG_FRAME)},
    ]


def coverage_jobs(seed: int = 1):
    """(verilog, manifest, runs) per spec for ``make coverage``: every size and error case,
    one run with and one without backpressure."""
    from hdl.gen import manifest, top_name, verilog_text
    out = []
    for name, spec in SPECS.items():
        rng = np.random.default_rng(seed)
        jobs = [(e["cfg"], e["pix"]) for e in error_jobs(spec, rng)]
        for w, h in SIZES[name]:
            jobs.append((build_job(spec, w, h).words, pack_pixels(photo_like(rng, h, w))))
        runs = [{"jobs": jobs}, {"jobs": jobs, "backpressure": 0.3, "seed": seed}]
        out.append((verilog_text(spec), manifest(spec, f"{top_name(spec)}.v", ""), runs))
    return out
