"""Every fixed-point format of the datapath, in one place.

The golden model and the RTL both import their widths from here, so they cannot drift apart.
Notation: ``Qi.f`` is a two's-complement number (``UQ`` unsigned) with ``i`` integer bits
(sign included for Q) and ``f`` fraction bits; the raw integer ``r`` stands for ``r / 2**f``.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FixedFormat", "PIXEL", "RESAMPLE_COEF", "RESAMPLE_ACC", "NORM_GAIN", "NORM_BIAS",
           "NORM_VALUE", "RESAMPLE_PRECISION", "normalize_constants", "FORMATS"]


@dataclass(frozen=True)
class FixedFormat:
    name: str
    signed: bool
    int_bits: int
    frac_bits: int
    doc: str

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def fits(self, raw: int) -> bool:
        return self.lo <= raw <= self.hi

    def describe(self) -> dict:
        q = "Q" if self.signed else "UQ"
        return {"name": self.name, "notation": f"{q}{self.int_bits}.{self.frac_bits}",
                "width": self.width, "signed": self.signed, "frac_bits": self.frac_bits,
                "doc": self.doc}


#: Pillow's resampling precision for 8-bit images (``PRECISION_BITS = 32 - 8 - 2``).
RESAMPLE_PRECISION = 22

PIXEL = FixedFormat("PIXEL", False, 8, 0, "8-bit RGB channel value, 0..255")
RESAMPLE_COEF = FixedFormat(
    "RESAMPLE_COEF", True, 2, RESAMPLE_PRECISION,
    "resampling filter tap weight: Pillow's normalized float weight rounded half away from zero "
    "to 22 fraction bits (1.0 = 2**22 needs the second integer bit)")
RESAMPLE_ACC = FixedFormat(
    "RESAMPLE_ACC", True, 10, RESAMPLE_PRECISION,
    "resampling accumulator: 2**21 (rounding) + sum(pixel * weight); the output pixel is "
    "clamp(acc >> 22, 0, 255), exactly Pillow's clip8()")
NORM_GAIN = FixedFormat(
    "NORM_GAIN", True, 8, 32,
    "normalize gain per channel: round(2**32 / (255 * std * scale))")
NORM_BIAS = FixedFormat(
    "NORM_BIAS", True, 16, 32,
    "normalize bias per channel: round(2**32 * (zero_point - mean / (std * scale)))")
NORM_VALUE = FixedFormat(
    "NORM_VALUE", True, 17, 32,
    "normalized value pixel * gain + bias; converted to float16/bfloat16 (round to nearest even, "
    "overflow to inf) or to uint8/int8 (round half to even, saturating)")

FORMATS = (PIXEL, RESAMPLE_COEF, RESAMPLE_ACC, NORM_GAIN, NORM_BIAS, NORM_VALUE)


def _round_half_even(x) -> int:
    from fractions import Fraction
    return round(Fraction(x))


def normalize_constants(spec) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """Per-channel (gain, bias) raw integers for the normalize stage, or None for a raw uint8
    passthrough. ``value = pixel * gain + bias`` in NORM_VALUE.

    Float outputs without [normalize] get ``pixel / 255`` (torchvision ``ToTensor``).
    """
    from .spec import SpecError
    out = spec.output
    if spec.normalize is None and out.dtype == "uint8":
        return None
    mean = spec.normalize.mean if spec.normalize else (0.0, 0.0, 0.0)
    std = spec.normalize.std if spec.normalize else (1.0, 1.0, 1.0)
    scale = out.scale if out.dtype in ("uint8", "int8") else 1.0
    zp = out.zero_point if out.dtype in ("uint8", "int8") else 0
    one = 1 << NORM_GAIN.frac_bits
    gains, biases = [], []
    for c in range(3):
        g = _round_half_even(one / (255.0 * std[c] * scale))
        b = _round_half_even(one * (zp - mean[c] / (std[c] * scale)))
        if not NORM_GAIN.fits(g):
            raise SpecError(f"normalize.std[{c}]", std[c],
                            f"with scale {scale} the gain 1/(255*std*scale) = "
                            f"{1 / (255 * std[c] * scale):.4g} overflows {NORM_GAIN.name} "
                            f"(|gain| < {2 ** (NORM_GAIN.int_bits - 1)})")
        if not NORM_BIAS.fits(b):
            raise SpecError(f"normalize.mean[{c}]", mean[c],
                            f"the bias -mean/(std*scale) overflows {NORM_BIAS.name} "
                            f"(|bias| < {2 ** (NORM_BIAS.int_bits - 1)})")
        # The largest |value| must fit NORM_VALUE: both ends of the pixel range.
        for p in (0, 255):
            if not NORM_VALUE.fits(p * g + b):
                raise SpecError(f"normalize.std[{c}]", std[c],
                                f"normalized values overflow {NORM_VALUE.name}")
        gains.append(g)
        biases.append(b)
    return tuple(gains), tuple(biases)
