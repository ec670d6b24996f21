"""``make bench``: the project's benchmarks. Each writes ``build/bench/<name>.json`` and prints a
table. Speeds are compared as ratios measured in the same run (these machines are shared)."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from sim.toolchain import ensure_tools_on_path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "bench"

SIZES = [(64, 64), (227, 149), (640, 480), (1024, 768), (1920, 1080), (2048, 1536),
         (4096, 3072)]


def photo_like(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x % 256, (y * 3) % 256, (x + y) % 256], -1) + rng.integers(0, 30, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "host": platform.node(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
    """cols: (key, header, format)."""
    print("  ".join(f"{h:>{max(len(h), 10)}}" for _, h, _ in cols))
    for r in rows:
        cells = []
        for key, h, fmt in cols:
            v = r.get(key)
            cells.append(f"{(format(v, fmt) if v is not None else '-'):>{max(len(h), 10)}}")
        print("  ".join(cells))


def bench_pixel_pipeline(pipeline: str = "imagenet") -> dict:
    """Cycles per input pixel of the RTL (Verilator harness), and the harness's own speed."""
    from .backends.rtl import RtlBackend
    from hdl.golden.pipeline import run_golden
    from hdl.spec import load_pipeline
    spec = load_pipeline(pipeline)
    rtl = RtlBackend(spec)
    rows = []
    for w, h in SIZES:
        rgb = photo_like(w, h)
        r = rtl.run_rgb(rgb, f"{w}x{h}")
        exact = r.tensor.tobytes() == run_golden(spec, rgb).tobytes()
        rows.append({"size": f"{w}x{h}", "pixels": w * h, "cycles": r.cycles,
                     "feed_cycles": r.extra["feed_cycles"],
                     "cycles_per_pixel": r.extra["cycles_per_pixel"],
                     "cycles_per_pixel_with_tables": r.extra["cycles_per_pixel_with_tables"],
                     "sim_seconds": r.sim_seconds,
                     "sim_cycles_per_second": r.cycles / r.sim_seconds,
                     "bit_exact_vs_golden": exact})
    # A stream of four images: the next image's tables load while one runs.
    stream = []
    for w, h in SIZES:
        if w * h > 2048 * 1536:
            continue
        imgs = [photo_like(w, h, s) for s in range(4)]
        rs = rtl.run_stream(imgs, [f"{w}x{h}#{s}" for s in range(4)])
        steady = rs[1:]       # the first image still waits for its own tables
        stream.append({"size": f"{w}x{h}", "images": 4,
                       "cycles_per_image": float(np.mean([r.cycles for r in steady])),
                       "cycles_per_pixel_stream": float(np.mean([r.cycles for r in steady])) / (w * h),
                       "cycles_per_output_pixel": float(np.mean([r.cycles for r in steady]))
                       / (rs[1].tensor.size // 3),
                       "bit_exact_vs_golden": all(r.tensor.tobytes() == run_golden(spec, im).tobytes()
                                                  for r, im in zip(rs, imgs))})
    stalled = RtlBackend(spec, backpressure=0.3, seed=3).run_rgb(photo_like(640, 480), "bp")
    free = next(r for r in rows if r["size"] == "640x480")
    bp = {"backpressure": 0.3, "cycles": stalled.cycles, "cycles_free": free["cycles"],
          "cycle_ratio": stalled.cycles / free["cycles"],
          "bit_exact_vs_free": stalled.tensor.tobytes() == rtl.run_rgb(photo_like(640, 480), "f").tensor.tobytes()}
    total_cycles = sum(r["cycles"] for r in rows)
    total_secs = sum(r["sim_seconds"] for r in rows)
    return {"pipeline": pipeline, "sizes": rows, "stream": stream, "backpressure": bp,
            "sim_cycles_per_second_overall": total_cycles / total_secs}


def bench_jpeg_decoder(pipeline: str = "imagenet", w: int = 1024, h: int = 768) -> dict:
    """Clocks per pixel with JPEG bytes into the hardware decoder, per subsampling and quality:
    a lone image (feed cycles: from the job's start until its last pixel entered the resize,
    so the decoder's start-up is included) and a stream (status to status)."""
    import io
    from PIL import Image
    from .backends.rtl import RtlBackend
    from hdl.golden.pipeline import run_golden
    from hdl.jpeg import decode
    from hdl.spec import load_pipeline
    spec = load_pipeline(pipeline)
    rtl = RtlBackend(spec)
    rows = []
    img = photo_like(w, h, 7)
    for sub_name, sub in (("4:2:0", 2), ("4:2:2", 1), ("4:4:4", 0)):
        for q in (75, 95):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=sub)
            data = buf.getvalue()
            # a stream of four: the decoder starts each file while the previous image's last
            # MCU row still comes out, so from the second image on only the output rate counts
            rs = rtl.run_stream([data] * 4, [f"{sub_name} q{q} #{i}" for i in range(4)])
            r = rs[0]
            ref = run_golden(spec, decode(data)).tobytes()
            exact = all(x.tensor.tobytes() == ref for x in rs)
            rows.append({"mode": sub_name, "quality": q, "size": f"{w}x{h}",
                         "bytes": len(data), "feed_cycles": r.extra["feed_cycles"],
                         "cycles_per_pixel": r.extra["cycles_per_pixel"],
                         "cycles_per_pixel_stream": sum(x.cycles for x in rs[1:]) / (3 * w * h),
                         "bit_exact_vs_golden": exact})
    return {"pipeline": pipeline, "rows": rows}


