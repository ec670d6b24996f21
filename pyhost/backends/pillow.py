"""The standard software pipeline: what users run today without an accelerator."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hdl.spec import PipelineSpec
from ..accelerator import PreprocessError, Result, decode_rgb


def _to_dtype(z: np.ndarray, spec: PipelineSpec) -> np.ndarray:
    out = spec.output
    if out.dtype == "float16":
        return z.astype(np.float16)
    if out.dtype == "bfloat16":
        import torch
        return torch.from_numpy(z.astype(np.float32)).to(torch.bfloat16).view(torch.uint16).numpy()
    lo, hi = (0, 255) if out.dtype == "uint8" else (-128, 127)
    q = np.rint(z / out.scale) + out.zero_point
    return np.clip(q, lo, hi).astype(out.dtype)


class PillowBackend:
    """Pillow decode and resize, crop, float32 normalize, cast to the output dtype."""

    def __init__(self, spec: PipelineSpec):
        self.spec = spec

    def tensor_from_rgb(self, rgb: np.ndarray, name: str) -> np.ndarray:
        spec = self.spec
        h, w = rgb.shape[:2]
        try:
            g = spec.output_geometry(w, h)
        except ValueError as e:
            raise PreprocessError(name, str(e)) from None
        im = Image.fromarray(rgb)
        if spec.resize is not None:
            im = im.resize((g.resized_w, g.resized_h), Image.BILINEAR)
        im = im.crop((g.crop_x, g.crop_y, g.crop_x + g.out_w, g.crop_y + g.out_h))
        px = np.asarray(im)
        if spec.output.dtype == "uint8" and spec.normalize is None:
            t = px
        else:
            z = px.astype(np.float32) / np.float32(255.0)
            if spec.normalize is not None:
                z = (z - np.asarray(spec.normalize.mean, np.float32)) / np.asarray(
                    spec.normalize.std, np.float32)
            t = _to_dtype(z, spec)
        if spec.output.layout == "CHW":
            t = np.ascontiguousarray(t.transpose(2, 0, 1))
        return t

    def run(self, data: bytes, name: str) -> Result:
        rgb = decode_rgb(data, name)
        return Result(name, self.tensor_from_rgb(rgb, name))
