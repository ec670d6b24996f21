"""Stage 5: chroma upsampling, as libjpeg-turbo's jdsample.c does it.

"Fancy" upsampling is the triangle filter: each output sample is 3/4 of the nearer input plus
1/4 of the further one, in each upsampled direction, with libjpeg's alternating rounding biases.
The plane's edges are extended by replicating its last real row / column (the real size being
the component's ``downsampled_width x downsampled_height``, not the padded block size), which
is what jdmainct.c's context rows and the special first/last column cases amount to.

libjpeg's choice (``jinit_upsampler``), reproduced by :func:`upsample`:

* 2x horizontal (4:2:2): h2v1 fancy if fancy is on and the plane is wider than 2, else replicate.
* 2x vertical only (4:4:0): h1v2 fancy if fancy is on, else replicate.
* 2x both (4:2:0): h2v2 fancy if fancy is on and the plane is wider than 2, else replicate.

Fancy is on unless the decode is scaled to 1/8 (``min_DCT_scaled_size == 1``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["h2v1_fancy", "h1v2_fancy", "h2v2_fancy", "replicate", "upsample"]


def _ext_cols(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left neighbour, right neighbour) of every column, edges replicated."""
    left = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
    right = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    return left, right


def _ext_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    above = np.concatenate([x[:1], x[:-1]], axis=0)
    below = np.concatenate([x[1:], x[-1:]], axis=0)
    return above, below


def _interleave_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((a.shape[0], a.shape[1] * 2), a.dtype)
    out[:, 0::2] = a
    out[:, 1::2] = b
    return out


def _interleave_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((a.shape[0] * 2, a.shape[1]), a.dtype)
    out[0::2] = a
    out[1::2] = b
    return out


def h2v1_fancy(x: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, 2W): out[2i] = (3x[i] + x[i-1] + 1) >> 2,
    out[2i+1] = (3x[i] + x[i+1] + 2) >> 2."""
    v = x.astype(np.int32)
    left, right = _ext_cols(v)
    return _interleave_cols((3 * v + left + 1) >> 2, (3 * v + right + 2) >> 2).astype(np.uint8)


def h1v2_fancy(x: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (2H, W): out[2j] = (3x[j] + x[j-1] + 1) >> 2,
    out[2j+1] = (3x[j] + x[j+1] + 2) >> 2."""
    v = x.astype(np.int32)
    above, below = _ext_rows(v)
    return _interleave_rows((3 * v + above + 1) >> 2, (3 * v + below + 2) >> 2).astype(np.uint8)


def h2v2_fancy(x: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (2H, 2W): vertical column sums 3*near + far (unrounded), then
    out[2i] = (3c[i] + c[i-1] + 8) >> 4, out[2i+1] = (3c[i] + c[i+1] + 7) >> 4."""
    v = x.astype(np.int32)
    above, below = _ext_rows(v)
    colsum = _interleave_rows(3 * v + above, 3 * v + below)
    left, right = _ext_cols(colsum)
    return _interleave_cols((3 * colsum + left + 8) >> 4,
                            (3 * colsum + right + 7) >> 4).astype(np.uint8)


def replicate(x: np.ndarray, hx: int, vx: int) -> np.ndarray:
    """Box upsampling (h2v1_upsample, h2v2_upsample, int_upsample): repeat samples."""
    return np.repeat(np.repeat(x, vx, axis=0), hx, axis=1)


def upsample(x: np.ndarray, hx: int, vx: int, fancy: bool) -> np.ndarray:
    """Upsample a component plane (its real downsampled size) by (hx, vx) in {1, 2}^2 the way
    libjpeg-turbo picks the method."""
    if hx == 1 and vx == 1:
        return x
    w = x.shape[1]
    if hx == 2 and vx == 1:
        return h2v1_fancy(x) if fancy and w > 2 else replicate(x, 2, 1)
    if hx == 1 and vx == 2:
        return h1v2_fancy(x) if fancy else replicate(x, 1, 2)
    if hx == 2 and vx == 2:
        return h2v2_fancy(x) if fancy and w > 2 else replicate(x, 2, 2)
    return replicate(x, hx, vx)
