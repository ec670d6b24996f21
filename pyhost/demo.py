"""``make demo``: generate the imagenet pipeline's Verilog, run the shared test images through the
simulated RTL and the golden model, and show that they agree bit for bit, with cycle counts.
Later stages (serving) add themselves through :data:`STAGES`."""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np

from hdl.gen import generate
from hdl.spec import load_pipeline
from sim.toolchain import ensure_tools_on_path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testimages"
OUT = REPO / "build" / "demo"

#: Further demo stages, run in order: each module has ``run_demo(images)``.
STAGES = ("pyhost.serve_demo",)


def banner(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def compare_backends(pipeline: str, images: list[Path]) -> bool:
    from .accelerator import Accelerator
    rtl = Accelerator(pipeline, backend="rtl")
    golden = Accelerator(pipeline, backend="golden")
    pillow = Accelerator(pipeline, backend="pillow")
    print(f"{'image':<18} {'size':>10} {'rtl == golden':>14} {'cycles':>9} {'cyc/px':>7} "
          f"{'sim Mcyc/s':>10} {'max |golden-pillow|':>20}")
    ok = True
    for path in images:
        t0 = time.perf_counter()
        r = rtl.run(path)
        g = golden.run(path)
        p = pillow.run(path)
        if r.error or g.error:
            print(f"{path.name:<18} {'':>10} {'rejected':>14}   rtl: {r.error}; golden: {g.error}")
            ok &= bool(r.error) == bool(g.error)
            continue
        equal = same_bits(r.tensor, g.tensor)
        ok &= equal
        w, h = r.extra["pixels"], 1
        from PIL import Image
        with Image.open(path) as im:
            size = f"{im.width}x{im.height}"
        diff = np.abs(g.tensor.astype(np.float64) - p.tensor.astype(np.float64)).max()
        print(f"{path.name:<18} {size:>10} {'yes' if equal else 'NO':>14} {r.cycles:>9} "
              f"{r.extra['cycles_per_pixel']:>7.3f} {r.cycles / r.sim_seconds / 1e6:>10.2f} "
              f"{diff:>20.4f}")
    return ok


def dct_scaling_demo(spec, photo: Path) -> bool:
    """The same photo with and without DCT scaling: cycles, and the distance to full-decode
    Pillow in uint8 steps of the input."""
    from dataclasses import replace
    from .accelerator import Accelerator
    scaled = replace(spec, dct_scaling=True)
    full = Accelerator(spec, backend="rtl").run(photo)
    rs = Accelerator(scaled, backend="rtl").run(photo)
    gs = Accelerator(scaled, backend="golden").run(photo)
    ref = Accelerator(spec, backend="pillow").run(photo).tensor.astype(np.float64)
    if full.error or rs.error or gs.error:
        print(f"failed: {full.error or rs.error or gs.error}")
        return False
    std = np.asarray(spec.normalize.std).reshape(3, 1, 1)
    steps = np.abs(rs.tensor.astype(np.float64) - ref) * std * 255
    equal = same_bits(rs.tensor, gs.tensor)
    print(f"{photo.name}: decoded at {rs.extra['decode_scale']} "
          f"({rs.extra['decoded_pixels']} of {rs.extra['pixels']} pixels); rtl == golden: "
          f"{'yes' if equal else 'NO'}")
    print(f"clocks per file pixel: {full.extra['cycles_per_pixel']:.3f} full decode, "
          f"{rs.extra['cycles_per_pixel']:.3f} scaled "
          f"({full.extra['feed_cycles'] / rs.extra['feed_cycles']:.1f}x fewer)")
    print(f"vs full-decode pillow: mean {steps.mean():.2f}, p99 {np.percentile(steps, 99):.1f} "
          "uint8 steps (this photo is noise-heavy; smooth photos: mean ~0.3, see make bench)")
    return equal


def main() -> int:
    ensure_tools_on_path()
    spec = load_pipeline("imagenet")
    banner("1. preba gen --pipeline imagenet")
    out = generate(spec, OUT / "gen")
    man = out["manifest_data"]
    print(f"Verilog: {out['verilog']} ({out['verilog'].stat().st_size // 1024} KiB), "
          f"manifest: {out['manifest']}")
    print(f"ports: " + ", ".join(f"{n} ({p['dir']}, {p['width']} bits)"
                                 for n, p in man["ports"].items()))

    banner("2. shared test images through rtl (Verilator) and golden (numpy)")
    images = sorted(SHARED.glob("*.jpg"))
    photo = OUT / "photo_2048x1536.jpg"
    if not photo.exists():
        from PIL import Image
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:1536, 0:2048]
        img = np.stack([x % 256, (y * 3) % 256, (x + y) % 256], -1) + rng.integers(0, 30, (1536, 2048, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photo, quality=90)
    ok = compare_backends("imagenet", images + [photo])
    print("\nrtl and golden agree bit for bit on every image" if ok
          else "\nMISMATCH between rtl and golden")
    print("cyc/px: clocks per input pixel while the image streams in (the table load before "
          "each image is extra; see make bench)")

    banner("2b. DCT-domain downscaling (--dct-scaling): decode at 1/2..1/8 if the resize allows")
    ok &= dct_scaling_demo(spec, photo)

    for name in STAGES:
        ok &= bool(importlib.import_module(name).run_demo(images))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
