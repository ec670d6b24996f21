"""DCT-domain downscaling on the host side: the spec's scale choice, the job header, and the
golden path (scaled decode -> resize from the full-size geometry), anchored to Pillow's
``draft()``. The RTL through the whole core is checked in test_rtl_dct_scaling.py."""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from hdl.golden.pipeline import run_golden, run_golden_jpeg
from hdl.job import build_job
from hdl.spec import PRESETS, SpecError, spec_from_dict
from pyhost.accelerator import Accelerator
from pyhost.bench_suite import photo_like

IMAGENET_DCT = replace(PRESETS["imagenet"], dct_scaling=True)


def jpeg(w: int, h: int, quality: int = 85, subsampling: int = 2, seed: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo_like(w, h, seed)).save(buf, "JPEG", quality=quality,
                                                 subsampling=subsampling)
    return buf.getvalue()


@pytest.mark.parametrize("size, denom", [
    ((640, 480), 1),        # 320x240 would be below the 341x256 the resize makes
    ((683, 512), 2),        # exactly 2x: ceil(683/2) = 342 >= 341, 256 >= 256
    ((681, 510), 1),       # 510/2 = 255 rows: one short of the 256 the resize needs
    ((1024, 768), 2), ((1920, 1080), 4), ((4032, 3024), 8), ((2048, 2048), 8),
    ((256, 4000), 1),       # the short side is already the resize target
])
def test_scale_choice(size, denom):
    w, h = size
    assert IMAGENET_DCT.jpeg_scale_denom(w, h) == denom
    assert PRESETS["imagenet"].jpeg_scale_denom(w, h) == 1          # off unless asked for
    g = IMAGENET_DCT.output_geometry(w, h, denom)
    full = IMAGENET_DCT.output_geometry(w, h)
    # The tensor is the same shape as at full scale, and the resize never upsamples.
    assert (g.resized_w, g.resized_h, g.out_w, g.out_h, g.crop_x, g.crop_y) == \
        (full.resized_w, full.resized_h, full.out_w, full.out_h, full.crop_x, full.crop_y)
    assert g.in_w >= g.resized_w and g.in_h >= g.resized_h
    assert (g.in_w, g.in_h) == (-(-w // denom), -(-h // denom))


def test_job_header_carries_scale():
    job = build_job(IMAGENET_DCT, 1920, 1080, jpeg=True)
    w3 = int(job.words[3])
    assert (w3 >> 2) & 1 == 1 and (w3 >> 3) & 3 == 2           # JPEG source, 1/4
    assert int(job.words[0]) == 480 | 270 << 16                 # the decoded size
    assert (int(build_job(IMAGENET_DCT, 1920, 1080).words[3]) >> 3) & 3 == 0   # pixels: never


def test_spec_field_validation():
    with pytest.raises(SpecError, match="pipeline.dct_scaling"):
        replace(PRESETS["rgb8"], dct_scaling=True)              # no resize to absorb it
    with pytest.raises(SpecError, match="pipeline.dct_scaling"):
        replace(IMAGENET_DCT, jpeg_decoder=False)
    with pytest.raises(SpecError, match="must be true or false"):
        replace(PRESETS["imagenet"], dct_scaling="yes")
    s = spec_from_dict({"pipeline": {"dct_scaling": True}, "resize": {"shorter_side": 128}})
    assert s.dct_scaling and s.to_dict()["pipeline"]["dct_scaling"] is True
    assert spec_from_dict(s.to_dict()) == s


@pytest.mark.parametrize("size, sub", [((1024, 768), 2), ((1100, 900), 1), ((1921, 1081), 0),
                                       ((2100, 1200), 2)])
def test_golden_equals_pillow_draft(size, sub):
    """Golden (scaled decode + fixed-point resize) == the same resize run on Pillow's own
    ``draft()`` decode: the scaled decode is bit-identical to libjpeg-turbo's."""
    data = jpeg(*size, subsampling=sub)
    w, h = size
    d = IMAGENET_DCT.jpeg_scale_denom(w, h)
    assert d > 1
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (w // d, h // d))
    rgb = np.asarray(im.convert("RGB"))
    g = IMAGENET_DCT.output_geometry(w, h, d)
    assert rgb.shape[:2] == (g.in_h, g.in_w)
    assert np.array_equal(run_golden(IMAGENET_DCT, rgb, g).view(np.uint16),
                          run_golden_jpeg(IMAGENET_DCT, data).view(np.uint16))


def test_accuracy_against_full_decode_pillow():
    """The scaled path against the ``pillow`` backend (full decode, float resize): the numbers
    the issue reports. Bounds are loose limits on what a scaled IDCT may change, in units of one
    uint8 step of the input (1/255/std)."""
    data = jpeg(2048, 1536, quality=90, seed=11)
    golden = Accelerator(IMAGENET_DCT, backend="golden").preprocess(data).astype(np.float64)
    pillow = Accelerator("imagenet", backend="pillow").preprocess(data).astype(np.float64)
    std = np.asarray(IMAGENET_DCT.normalize.std).reshape(3, 1, 1)
    steps = np.abs(golden - pillow) * std * 255
    assert golden.shape == pillow.shape == (3, 224, 224)
    assert steps.mean() < 3.0
    assert np.percentile(steps, 99) < 16