def bench_dct_scaling(pipeline: str = "imagenet") -> dict:
    """DCT-domain downscaling: clocks per file pixel with and without it (same JPEG, same core,
    one simulation each), bit-exactness against the golden model, and the tensor's distance from
    the full-decode ``pillow`` backend, in uint8 steps of the input (|diff| * std * 255)."""
    import io
    from dataclasses import replace
    from PIL import Image
    from .accelerator import Accelerator
    from .backends.rtl import RtlBackend
    from hdl.golden.pipeline import run_golden_jpeg
    from hdl.spec import load_pipeline
    full = load_pipeline(pipeline)
    scaled = replace(full, dct_scaling=True)
    rtl_full, rtl_scaled = RtlBackend(full), RtlBackend(scaled)
    pillow = Accelerator(full, backend="pillow")
    std = np.asarray(full.normalize.std).reshape(3, 1, 1) if full.normalize else 1.0
    rows = []
    cases = [("noisy", (1024, 768), 75), ("noisy", (1024, 768), 90), ("noisy", (1920, 1080), 75),
             ("noisy", (1920, 1080), 90), ("noisy", (4032, 3024), 85)]
    smooth_src = REPO.parent / "shared" / "testimages" / "testorig.jpg"
    if smooth_src.is_file():      # a real photo, enlarged: smooth content like a camera's
        cases += [("smooth", (1816, 1192), 85), ("smooth", (3632, 2384), 85)]
    for content, (w, h), q in cases:
        if content == "noisy":
            img = Image.fromarray(photo_like(w, h, 5))
        else:
            img = Image.open(smooth_src).convert("RGB").resize((w, h), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q, subsampling=2)
        data = buf.getvalue()
        a = rtl_full.run_stream([data], ["full"])[0]
        b = rtl_scaled.run_stream([data], ["scaled"])[0]
        ref = pillow.preprocess(data).astype(np.float64)
        steps_full = np.abs(a.tensor.astype(np.float64) - ref) * std * 255
        steps = np.abs(b.tensor.astype(np.float64) - ref) * std * 255
        rows.append({
            "content": content, "size": f"{w}x{h}", "quality": q,
            "scale": b.extra["decode_scale"],
            "cycles_full": a.extra["feed_cycles"], "cycles_scaled": b.extra["feed_cycles"],
            "cycles_per_pixel_full": a.extra["feed_cycles"] / (w * h),
            "cycles_per_pixel_scaled": b.extra["feed_cycles"] / (w * h),
            "speedup": a.extra["feed_cycles"] / b.extra["feed_cycles"],
            "bit_exact_vs_golden": b.tensor.tobytes() == run_golden_jpeg(scaled, data).tobytes(),
            "full_vs_pillow_mean_steps": float(steps_full.mean()),
            "scaled_vs_pillow_mean_steps": float(steps.mean()),
            "scaled_vs_pillow_p99_steps": float(np.percentile(steps, 99)),
            "scaled_vs_pillow_max_steps": float(steps.max()),
            "scaled_within_1_step": float((steps <= 1.0 + 1e-9).mean()),
        })
    return {"pipeline": pipeline, "subsampling": "4:2:0", "rows": rows}


