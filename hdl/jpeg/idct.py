"""Stages 3 and 4: dequantization and the integer inverse DCTs of libjpeg.

All functions work on a stack of blocks ``(N, 8, 8)`` at once (numpy, int64 intermediates) and
return uint8 blocks ``(N, s, s)``. The arithmetic is step for step that of libjpeg-turbo's C
code -- jidctint.c ``jpeg_idct_islow`` (8x8) and jidctred.c ``jpeg_idct_4x4``, ``jpeg_idct_2x2``,
``jpeg_idct_1x1`` (the reduced-size outputs of scaled decoding): 13-bit constants, 2 extra bits
after the column pass, rounding right shifts (``DESCALE``), and the post-IDCT range limit, which
takes the result modulo 1024 (``& RANGE_MASK``) and then clamps ``x + 128`` to 0..255.

The C code's shortcuts for all-zero AC columns/rows give the same numbers as the full
computation, so the vectorized code never branches. For coded data from a real encoder the
SIMD versions Pillow runs (16-bit lanes, saturating packs) give the same results too; they can
only differ for pathological coefficients whose dequantized value exceeds 16 bits.
"""
from __future__ import annotations

import numpy as np

from .markers import ZIGZAG

__all__ = ["dequantize", "idct_islow", "idct_4x4", "idct_2x2", "idct_1x1", "IDCTS",
           "range_limit"]

CONST_BITS = 13
PASS1_BITS = 2

# FIX(x) = round(x * 2**13)
F0_211164243 = 1730
F0_298631336 = 2446
F0_390180644 = 3196
F0_509795579 = 4176
F0_541196100 = 4433
F0_601344887 = 4926
F0_720959822 = 5906
F0_765366865 = 6270
F0_850430095 = 6967
F0_899976223 = 7373
F1_061594337 = 8697
F1_175875602 = 9633
F1_272758580 = 10426
F1_451774981 = 11893
F1_501321110 = 12299
F1_847759065 = 15137
F1_961570560 = 16069
F2_053119869 = 16819
F2_172734803 = 17799
F2_562915447 = 20995
F3_072711026 = 25172
F3_624509785 = 29692


def dequantize(blocks: np.ndarray, qtable_zigzag: np.ndarray) -> np.ndarray:
    """Quantized coefficients (..., 8, 8) natural order times the quantization table (given in
    the DQT's zigzag order) -> int64 (..., 8, 8)."""
    q = np.empty(64, np.int64)
    q[ZIGZAG] = qtable_zigzag
    return blocks.astype(np.int64) * q.reshape(8, 8)


def _descale(x: np.ndarray, n: int) -> np.ndarray:
    return (x + (1 << (n - 1))) >> n


def range_limit(x: np.ndarray) -> np.ndarray:
    """libjpeg's post-IDCT limit: ``range_limit[x & 1023]`` = clamp(wrap10(x) + 128, 0, 255)."""
    y = ((x + 512) & 1023) - 512
    return np.clip(y + 128, 0, 255).astype(np.uint8)


def _islow_1d(d):
    """One 8-point pass of jpeg_idct_islow on the 8 inputs ``d[0..7]`` (arrays); returns the
    8 outputs before descaling."""
    z2, z3 = d[2], d[6]
    z1 = (z2 + z3) * F0_541196100
    tmp2 = z1 - z3 * F1_847759065
    tmp3 = z1 + z2 * F0_765366865
    tmp0 = (d[0] + d[4]) << CONST_BITS
    tmp1 = (d[0] - d[4]) << CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2

    t0, t1, t2, t3 = d[7], d[5], d[3], d[1]
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * F1_175875602
    t0 = t0 * F0_298631336
    t1 = t1 * F2_053119869
    t2 = t2 * F3_072711026
    t3 = t3 * F1_501321110
    z1 = z1 * -F0_899976223
    z2 = z2 * -F2_562915447
    z3 = z3 * -F1_961570560 + z5
    z4 = z4 * -F0_390180644 + z5
    t0 += z1 + z3
    t1 += z2 + z4
    t2 += z2 + z3
    t3 += z1 + z4
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0,
            tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


