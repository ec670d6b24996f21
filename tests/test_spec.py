"""Pipeline spec: presets, TOML loading, and errors that name the field, value and range."""
from __future__ import annotations

import pytest

from hdl.spec import PRESETS, SpecError, load_pipeline, spec_from_dict

TOML = """
[pipeline]
name = "mynet"
max_width = 4096
max_height = 2048

[resize]
size = [320, 240]

[crop]
box = [10, 8, 300, 200]

[normalize]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]

[output]
dtype = "int8"
layout = "HWC"
scale = 0.03
zero_point = 2
"""


def test_presets():
    im = PRESETS["imagenet"]
    assert im.resize.shorter_side == 256 and im.crop.center == (224, 224)
    assert im.output.dtype == "float16" and im.output.layout == "CHW"
    g = im.output_geometry(500, 375)        # torchvision Resize(256): int(256*500/375) = 341
    assert (g.resized_w, g.resized_h, g.crop_x, g.crop_y) == (341, 256, 58, 16)
    r = PRESETS["rgb8"]
    assert r.resize is None and r.output.dtype == "uint8" and r.output.layout == "HWC"
    assert r.output_geometry(7, 5).out_w == 7


def test_center_crop_offsets_round_half_even():
    # torchvision: int(round((341 - 224) / 2.0)) = round(58.5) = 58 (banker's rounding)
    assert PRESETS["imagenet"].crop.window(341, 256)[:2] == (58, 16)
    assert PRESETS["imagenet"].crop.window(343, 256)[:2] == (60, 16)


def test_toml_roundtrip(tmp_path):
    p = tmp_path / "mynet.toml"
    p.write_text(TOML)
    s = load_pipeline(p)
    assert s.name == "mynet" and s.max_width == 4096 and s.resize.size == (320, 240)
    assert s.crop.box == (10, 8, 300, 200) and s.output.zero_point == 2
    assert spec_from_dict(s.to_dict()) == s


@pytest.mark.parametrize("text,field", [
    ("[resize]\nshorter_side = 0", "resize.shorter_side"),
    ("[resize]\nshorter_side = 10\nsize = [3, 3]", "resize"),
    ("[resize]\nshorter_side = 10\nfilter = 'lanczos'", "resize.filter"),
    ("[output]\ndtype = 'float32'", "output.dtype"),
    ("[output]\nlayout = 'NCHW'", "output.layout"),
    ("[output]\ndtype = 'int8'", "output.dtype"),
    ("[normalize]\nstd = [0.2, 0.0, 0.2]", "normalize.std[1]"),
    ("[normalize]\nmean = [1, 2]", "normalize.mean"),
    ("[pipeline]\nmax_width = 100000", "pipeline.max_width"),
    ("[crop]\ncenter = [300, 300]\n[resize]\nshorter_side = 256", "crop.center"),
    ("[bogus]\nx = 1", "bogus"),
    ("[crop]\ncentre = [3, 3]", "crop.centre"),
])
def test_invalid_spec_names_field(tmp_path, text, field):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(SpecError) as e:
        load_pipeline(p)
    assert e.value.field == field
    assert field in str(e.value) and "invalid" in str(e.value)


def test_unknown_pipeline_name():
    with pytest.raises(SpecError, match="preset"):
        load_pipeline("resnet")
    with pytest.raises(SpecError, match="not found"):
        load_pipeline("nope.toml")
