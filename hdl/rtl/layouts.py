"""Stream payload layouts shared by the pipeline's components."""
from __future__ import annotations

from amaranth import unsigned, signed
from amaranth.lib import data

from ..fixedpoint import NORM_VALUE, RESAMPLE_COEF
from ..resample import LANES, STEP_FIELDS

#: One RGB pixel, 8 bits per channel, R in the low byte.
Pixel = data.ArrayLayout(unsigned(8), 3)

#: A pixel with the end-of-image mark: the core's ``pix`` input.
PixelIn = data.StructLayout({"rgb": Pixel, "last": unsigned(1)})

#: Normalized values (NORM_VALUE raw) of one pixel.
NormPixel = data.ArrayLayout(signed(NORM_VALUE.width), 3)

#: Where an output pixel goes: element ``c`` lands at ``offset + c * channel_stride``.
Tag = data.StructLayout({"offset": unsigned(32), "last": unsigned(1)})


def step_layout() -> data.StructLayout:
    """One schedule step as stored in a resample unit's table (see hdl.resample.STEP_FIELDS)."""
    fields = {}
    for name, width in STEP_FIELDS:
        if name.startswith("w"):
            fields[name] = signed(width)
        else:
            fields[name] = unsigned(width)
    return data.StructLayout(fields)


StepLayout = step_layout()
assert StepLayout.size == sum(w for _, w in STEP_FIELDS)
assert RESAMPLE_COEF.signed and LANES == 3


def tensor_beat(element_bits: int) -> data.StructLayout:
    """The core's ``out`` payload: the tag's offset, three elements, then ``last``."""
    return data.StructLayout({"offset": unsigned(32),
                              "data": data.ArrayLayout(unsigned(element_bits), 3),
                              "last": unsigned(1)})