def idct_islow(coef: np.ndarray) -> np.ndarray:
    """jpeg_idct_islow: dequantized (N, 8, 8) -> uint8 (N, 8, 8)."""
    c = coef.astype(np.int64)
    # Pass 1: columns (each column's 8 inputs are the 8 rows).
    cols = _islow_1d([c[:, k, :] for k in range(8)])
    ws = np.stack([_descale(v, CONST_BITS - PASS1_BITS) for v in cols], axis=1)
    # Pass 2: rows.
    rows = _islow_1d([ws[:, :, k] for k in range(8)])
    out = np.stack([_descale(v, CONST_BITS + PASS1_BITS + 3) for v in rows], axis=2)
    return range_limit(out)


def _red4_1d(d):
    """One 4-output pass of jpeg_idct_4x4 (input 4 is not used)."""
    tmp0 = d[0] << (CONST_BITS + 1)
    tmp2 = d[2] * F1_847759065 - d[6] * F0_765366865
    tmp10, tmp12 = tmp0 + tmp2, tmp0 - tmp2
    z1, z2, z3, z4 = d[7], d[5], d[3], d[1]
    tmp0 = (-z1 * F0_211164243 + z2 * F1_451774981 - z3 * F2_172734803 + z4 * F1_061594337)
    tmp2 = (-z1 * F0_509795579 - z2 * F0_601344887 + z3 * F0_899976223 + z4 * F2_562915447)
    return [tmp10 + tmp2, tmp12 + tmp0, tmp12 - tmp0, tmp10 - tmp2]


def idct_4x4(coef: np.ndarray) -> np.ndarray:
    """jpeg_idct_4x4 (1/2 scale): dequantized (N, 8, 8) -> uint8 (N, 4, 4)."""
    c = coef.astype(np.int64)
    cols = _red4_1d([c[:, k, :] for k in range(8)])
    ws = np.stack([_descale(v, CONST_BITS - PASS1_BITS + 1) for v in cols], axis=1)  # (N,4,8)
    rows = _red4_1d([ws[:, :, k] for k in range(8)])
    out = np.stack([_descale(v, CONST_BITS + PASS1_BITS + 3 + 1) for v in rows], axis=2)
    return range_limit(out)


def _red2_1d(d):
    """One 2-output pass of jpeg_idct_2x2 (inputs 2, 4, 6 are not used)."""
    tmp10 = d[0] << (CONST_BITS + 2)
    tmp0 = (-d[7] * F0_720959822 + d[5] * F0_850430095 - d[3] * F1_272758580
            + d[1] * F3_624509785)
    return [tmp10 + tmp0, tmp10 - tmp0]


def idct_2x2(coef: np.ndarray) -> np.ndarray:
    """jpeg_idct_2x2 (1/4 scale): dequantized (N, 8, 8) -> uint8 (N, 2, 2)."""
    c = coef.astype(np.int64)
    cols = _red2_1d([c[:, k, :] for k in range(8)])
    ws = np.stack([_descale(v, CONST_BITS - PASS1_BITS + 2) for v in cols], axis=1)  # (N,2,8)
    rows = _red2_1d([ws[:, :, k] for k in range(8)])
    out = np.stack([_descale(v, CONST_BITS + PASS1_BITS + 3 + 2) for v in rows], axis=2)
    return range_limit(out)


def idct_1x1(coef: np.ndarray) -> np.ndarray:
    """jpeg_idct_1x1 (1/8 scale): the DC term / 8, rounded: (N, 8, 8) -> uint8 (N, 1, 1)."""
    dc = coef[:, :1, :1].astype(np.int64)
    return range_limit(_descale(dc, 3))


#: IDCT output size -> function
IDCTS = {8: idct_islow, 4: idct_4x4, 2: idct_2x2, 1: idct_1x1}
