"""DCT-domain downscaling through the whole core (JPEG bytes -> scaled decode -> resize ->
normalize -> tensor) on Verilator, bit for bit against the golden model, with scales changing
from one job to the next in a single simulation. The decoder alone is checked at every scale in
test_jpeg_rtl_scaled.py."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hdl.golden.pipeline import run_golden_jpeg
from hdl.spec import PRESETS
from pyhost.backends.rtl import RtlBackend
from pyhost.bench_suite import photo_like

REPO = Path(__file__).resolve().parents[1]
IMAGENET_DCT = replace(PRESETS["imagenet"], dct_scaling=True)


def jpeg(w: int, h: int, sub, quality: int = 80, seed: int = 1, gray: bool = False) -> bytes:
    im = Image.fromarray(photo_like(w, h, seed))
    buf = io.BytesIO()
    if gray:
        im.convert("L").save(buf, "JPEG", quality=quality)
    else:
        im.save(buf, "JPEG", quality=quality, subsampling=sub)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rtl() -> RtlBackend:
    # Same netlist as the imagenet preset (the scale is a job field), so the build is shared.
    return RtlBackend(IMAGENET_DCT)


def test_scales_back_to_back(rtl):
    files = [
        ("1/2 4:2:0", jpeg(1024, 768, 2, seed=2)),
        ("1/1 4:2:0", jpeg(400, 300, 2, seed=3)),
        ("1/4 4:2:2", jpeg(1100, 1030, 1, quality=90, seed=4)),
        ("1/2 gray", jpeg(700, 530, None, seed=5, gray=True)),
        ("1/8 4:2:0 odd", jpeg(2071, 2049, 2, quality=70, seed=6)),
        ("1/2 4:4:4 odd", jpeg(683, 517, 0, seed=7)),
    ]
    results = rtl.run_stream([d for _, d in files], [n for n, _ in files])
    scales = []
    for (name, data), r in zip(files, results):
        assert r.tensor.shape == (3, 224, 224), name
        assert np.array_equal(r.tensor.view(np.uint16),
                              run_golden_jpeg(IMAGENET_DCT, data).view(np.uint16)), name
        scales.append(r.extra["decode_scale"])
    assert scales == ["1/2", "1/1", "1/4", "1/2", "1/8", "1/2"]
    # What scaling saves: the 1/2 image feeds the resize a quarter of the pixels.
    assert results[0].extra["decoded_pixels"] == 512 * 384


def test_cli_dct_scaling_rtl_equals_golden(tmp_path):
    srcs = []
    for name, data in (("a", jpeg(1024, 768, 2, seed=8)), ("b", jpeg(1300, 1100, 1, seed=9))):
        p = tmp_path / f"{name}.jpg"
        p.write_bytes(data)
        srcs.append(str(p))
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(jpeg(900, 800, 2, seed=10)[:5000])
    srcs.insert(1, str(bad))
    outs = {}
    for backend in ("rtl", "golden"):
        r = subprocess.run([sys.executable, "-m", "pyhost.cli", "preprocess", "--dct-scaling",
                            "--backend", backend, "--out", str(tmp_path / backend), *srcs],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
        assert r.returncode == 1, r.stderr              # the truncated file fails, the rest run
        assert "cut.jpg" in r.stderr and "data ends before" in r.stderr
        outs[backend] = r
    rep = json.loads((tmp_path / "rtl" / "report.json").read_text())
    assert [e["decode_scale"] for e in rep["images"] if e["error"] is None] == ["1/2", "1/4"]
    for stem in ("a", "b"):
        a = np.load(tmp_path / "rtl" / f"{stem}.npy")
        b = np.load(tmp_path / "golden" / f"{stem}.npy")
        assert np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_mixed_stream_with_errors(rtl):
    """JPEG jobs (the decoder reads a file as soon as its job is loaded, so it works on the next
    image while this one's last rows come out), pixel jobs and broken files interleaved in one
    simulation: every status is right and every good image bit-exact."""
    from hdl.golden.pipeline import run_golden
    from hdl.job import Status, assemble_tensor, build_job, pack_jpeg, pack_pixels
    from hdl.jpeg import JpegStatus, read_header
    good = [jpeg(1024, 768, 2, seed=21), jpeg(300, 260, 1, seed=22), jpeg(700, 530, 2, seed=23)]
    cut = good[0][:4000]
    not_jpeg = b"\xff\xd8\xff\xe0" + bytes(60)          # APP0 claiming a length past the end
    pixels = photo_like(90, 70, 24)
    items = [good[0], cut, good[1], pixels, not_jpeg, good[2], good[0]]
    want = [0, JpegStatus.TRUNCATED, 0, 0, None, 0, 0]
    jobs, pix, jpg = [], [], []
    for item in items:
        if isinstance(item, np.ndarray):
            job = build_job(IMAGENET_DCT, 90, 70)
            pix.append(pack_pixels(item))
        else:
            try:
                w, h = read_header(item)[:2]
            except Exception:
                w, h = 64, 64          # the host cannot know; the core finds out
            job = build_job(IMAGENET_DCT, w, h, jpeg=True)
            jpg.append(pack_jpeg(item))
        jobs.append(job)
    res = rtl.harness.run({"cfg": np.concatenate([j.words for j in jobs]),
                           "pix": np.concatenate(pix), "jpg": np.concatenate(jpg)},
                          until=("status", len(jobs)), max_cycles=50_000_000)
    assert res.complete, res.summary()
    codes = [int(c) for c in res.field("status", "code")]
    status_cycles = res.beat_cycles["status"].astype(np.int64)
    out_cycles = res.beat_cycles["out"].astype(np.int64)
    offsets, data = res.field("out", "offset"), res.elements("out")
    start = 0
    for k, (item, job, code) in enumerate(zip(items, jobs, codes)):
        stop = int(np.searchsorted(out_cycles, status_cycles[k], side="right"))
        if want[k] is None:
            assert code not in (0, Status.OK), (k, code)
        else:
            assert code == want[k], (k, code)
        if code == 0:
            t = assemble_tensor(IMAGENET_DCT, job, offsets[start:stop], data[start:stop])
            ref = run_golden(IMAGENET_DCT, item) if isinstance(item, np.ndarray) \
                else run_golden_jpeg(IMAGENET_DCT, item)
            assert np.array_equal(t.view(np.uint16), ref.view(np.uint16)), k
        start = stop
