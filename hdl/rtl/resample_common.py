"""Pieces shared by the horizontal and vertical resample units."""
from __future__ import annotations

from amaranth import Mux, Const, signed
from amaranth.lib import memory

from ..fixedpoint import RESAMPLE_ACC, RESAMPLE_PRECISION
from .layouts import StepLayout

#: Pillow's rounding bias: the accumulator starts at one half of an output step.
BIAS = 1 << (RESAMPLE_PRECISION - 1)
ACC = signed(RESAMPLE_ACC.width)


def clip8(acc):
    """Pillow's clip8(): ``clamp(acc >> 22, 0, 255)`` for a RESAMPLE_ACC value."""
    v = acc >> RESAMPLE_PRECISION
    return Mux(v < 0, 0, Mux(v > 255, 255, v[:8]))


def step_table(depth: int) -> memory.Memory:
    return memory.Memory(shape=StepLayout, depth=depth, init=[])
