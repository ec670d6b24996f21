"""`preba preprocess` end to end: the rtl backend (Verilator harness) against the golden model,
bit for bit, on real JPEGs and a 2048x1536 photo; backpressure; traces; the report and exit
status."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyhost.accelerator import Accelerator

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testimages"


def photo(path: Path, w: int, h: int, seed: int = 0, quality: int = 90) -> Path:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255) // w, (y * 255) // h, ((x // 7 + y // 5) % 2) * 200], -1)
    img = np.clip(img + rng.integers(-25, 26, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=quality)
    return path


def preba(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyhost.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    return {
        "testorig": SHARED / "testorig.jpg",
        "testimgint": SHARED / "testimgint.jpg",
        "big": photo(d / "big.jpg", 2048, 1536, 1),
        "tall": photo(d / "tall.jpg", 300, 1100, 2),     # Pillow 13 resizes this vertically first
        "small": photo(d / "small.jpg", 100, 61, 3),
    }


def bits(t: np.ndarray) -> np.ndarray:
    return t.view(np.uint16) if t.dtype == np.float16 else t


def test_rtl_equals_golden_cli(tmp_path, images):
    srcs = [str(p) for p in images.values()]
    r = preba("preprocess", "--backend", "rtl", "-j", "2", "--out", str(tmp_path / "rtl"), *srcs)
    assert r.returncode == 0, r.stderr
    g = preba("preprocess", "--backend", "golden", "--out", str(tmp_path / "golden"), *srcs)
    assert g.returncode == 0, g.stderr
    report = json.loads((tmp_path / "rtl" / "report.json").read_text())
    assert report["backend"] == "rtl" and report["pipeline"] == "imagenet"
    for entry in report["images"]:
        assert entry["error"] is None and entry["shape"] == [3, 224, 224]
        assert entry["cycles"] > entry["pixels"] and entry["sim_seconds"] > 0
        name = Path(entry["output"]).name
        a = np.load(tmp_path / "rtl" / name)
        b = np.load(tmp_path / "golden" / name)
        assert np.array_equal(bits(a), bits(b)), name
        assert entry["hw_input"] == "jpeg"      # the file's bytes went into the RTL decoder


def test_backpressure_same_bits_more_cycles(images):
    free = Accelerator("imagenet", backend="rtl").run(images["small"])
    stalled = Accelerator("imagenet", backend="rtl", backpressure=0.4, seed=9).run(images["small"])
    assert free.error is None and stalled.error is None
    assert np.array_equal(bits(free.tensor), bits(stalled.tensor))
    assert stalled.cycles > free.cycles * 1.2


SMALL_TOML = """
[pipeline]
name = "tracesmall"
max_width = 256
max_height = 256
jpeg_decoder = false
[resize]
shorter_side = 32
[crop]
center = [32, 32]
[normalize]
[output]
dtype = "float16"
"""


def test_pixel_input_downscale_one_pixel_per_clock():
    """Pixels on the pix port (host decode): the pipeline takes one input pixel per clock."""
    from hdl.spec import load_pipeline
    from pyhost.backends.rtl import RtlBackend
    from hdl.golden.pipeline import run_golden
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    spec = load_pipeline("imagenet")
    r = RtlBackend(spec).run_rgb(rgb, "noise")
    assert r.extra["hw_input"] == "pixels"
    assert r.extra["feed_cycles"] == r.extra["pixels"]
    assert np.array_equal(bits(r.tensor), bits(run_golden(spec, rgb)))


def test_trace_window(tmp_path, images):
    toml = tmp_path / "tracesmall.toml"
    toml.write_text(SMALL_TOML)
    vcd = tmp_path / "w.vcd"
    r = preba("preprocess", "--pipeline", str(toml), "--backend", "rtl", "--trace", str(vcd),
              "--trace-window", "100:600", "--out", str(tmp_path / "o"), str(images["small"]))
    assert r.returncode == 0, r.stderr
    text = vcd.read_text()
    assert "$enddefinitions" in text and "preba_tracesmall" in text
    times = [int(line[1:]) for line in text.splitlines() if line.startswith("#")]
    # 10 ns clock: only cycles 100..600 are in the file.
    assert times and min(times) >= 100 * 10 and max(times) <= 600 * 10 and len(times) > 500


def test_failures_are_reported_and_others_written(tmp_path, images):
    bad = tmp_path / "notajpeg.jpg"
    bad.write_bytes(b"hello, not an image")
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(images["small"].read_bytes()[:300])
    r = preba("preprocess", "--backend", "rtl", "--out", str(tmp_path / "o"), str(bad),
              str(images["small"]), str(trunc))
    assert r.returncode == 1
    assert "notajpeg.jpg" in r.stderr and "truncated.jpg" in r.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    errs = {Path(e["input"]).name: e["error"] for e in report["images"]}
    assert errs["small.jpg"] is None and (tmp_path / "o" / "small.npy").exists()
    assert errs["notajpeg.jpg"] and errs["truncated.jpg"]


def test_rgb8_jpeg_bytes_equal_pillow(tmp_path, images):
    """JPEG bytes through the hardware decoder with the rgb8 preset: RTL == golden == Pillow,
    byte for byte, on real JPEGs and generated photos in every subsampling mode."""
    from hdl.jpeg import decode
    srcs = [images["testorig"], images["testimgint"], images["small"]]
    rng = np.random.default_rng(8)
    for i, sub in enumerate((0, 1, 2)):
        p = tmp_path / f"sub{sub}.jpg"
        y, x = np.mgrid[0:45, 0:67]
        img = np.clip(np.stack([x * 3, y * 5, x + y], -1) + rng.integers(-30, 31, (45, 67, 3)),
                      0, 255).astype(np.uint8)
        Image.fromarray(img).save(p, quality=80 + 5 * i, subsampling=sub)
        srcs.append(p)
    rtl = Accelerator("rgb8", backend="rtl")
    for src in srcs:
        r = rtl.run(src)
        assert r.error is None and r.extra["hw_input"] == "jpeg", r.error
        with Image.open(src) as im:
            pillow = np.asarray(im.convert("RGB"))
        assert np.array_equal(r.tensor, pillow), src
        assert np.array_equal(decode(Path(src).read_bytes()), pillow)
