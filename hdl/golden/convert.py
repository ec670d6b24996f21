"""Golden output conversion: NORM_VALUE raw integers to the tensor's element type.

Every function takes int64 arrays of NORM_VALUE raw values (``value = raw / 2**32``) and uses
integer operations only (leading-one position, shift, guard/sticky), the same steps the RTL
(:mod:`hdl.rtl.convert`) takes, so there is no floating-point rounding to trust anywhere.

* float16 / bfloat16: round to nearest, ties to even, of the exact rational ``raw / 2**32``;
  IEEE semantics: subnormals, overflow to ±inf, zero is +0 (a raw integer has no -0).
* uint8 / int8: round half to even, then saturate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import NORM_VALUE

__all__ = ["FloatFormat", "FLOAT16", "BFLOAT16", "INT_RANGES", "DTYPES", "element_bits",
           "to_float_bits", "to_float16_bits", "to_bfloat16_bits", "to_int", "convert"]

FRAC_BITS = NORM_VALUE.frac_bits


@dataclass(frozen=True)
class FloatFormat:
    """A binary IEEE-style format: sign, ``exp_bits`` biased exponent, ``man_bits`` fraction."""
    name: str
    exp_bits: int
    man_bits: int

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def inf_bits(self) -> int:
        """+inf; also the first magnitude pattern that is not finite."""
        return ((1 << self.exp_bits) - 1) << self.man_bits

    def shift(self, lead: int, frac_bits: int = FRAC_BITS) -> int:
        """Right shift of the raw magnitude whose leading one is bit ``lead`` that leaves
        ``man_bits`` fraction bits. Below the normal range the quantum stays the subnormal one
        (2**(emin - man_bits)), which is what makes subnormals fall out with no special case.
        Negative means an exact left shift."""
        emin = 1 - self.bias
        return max(lead, emin + frac_bits) - self.man_bits

    def exp_base(self, lead: int, frac_bits: int = FRAC_BITS) -> int:
        """Biased exponent minus one for a leading one at bit ``lead`` (0 for subnormals).

        The rounded significand ``q`` carries the implicit one at bit ``man_bits``, so
        ``(exp_base << man_bits) + q`` is the encoding, and a rounding carry out of ``q`` bumps
        the exponent (up to inf) by itself."""
        return max(lead - frac_bits + self.bias, 1) - 1


FLOAT16 = FloatFormat("float16", 5, 10)
BFLOAT16 = FloatFormat("bfloat16", 8, 7)
INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}
DTYPES = ("float16", "bfloat16", "uint8", "int8")


def element_bits(dtype: str) -> int:
    """Width of one output element's bit pattern."""
    if dtype in ("float16", "bfloat16"):
        return 16
    if dtype in INT_RANGES:
        return 8
    raise ValueError(f"unknown output dtype {dtype!r}; expected one of {DTYPES}")


def _as_raw(raw) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.int64)
    if raw.size and (raw.min() < NORM_VALUE.lo or raw.max() > NORM_VALUE.hi):
        raise ValueError(f"raw values outside {NORM_VALUE.name} "
                         f"[{NORM_VALUE.lo}, {NORM_VALUE.hi}]")
    return raw


def _bit_length(x: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each non-negative int64, by binary search on shifts."""
    x = x.copy()
    n = np.zeros_like(x)
    for sh in (32, 16, 8, 4, 2, 1):
        big = x >= (np.int64(1) << sh)
        n += np.where(big, sh, 0)
        x = np.where(big, x >> sh, x)
    return n + (x > 0)


def _shift_rne(mag: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``round_half_even(mag / 2**shift)`` for non-negative ``mag < 2**62``; any shift."""
    right = np.clip(shift, 0, 62)  # past 62 every mag < 2**61 rounds to 0 just the same
    left = np.clip(-shift, 0, 62)
    q = mag >> right
    rem = mag - (q << right)
    half = (np.int64(1) << right) >> 1
    up = (right > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    return (q + up) << left


def to_float_bits(raw, fmt: FloatFormat, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Bit patterns (uint16 up to 16 bits wide, else uint32/uint64) of ``raw / 2**frac_bits``
    rounded to nearest even in ``fmt``."""
    raw = np.asarray(raw, dtype=np.int64)
    sign = (raw < 0).astype(np.int64)
    mag = np.abs(raw)
    lead = _bit_length(mag) - 1  # -1 for zero
    # Per-lead constants as tables indexed by lead + 1 (lead is -1..62 for int64).
    leads = range(-1, 63)
    shift = np.array([fmt.shift(p, frac_bits) for p in leads], np.int64)
    base = np.array([fmt.exp_base(p, frac_bits) if p >= 0 else 0 for p in leads], np.int64)
    q = _shift_rne(mag, shift[lead + 1])
    exp = base[lead + 1]
    bits = np.minimum((exp << fmt.man_bits) + q, fmt.inf_bits)
    bits |= sign << (fmt.width - 1)
    out = np.uint16 if fmt.width <= 16 else (np.uint32 if fmt.width <= 32 else np.uint64)
    return bits.astype(out)


def to_float16_bits(raw) -> np.ndarray:
    """IEEE binary16 bit patterns (uint16) of NORM_VALUE raw values."""
    return to_float_bits(_as_raw(raw), FLOAT16)


def to_bfloat16_bits(raw) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of NORM_VALUE raw values, rounded to nearest even
    (not truncated from float32)."""
    return to_float_bits(_as_raw(raw), BFLOAT16)


def to_int(raw, lo: int, hi: int, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """``clamp(round_half_even(raw / 2**frac_bits), lo, hi)`` as int64."""
    raw = np.asarray(raw, dtype=np.int64)
    q = raw >> frac_bits  # floor, so the fraction below is never negative
    rem = raw & ((1 << frac_bits) - 1)
    half = 1 << (frac_bits - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return np.clip(q + up, lo, hi)


def convert(raw, dtype: str) -> np.ndarray:
    """NORM_VALUE raw values to the tensor's elements, shape kept: np.float16 for float16,
    uint16 bit patterns for bfloat16 (numpy has no bfloat16), np.uint8 / np.int8."""
    raw = _as_raw(raw)
    if dtype == "float16":
        return to_float16_bits(raw).view(np.float16)
    if dtype == "bfloat16":
        return to_bfloat16_bits(raw)
    if dtype in INT_RANGES:
        lo, hi = INT_RANGES[dtype]
        return to_int(raw, lo, hi).astype(np.dtype(dtype))
    raise ValueError(f"unknown output dtype {dtype!r}; expected one of {DTYPES}")