def bench_cpu_preprocess(pipeline: str = "imagenet", n: int = 20) -> dict:
    """Images per second of the pillow and golden backends on this CPU, one core, same images."""
    import io
    from PIL import Image
    from .accelerator import Accelerator
    blobs = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(photo_like(500, 375, i)).save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    out = {}
    for backend in ("pillow", "golden"):
        acc = Accelerator(pipeline, backend=backend)
        acc.run(blobs[0])
        t0 = time.perf_counter()
        for b in blobs:
            acc.run(b)
        out[backend] = n / (time.perf_counter() - t0)
    return {"pipeline": pipeline, "image": "500x375 JPEG q90", "images": n,
            "images_per_second": out, "golden_over_pillow": out["golden"] / out["pillow"]}


def main() -> int:
    ensure_tools_on_path()
    print("== pixel pipeline: cycles per input pixel (imagenet, Verilator harness) ==")
    pp = bench_pixel_pipeline()
    print(f"wrote {write('pixel_pipeline', pp)}")
    table(pp["sizes"], [("size", "size", ""), ("cycles", "cycles", "d"),
                        ("cycles_per_pixel", "cyc/px", ".4f"),
                        ("cycles_per_pixel_with_tables", "cyc/px+tables", ".4f"),
                        ("sim_cycles_per_second", "sim cyc/s", ".3g"),
                        ("bit_exact_vs_golden", "bit-exact", "")])
    print("\nstream of 4 images per size (tables of the next image load while one runs):")
    table(pp["stream"], [("size", "size", ""), ("cycles_per_image", "cycles/image", ".0f"),
                         ("cycles_per_pixel_stream", "cyc/in-px", ".4f"),
                         ("cycles_per_output_pixel", "cyc/out-px", ".3f"),
                         ("bit_exact_vs_golden", "bit-exact", "")])
    bp = pp["backpressure"]
    print(f"backpressure p=0.3 on all streams: {bp['cycle_ratio']:.2f}x the cycles, "
          f"bit-identical: {bp['bit_exact_vs_free']}")
    print(f"harness speed over all sizes: {pp['sim_cycles_per_second_overall'] / 1e6:.2f}M "
          "simulated cycles per second")

    print("\n== hardware JPEG decoder: clocks per pixel (JPEG bytes -> tensor) ==")
    jd = bench_jpeg_decoder()
    print(f"wrote {write('jpeg_decoder', jd)}")
    table(jd["rows"], [("mode", "mode", ""), ("quality", "quality", "d"), ("bytes", "bytes", "d"),
                       ("cycles_per_pixel", "cyc/px lone", ".4f"),
                       ("cycles_per_pixel_stream", "cyc/px stream", ".4f"),
                       ("bit_exact_vs_golden", "bit-exact", "")])

    print("\n== DCT-domain downscaling (4:2:0 JPEGs, imagenet): clocks per file pixel ==")
    ds = bench_dct_scaling()
    print(f"wrote {write('dct_scaling', ds)}")
    table(ds["rows"], [("content", "content", ""), ("size", "size", ""),
                       ("quality", "quality", "d"), ("scale", "scale", ""),
                       ("cycles_per_pixel_full", "cyc/px full", ".3f"),
                       ("cycles_per_pixel_scaled", "cyc/px scaled", ".3f"),
                       ("speedup", "speedup", ".2f"),
                       ("scaled_vs_pillow_mean_steps", "mean steps", ".2f"),
                       ("scaled_vs_pillow_p99_steps", "p99 steps", ".1f"),
                       ("bit_exact_vs_golden", "bit-exact", "")])
    print("(steps: |tensor - full-decode pillow backend| in uint8 steps of the input; noisy = "
          "synthetic with per-pixel noise, smooth = a real photo enlarged)")

    print("\n== CPU preprocessing (one core) ==")
    cpu = bench_cpu_preprocess()
    print(f"wrote {write('cpu_preprocess', cpu)}")
    for k, v in cpu["images_per_second"].items():
        print(f"{k:>8}: {v:7.1f} images/s")
    print(f"golden / pillow: {cpu['golden_over_pillow']:.2f}")

    try:
        from . import bench as serving_bench      # the serving benchmarks (pyhost.bench)
    except ImportError:
        serving_bench = None
    if serving_bench is not None and hasattr(serving_bench, "bench_suite_entries"):
        for name, data, printer in serving_bench.bench_suite_entries():
            print(f"\n== {name} ==")
            print(f"wrote {write(name, data)}")
            printer(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
