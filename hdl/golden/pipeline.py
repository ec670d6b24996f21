"""The golden model of the whole preprocessing core: numpy, bit-exact with the RTL."""
from __future__ import annotations

import numpy as np

from ..fixedpoint import normalize_constants
from ..job import Status
from ..spec import Geometry, PipelineSpec
from .resize import resize_crop

__all__ = ["run_golden", "run_golden_jpeg", "normalize_raw", "GoldenError"]


class GoldenError(ValueError):
    def __init__(self, status: Status, message: str):
        self.status = status
        super().__init__(message)


def normalize_raw(px: np.ndarray, spec: PipelineSpec) -> np.ndarray | None:
    """HxWx3 uint8 → NORM_VALUE raw int64 (``pixel * gain + bias``), or None for raw uint8."""
    consts = normalize_constants(spec)
    if consts is None:
        return None
    gains, biases = consts
    return px.astype(np.int64) * np.asarray(gains, np.int64) + np.asarray(biases, np.int64)


def run_golden(spec: PipelineSpec, rgb: np.ndarray, geometry: Geometry | None = None
               ) -> np.ndarray:
    """The output tensor for an HxWx3 uint8 image; raises GoldenError with the core's status.

    ``geometry``: for an image decoded at a reduced scale (:func:`run_golden_jpeg`), where it
    goes, computed from its full size; by default from the array's own size."""
    from .convert import convert
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise TypeError("run_golden expects an HxWx3 uint8 array")
    h, w = rgb.shape[:2]
    if geometry is not None:
        if (geometry.in_w, geometry.in_h) != (w, h):
            raise ValueError(f"image is {w}x{h} but the geometry expects "
                             f"{geometry.in_w}x{geometry.in_h}")
        g = geometry
    else:
        try:
            g = spec.output_geometry(w, h)
        except ValueError as e:
            raise GoldenError(Status.BAD_DIMS, str(e)) from None
    crop = (g.crop_x, g.crop_y, g.out_w, g.out_h)
    if spec.resize is not None:
        px = resize_crop(rgb, g.resized_w, g.resized_h, crop)
    else:
        px = rgb[g.crop_y:g.crop_y + g.out_h, g.crop_x:g.crop_x + g.out_w]
    raw = normalize_raw(px, spec)
    t = px if raw is None else convert(raw, spec.output.dtype)
    if spec.output.layout == "CHW":
        t = t.transpose(2, 0, 1)
    return np.ascontiguousarray(t)


def run_golden_jpeg(spec: PipelineSpec, data: bytes) -> np.ndarray:
    """The core's output for a JPEG file on its ``jpg`` input: the golden decoder (at the DCT
    scale the spec picks for this image, see ``PipelineSpec.jpeg_scale_denom``), then
    :func:`run_golden`. Raises :class:`hdl.jpeg.JpegError` for a file the decoder rejects and
    GoldenError for one the pipeline cannot take."""
    from fractions import Fraction
    from ..jpeg import decode, read_header
    w, h = read_header(data, max_width=spec.max_width, max_height=spec.max_height)[:2]
    denom = spec.jpeg_scale_denom(w, h)
    try:
        g = spec.output_geometry(w, h, denom)
    except ValueError as e:
        raise GoldenError(Status.BAD_DIMS, str(e)) from None
    rgb = decode(data, max_width=spec.max_width, max_height=spec.max_height,
                 scale=Fraction(1, denom))
    return run_golden(spec, rgb, g)
