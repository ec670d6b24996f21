"""Resampling weights and the hardware's step schedules, computed on the host per image size.

Weights follow Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` (antialiased triangle
filter, double precision, then rounded to RESAMPLE_COEF), so the datapath reproduces
``Image.resize(..., Image.BILINEAR)`` bit for bit. Computing them here keeps every division out of
the hardware; the hardware gets them as a table of *steps*.

A schedule is what one resample unit (horizontal: per pixel; vertical: per row) executes for
one line of its axis. Two modes:

- ``SCATTER`` (downscale, ratio >= 1): one step per input sample. Up to ``LANES`` outputs are open
  at once; output ``o`` accumulates in lane ``o % LANES``. Each step adds ``w[l] * sample`` to
  every lane ``l``, ``init`` bits restart a lane at the rounding bias, and ``emit`` hands out the
  finished lane ``lane``. The cost per input sample is constant whatever the ratio.
- ``GATHER`` (upscale, ratio < 1): a window of the last 3 input samples; a step optionally
  consumes one more sample (``adv``) and, if ``emit``, outputs ``bias + sum(w[j] * window[j])``
  (``window[2]`` is the newest sample).

Outputs outside the crop window are simply never emitted, so the crop costs nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .fixedpoint import RESAMPLE_COEF, RESAMPLE_PRECISION

__all__ = ["Windows", "filter_windows", "Schedule", "build_schedule", "LANES", "SCATTER", "GATHER",
           "STEP_FIELDS"]

LANES = 3
SCATTER, GATHER = 0, 1

#: Field layout of one schedule step in the hardware's table (LSB first): name, width.
STEP_FIELDS = (("adv", 1), ("emit", 1), ("lane", 2), ("init", LANES),
               ("w0", RESAMPLE_COEF.width), ("w1", RESAMPLE_COEF.width),
               ("w2", RESAMPLE_COEF.width))


def _triangle(x: float) -> float:
    if x < 0.0:
        x = -x
    return 1.0 - x if x < 1.0 else 0.0


@dataclass(frozen=True)
class Windows:
    """For each kept output ``o`` (``first .. first+count-1``): its first input tap ``start[i]``
    and its integer weights ``weights[i, :ntaps[i]]`` (RESAMPLE_COEF raw)."""
    in_size: int
    out_size: int
    first: int
    start: np.ndarray     # int64 [n]
    ntaps: np.ndarray     # int64 [n]
    weights: np.ndarray   # int64 [n, ksize]

    @property
    def ratio(self) -> float:
        return self.in_size / self.out_size


@lru_cache(maxsize=256)
def filter_windows(in_size: int, out_size: int, first: int = 0, count: int | None = None) -> Windows:
    """Pillow's per-output windows and 8-bit integer weights for outputs ``first..first+count``.

    Zero weights at either end of a window are trimmed: adding ``0 * pixel`` changes nothing, and
    trimming keeps at most LANES downscale windows open at any input sample.
    """
    if count is None:
        count = out_size - first
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    one = 1 << RESAMPLE_PRECISION
    starts = np.zeros(count, np.int64)
    ntaps = np.zeros(count, np.int64)
    weights = np.zeros((count, ksize), np.int64)
    ss = 1.0 / filterscale
    for i in range(count):
        xx = first + i
        center = (xx + 0.5) * scale
        xmin = int(center - support + 0.5)
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        xmax -= xmin
        ws = []
        ww = 0.0
        for x in range(xmax):
            w = _triangle((x + xmin - center + 0.5) * ss)
            ws.append(w)
            ww += w
        ks = []
        for w in ws:
            if ww != 0.0:
                w = w / ww
            # normalize_coeffs_8bpc: C's (int) truncates toward zero after +-0.5.
            ks.append(int(-0.5 + w * one) if w < 0 else int(0.5 + w * one))
        lo, hi = 0, len(ks)
        while hi > lo + 1 and ks[hi - 1] == 0:
            hi -= 1
        while lo < hi - 1 and ks[lo] == 0:
            lo += 1
        ks = ks[lo:hi]
        starts[i] = xmin + lo
        ntaps[i] = len(ks)
        weights[i, :len(ks)] = ks
    for k in weights.flat:
        assert RESAMPLE_COEF.fits(int(k))
    return Windows(in_size, out_size, first, starts, ntaps, weights)


@dataclass(frozen=True)
class Schedule:
    mode: int
    steps: np.ndarray   # structured array with STEP_FIELDS names (int64 each)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def consumed(self) -> int:
        return int(self.steps["adv"].sum())

    @property
    def emitted(self) -> int:
        return int(self.steps["emit"].sum())

    def pack(self) -> np.ndarray:
        """Each step as one integer bit field (LSB first per STEP_FIELDS), split into 32-bit words
        (3 per step, little-endian)."""
        bits = 0
        packed = []
        for row in self.steps:
            bits, off = 0, 0
            for name, width in STEP_FIELDS:
                bits |= (int(row[name]) & ((1 << width) - 1)) << off
                off += width
            packed.append(bits)
        out = np.zeros((len(packed), STEP_WORDS), np.uint32)
        for i, b in enumerate(packed):
            for j in range(STEP_WORDS):
                out[i, j] = (b >> (32 * j)) & 0xFFFFFFFF
        return out.reshape(-1)


STEP_BITS = sum(w for _, w in STEP_FIELDS)
STEP_WORDS = (STEP_BITS + 31) // 32
_DTYPE = np.dtype([(name, np.int64) for name, _ in STEP_FIELDS])


class ScheduleError(ValueError):
    pass


@lru_cache(maxsize=256)
def build_schedule(in_size: int, out_size: int, first: int, count: int) -> Schedule:
    """The step table that turns ``in_size`` samples into outputs ``first..first+count-1``."""
    win = filter_windows(in_size, out_size, first, count)
    if in_size >= out_size:
        return _scatter(win)
    return _gather(win)


def _scatter(win: Windows) -> Schedule:
    n_in = win.in_size
    steps = np.zeros(n_in, _DTYPE)
    steps["adv"] = 1
    ends = win.start + win.ntaps - 1
    open_count = np.zeros(n_in, np.int64)
    for i in range(len(win.start)):
        lane = (win.first + i) % LANES
        s, n = int(win.start[i]), int(win.ntaps[i])
        open_count[s:s + n] += 1
        steps[f"init"][s] |= 1 << lane
        for t in range(n):
            steps[f"w{lane}"][s + t] = win.weights[i, t]
        e = int(ends[i])
        if steps["emit"][e]:
            raise ScheduleError(f"two outputs finish at input {e} ({win.in_size}->{win.out_size})")
        steps["emit"][e] = 1
        steps["lane"][e] = lane
    if open_count.max(initial=0) > LANES:
        raise ScheduleError(f"{win.in_size}->{win.out_size} needs {open_count.max()} lanes")
    return Schedule(SCATTER, steps)


def _gather(win: Windows) -> Schedule:
    rows = []
    consumed = 0  # samples consumed so far; window[2] is sample consumed-1
    for i in range(len(win.start)):
        s, n = int(win.start[i]), int(win.ntaps[i])
        last = s + n - 1
        if n > 3:
            raise ScheduleError(f"upscale window of {n} taps ({win.in_size}->{win.out_size})")
        while consumed < last:  # advance until the newest needed sample is one step away
            rows.append((1, 0, 0, 0, 0, 0, 0))
            consumed += 1
        adv = 0
        if consumed == last:
            adv = 1
            consumed += 1
        w = [0, 0, 0]
        for t in range(n):
            j = (s + t) - (consumed - 3)   # position inside the window
            if not 0 <= j <= 2:
                raise ScheduleError("upscale window left the 3-sample buffer")
            w[j] = int(win.weights[i, t])
        rows.append((adv, 1, 0, 0, *w))
    while consumed < win.in_size:
        rows.append((1, 0, 0, 0, 0, 0, 0))
        consumed += 1
    steps = np.array(rows, _DTYPE) if rows else np.zeros(0, _DTYPE)
    return Schedule(GATHER, steps)
