"""Golden resize: Pillow's two-pass fixed-point resampling, horizontal pass first, computed from
the per-output windows in :mod:`hdl.resample` (the RTL runs the step schedules derived from the
same windows, so the two are independent routes to the same numbers)."""
from __future__ import annotations

import numpy as np

from ..fixedpoint import RESAMPLE_PRECISION
from ..resample import filter_windows

__all__ = ["resample_axis", "resize_crop"]

_BIAS = 1 << (RESAMPLE_PRECISION - 1)


def resample_axis(img: np.ndarray, axis: int, out_size: int, first: int, count: int) -> np.ndarray:
    """Outputs ``first..first+count-1`` of resampling uint8 ``img`` along ``axis`` to ``out_size``."""
    src = np.moveaxis(img, axis, 0).astype(np.int64)
    win = filter_windows(src.shape[0], out_size, first, count)
    acc = np.full((count,) + src.shape[1:], _BIAS, np.int64)
    extra = (1,) * (src.ndim - 1)
    for t in range(win.weights.shape[1]):
        active = win.ntaps > t
        if not active.any():
            break
        idx = np.where(active, win.start + t, 0)
        w = np.where(active, win.weights[:, t], 0).reshape((-1,) + extra)
        acc += src[idx] * w
    out = np.clip(acc >> RESAMPLE_PRECISION, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize_crop(img: np.ndarray, resized_w: int, resized_h: int,
                crop: tuple[int, int, int, int]) -> np.ndarray:
    """Resize HxWx3 uint8 to ``resized_w x resized_h`` and return only the crop window
    ``(x, y, w, h)``: exactly ``Image.resize(BILINEAR).crop(...)``."""
    x, y, w, h = crop
    tmp = resample_axis(img, 1, resized_w, x, w)
    return resample_axis(tmp, 0, resized_h, y, h)


def pillow_horizontal_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether Pillow's resize runs the horizontal pass first, as this model always does.

    Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    pixels as the width (python-pillow/Pillow#9549); the intermediate rounding then differs and
    Pillow's result can be one step away from ours. Earlier Pillows always go horizontal first.
    """
    import PIL
    if int(PIL.__version__.split(".")[0]) < 13:
        return True
    return not (in_h > out_h and (in_h - out_h) > 2 * (in_w - out_w))
