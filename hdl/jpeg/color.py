"""Stage 6: YCbCr -> RGB with libjpeg's integer tables (jdcolor.c ``ycc_rgb_convert``).

16-bit fixed point: ``FIX(x) = (int)(x * 65536 + 0.5)``::

    R = clamp(Y + ((FIX(1.40200) * (Cr-128) + 2**15) >> 16))
    G = clamp(Y + ((-FIX(0.34414) * (Cb-128) - FIX(0.71414) * (Cr-128) + 2**15) >> 16))
    B = clamp(Y + ((FIX(1.77200) * (Cb-128) + 2**15) >> 16))

The hardware can hold the four 256-entry tables in ROM, as libjpeg does, or compute the products.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ycc_to_rgb", "gray_to_rgb", "CR_R", "CB_B", "CR_G", "CB_G", "SCALEBITS"]

SCALEBITS = 16
ONE_HALF = 1 << (SCALEBITS - 1)


def _fix(x: float) -> int:
    return int(x * (1 << SCALEBITS) + 0.5)


_x = np.arange(256, dtype=np.int64) - 128
#: Cr -> R offset, Cb -> B offset (already descaled), Cr / Cb -> G terms (scaled, Cb has +1/2)
CR_R = (_fix(1.40200) * _x + ONE_HALF) >> SCALEBITS
CB_B = (_fix(1.77200) * _x + ONE_HALF) >> SCALEBITS
CR_G = -_fix(0.71414) * _x
CB_G = -_fix(0.34414) * _x + ONE_HALF


def ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Three (H, W) uint8 planes -> (H, W, 3) uint8 RGB."""
    yy = y.astype(np.int64)
    out = np.empty(y.shape + (3,), np.uint8)
    out[..., 0] = np.clip(yy + CR_R[cr], 0, 255)
    out[..., 1] = np.clip(yy + ((CB_G[cb] + CR_G[cr]) >> SCALEBITS), 0, 255)
    out[..., 2] = np.clip(yy + CB_B[cb], 0, 255)
    return out


def gray_to_rgb(y: np.ndarray) -> np.ndarray:
    """Grayscale -> RGB as Pillow's ``convert('RGB')`` does: R = G = B = Y."""
    return np.repeat(y[..., None], 3, axis=2)
