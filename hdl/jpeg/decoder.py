"""The decoder pipeline: marker parser -> entropy decoder -> dequantize -> IDCT -> upsample ->
colour conversion, each stage a function of :mod:`hdl.jpeg` that can be checked alone.

Scaled decoding (``scale`` = 1/2, 1/4, 1/8) follows libjpeg-turbo's jdmaster.c exactly as Pillow
runs it after ``im.draft('RGB', (w // s, h // s))``: the output is ``ceil(W * scale) x
ceil(H * scale)``; luma blocks use the 4x4 / 2x2 / 1x1 reduced IDCT; a chroma component is given
a *larger* IDCT when that removes upsampling (4:2:0 at 1/2 decodes chroma with the full 8x8 IDCT
and needs no upsampling at all); fancy upsampling is off at 1/8.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import ceil

import numpy as np

from .color import gray_to_rgb, ycc_to_rgb
from .huffman import blocks_by_component, entropy_decode
from .idct import IDCTS, dequantize
from .markers import Frame, Stream, parse_frame_only, parse_header, parse_trailer, \
    split_entropy_data
from .status import JpegError, JpegStatus as S
from .upsample import upsample

__all__ = ["decode", "decode_status", "read_header", "output_size", "ComponentPlan",
           "plan_components", "reconstruct_component"]

DEFAULT_MAX = 8192
_IDCT_CHUNK = 1 << 15      # blocks per IDCT batch (bounds memory for large images)


def _scale_denom(scale) -> int:
    try:
        f = Fraction(scale).limit_denominator(64)
    except (TypeError, ValueError):
        raise JpegError(S.UNSUPPORTED_SCALE, detail=f"scale={scale!r}") from None
    if f.numerator != 1 or f.denominator not in (1, 2, 4, 8) or f != Fraction(scale):
        raise JpegError(S.UNSUPPORTED_SCALE, detail=f"scale={scale!r}")
    return f.denominator


def output_size(width: int, height: int, scale=1) -> tuple[int, int]:
    """Decoded (width, height) at ``scale``: ``ceil(W * scale), ceil(H * scale)``."""
    d = _scale_denom(scale)
    return -(-width // d), -(-height // d)


@dataclass(frozen=True)
class ComponentPlan:
    """How one component is reconstructed at a given scale (libjpeg's per-component choices)."""
    idct_size: int          # DCT_scaled_size: 8, 4, 2 or 1 output samples per block side
    width: int              # downsampled_width: real samples per row after the IDCT
    height: int             # downsampled_height
    hx: int                 # upsampling factors to the output grid
    vx: int
    fancy: bool             # fancy (triangle) upsampling enabled


def plan_components(frame: Frame, denom: int) -> list[ComponentPlan]:
    """jdmaster.c ``jpeg_calc_output_dimensions`` + jdsample.c ``jinit_upsampler`` choices."""
    m = 8 // denom                       # min_DCT_scaled_size
    hmax, vmax = frame.hmax, frame.vmax
    plans = []
    for c in frame.components:
        ss = m
        while ss < 8 and (hmax * m) % (c.h * ss * 2) == 0 and (vmax * m) % (c.v * ss * 2) == 0:
            ss *= 2
        w = ceil(frame.width * c.h * ss / (hmax * 8))
        h = ceil(frame.height * c.v * ss / (vmax * 8))
        h_in, v_in = c.h * ss // m, c.v * ss // m
        plans.append(ComponentPlan(ss, w, h, hmax // h_in, vmax // v_in, m > 1))
    return plans


def reconstruct_component(blocks: np.ndarray, qtable: np.ndarray, plan: ComponentPlan
                          ) -> np.ndarray:
    """Quantized blocks (bh, bw, 8, 8) -> dequantize -> IDCT -> the component plane cropped to
    its real size (plan.height, plan.width), uint8."""
    bh, bw = blocks.shape[:2]
    s = plan.idct_size
    idct = IDCTS[s]
    flat = blocks.reshape(-1, 8, 8)
    out = np.empty((flat.shape[0], s, s), np.uint8)
    for i in range(0, flat.shape[0], _IDCT_CHUNK):
        out[i:i + _IDCT_CHUNK] = idct(dequantize(flat[i:i + _IDCT_CHUNK], qtable))
    plane = out.reshape(bh, bw, s, s).transpose(0, 2, 1, 3).reshape(bh * s, bw * s)
    return plane[:plan.height, :plan.width]


def read_header(data: bytes, *, max_width: int = DEFAULT_MAX, max_height: int = DEFAULT_MAX
                ) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
    """Parse only up to SOF: ``(width, height, components, sampling)`` where sampling is the
    ``(h, v)`` factors per component. Raises :class:`JpegError` for everything the SOF already
    shows to be unsupported (progressive, arithmetic, 12-bit, CMYK, sampling, dimensions)."""
    f = parse_frame_only(bytes(data), max_width, max_height)
    return f.width, f.height, len(f.components), f.sampling


def decode(data: bytes, *, max_width: int = DEFAULT_MAX, max_height: int = DEFAULT_MAX,
           scale=1) -> np.ndarray:
    """Decode a baseline JPEG to (H, W, 3) uint8 RGB, bit-identical to Pillow
    (``Image.open(f).convert('RGB')``, after ``draft('RGB', ...)`` for ``scale`` < 1).

    ``scale`` is 1, 1/2, 1/4 or 1/8. Raises :class:`JpegError` on anything unsupported or
    corrupt."""
    denom = _scale_denom(scale)
    data = bytes(data)
    stream = parse_header(data, max_width, max_height)
    ent = split_entropy_data(data, stream.scan_start)
    coefs = entropy_decode(stream, ent)
    if ent.hit_eof:
        raise JpegError(S.MISSING_EOI)
    parse_trailer(data, ent.end)
    return reconstruct(stream, coefs, denom)


def reconstruct(stream: Stream, coefs: np.ndarray, denom: int = 1) -> np.ndarray:
    """Everything after the entropy decoder: scan-order coefficient blocks -> RGB image."""
    frame = stream.frame
    plans = plan_components(frame, denom)
    comps = blocks_by_component(stream, coefs)
    out_w, out_h = -(-frame.width // denom), -(-frame.height // denom)
    planes = []
    for blocks, q, p in zip(comps, stream.qtables, plans):
        plane = reconstruct_component(blocks, q, p)
        planes.append(upsample(plane, p.hx, p.vx, p.fancy)[:out_h, :out_w])
    if len(planes) == 1:
        return gray_to_rgb(planes[0])
    return ycc_to_rgb(*planes)


def decode_status(data: bytes, *, max_width: int = DEFAULT_MAX, max_height: int = DEFAULT_MAX,
                  scale=1) -> tuple[int, np.ndarray | None]:
    """Like :func:`decode` but returns ``(status code, image or None)`` instead of raising."""
    try:
        return int(S.OK), decode(data, max_width=max_width, max_height=max_height, scale=scale)
    except JpegError as e:
        return int(e.code), None
