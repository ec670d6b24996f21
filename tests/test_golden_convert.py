"""The golden output conversion (hdl/golden/convert.py) against exact references: numpy's own
float64 -> float16 rounding, Fraction-based round-to-nearest-even, Python's ``round``."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.fixedpoint import NORM_VALUE
from hdl.golden.convert import (BFLOAT16, DTYPES, FLOAT16, FloatFormat, convert, to_bfloat16_bits,
                                to_float16_bits, to_int)

FRAC = NORM_VALUE.frac_bits
LO, HI = NORM_VALUE.lo, NORM_VALUE.hi


# --- exact references ------------------------------------------------------------------------

def ref_float_bits(raw: int, fmt: FloatFormat) -> int:
    """RNE of the rational raw / 2**FRAC into ``fmt``, by Fractions and textbook IEEE rules."""
    x = Fraction(raw, 1 << FRAC)
    sign = int(x < 0) << (fmt.width - 1)
    a = abs(x)
    if a == 0:
        return 0
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1  # now 2**e <= a < 2**(e + 1)
    e = max(e, 1 - fmt.bias)  # subnormals share emin's quantum
    q = round(a / Fraction(2) ** (e - fmt.man_bits))  # Fraction.__round__ is half-to-even
    if q == 1 << (fmt.man_bits + 1):
        q, e = q >> 1, e + 1
    if e > fmt.bias:
        return sign | fmt.inf_bits
    if q < 1 << fmt.man_bits:
        return sign | q  # subnormal
    return sign | ((e + fmt.bias) << fmt.man_bits) | (q - (1 << fmt.man_bits))


def ref_int(raw: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(Fraction(raw, 1 << FRAC))))


# --- strategies ------------------------------------------------------------------------------

def _ties(fmt: FloatFormat):
    """Exact halfway points between neighbours in ``fmt``, and one raw step either side."""
    def build(lead: int, bits: int, nudge: int, neg: bool) -> int:
        s = max(fmt.shift(lead), 1)
        m = (1 << lead) | (bits & ((1 << lead) - 1))
        v = ((m >> s) << s) | (1 << (s - 1))
        v = -v + nudge if neg else v + nudge
        return min(max(v, LO), HI)
    return st.builds(build, st.integers(0, 48), st.integers(0, (1 << 48) - 1),
                     st.integers(-1, 1), st.booleans())


int_ties = st.builds(lambda k, nudge: (k << FRAC) + (1 << (FRAC - 1)) + nudge,
                     st.integers(-300, 300), st.integers(-1, 1))
raws = st.one_of(
    st.integers(LO, HI),
    st.integers(-(1 << 20), 1 << 20),                        # zero, tiny, float16 subnormals
    st.integers(-(1 << 48), -(65504 << FRAC)), st.integers(65504 << FRAC, HI),  # f16 overflow
    st.builds(lambda e, b: b >> (48 - e), st.integers(0, 48), st.integers(LO, HI)),  # log-unif.
    _ties(FLOAT16), _ties(BFLOAT16), int_ties,
)
batches = st.lists(raws, min_size=1, max_size=32)


# --- float16 ---------------------------------------------------------------------------------

@settings(max_examples=400)
@given(batches)
def test_float16_matches_numpy(rs):
    raw = np.array(rs, np.int64)
    # Exact: |raw| < 2**53, and dividing by a power of two only moves the exponent.
    with np.errstate(over="ignore"):  # overflow to inf is the point
        want = (raw.astype(np.float64) / 2.0 ** FRAC).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(to_float16_bits(raw), want)


@settings(max_examples=400)
@given(batches)
def test_float16_matches_fraction(rs):
    got = to_float16_bits(np.array(rs, np.int64))
    assert got.tolist() == [ref_float_bits(r, FLOAT16) for r in rs]


def test_float16_every_representable_value_and_midpoint():
    """Every finite float16 >= 2**-24 is a raw integer: it must come back as itself, and the
    midpoint to the next one must go to the even neighbour."""
    bits = np.arange(0x7C00, dtype=np.uint16)  # +0 .. max finite
    raw = (bits.view(np.float16).astype(np.float64) * 2.0 ** FRAC).astype(np.int64)
    np.testing.assert_array_equal(to_float16_bits(raw), bits)
    np.testing.assert_array_equal(to_float16_bits(-raw[1:]), bits[1:] | 0x8000)
    mid = (raw[:-1] + raw[1:]) // 2  # even gaps (2**8 and up), so exact
    even = np.where(bits[:-1] % 2 == 0, bits[:-1], bits[1:])
    np.testing.assert_array_equal(to_float16_bits(mid), even)
    np.testing.assert_array_equal(to_float16_bits(mid - 1), bits[:-1])
    np.testing.assert_array_equal(to_float16_bits(mid + 1), bits[1:])


def test_float16_edges():
    f = lambda r: int(to_float16_bits(np.array([r]))[0])  # noqa: E731
    assert f(0) == 0x0000                            # zero is +0
    assert f(-1) == 0x8000                           # a negative underflow keeps its sign
    assert f(1 << 7) == 0x0000                       # half the least subnormal: ties to 0
    assert f((1 << 7) + 1) == 0x0001
    assert f(3 << 7) == 0x0002                       # 1.5 ulp ties to even
    assert f((65520 << FRAC) - 1) == 0x7BFF          # just below the overflow midpoint
    assert f(65520 << FRAC) == 0x7C00                # the midpoint ties to even: inf
    assert f(HI) == 0x7C00 and f(LO) == 0xFC00


# --- bfloat16 --------------------------------------------------------------------------------

@settings(max_examples=400)
@given(batches)
def test_bfloat16_matches_fraction(rs):
    got = to_bfloat16_bits(np.array(rs, np.int64))
    assert got.tolist() == [ref_float_bits(r, BFLOAT16) for r in rs]


@settings(max_examples=200)
@given(st.lists(st.builds(lambda m, e: m << e, st.integers(-(1 << 24), 1 << 24),
                          st.integers(0, 24)).filter(lambda r: LO <= r <= HI),
                min_size=1, max_size=32))
def test_bfloat16_matches_float32_rounding(rs):
    """Where raw / 2**32 is exact in float32, the usual float32 -> bfloat16 RNE trick applies."""
    raw = np.array(rs, np.int64)
    f32 = (raw.astype(np.float64) / 2.0 ** FRAC).astype(np.float32).view(np.uint32)
    f32 = f32.astype(np.uint64)
    want = ((f32 + 0x7FFF + ((f32 >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(to_bfloat16_bits(raw), want)


def test_bfloat16_every_representable_value():
    """Every positive bfloat16 in [2**-25, 2**16) (ulp >= 2**-32) is a raw integer."""
    bits = np.arange((127 - 25) << 7, (127 + 16) << 7, dtype=np.uint32)
    raw = (bits << 16).view(np.float32).astype(np.float64) * 2.0 ** FRAC
    raw = raw.astype(np.int64)
    np.testing.assert_array_equal(to_bfloat16_bits(raw), bits.astype(np.uint16))
    np.testing.assert_array_equal(to_bfloat16_bits(-raw), bits.astype(np.uint16) | 0x8000)


# --- integers --------------------------------------------------------------------------------

@settings(max_examples=300)
@given(batches)
def test_int_matches_round_and_clamp(rs):
    raw = np.array(rs, np.int64)
    for lo, hi in ((0, 255), (-128, 127)):
        assert to_int(raw, lo, hi).tolist() == [ref_int(r, lo, hi) for r in rs]


def test_int_ties_to_even():
    half = 1 << (FRAC - 1)
    raw = np.array([half, 3 * half, 5 * half, -half, -3 * half, (255 << FRAC) + half,
                    (127 << FRAC) + half, -(128 << FRAC) - half])
    assert to_int(raw, -10**6, 10**6).tolist() == [0, 2, 2, 0, -2, 256, 128, -128]
    assert convert(raw, "uint8").tolist() == [0, 2, 2, 0, 0, 255, 128, 0]
    assert convert(raw, "int8").tolist() == [0, 2, 2, 0, -2, 127, 127, -128]


# --- convert() -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,np_dtype", [("float16", np.float16), ("bfloat16", np.uint16),
                                            ("uint8", np.uint8), ("int8", np.int8)])
def test_convert_types_and_shape(dtype, np_dtype):
    raw = np.random.default_rng(0).integers(LO, HI, (4, 5, 3), endpoint=True)
    out = convert(raw, dtype)
    assert out.dtype == np_dtype and out.shape == raw.shape
    assert DTYPES == ("float16", "bfloat16", "uint8", "int8")


def test_convert_rejects_bad_input():
    with pytest.raises(ValueError):
        convert(np.array([HI + 1]), "float16")
    with pytest.raises(ValueError):
        convert(np.array([0]), "float32")
