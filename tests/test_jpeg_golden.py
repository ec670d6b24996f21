"""The JPEG decoder's golden model (hdl.jpeg) against Pillow (libjpeg-turbo, islow IDCT, fancy
upsampling): bit-identical on every supported stream, a JpegError with a status code on every
unsupported or corrupt one."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from hdl.jpeg import (STATUS_MESSAGES, JpegError, JpegStatus, decode, decode_status,
                      output_size, read_header)
from hdl.jpeg.color import ycc_to_rgb
from hdl.jpeg.huffman import build_lut, entropy_decode
from hdl.jpeg.idct import dequantize, idct_1x1, idct_2x2, idct_4x4, idct_islow
from hdl.jpeg.markers import STD_HUFFMAN, ZIGZAG, parse_header, split_entropy_data
from hdl.jpeg.upsample import h1v2_fancy, h2v1_fancy, h2v2_fancy

S = JpegStatus
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "testimages"
SUBSAMPLINGS = ["4:4:4", "4:2:2", "4:2:0", "4:4:0"]


# ---------------------------------------------------------------------------------- helpers


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Photo-like RGB content: smooth gradients, a disc, a bar, edges and noise (seeded)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(x / (w / 3 + 1)) * np.cos(y / (h / 4 + 1)),
                    255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1)], -1)
    img[(x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.2) ** 2] = (250, 30, 60)
    img[int(h * 0.7):int(h * 0.8) + 1, int(w * 0.1):int(w * 0.5) + 1] = (20, 200, 40)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encode(w: int, h: int, sub: str = "4:2:0", seed: int = 0, **kw) -> bytes:
    """A Pillow JPEG of ``photo(w, h)``; ``sub`` may be 4:4:0, which Pillow cannot write: then a
    4:2:2 stream of an h x w image gets its SOF rewritten to w x h with luma factors 1x2 (the MCU
    count is the same, so the entropy data is a valid 4:4:0 scan, its blocks rearranged)."""
    buf = io.BytesIO()
    if sub == "4:4:0":
        photo(h, w, seed).save(buf, "JPEG", subsampling="4:2:2", **kw)
        b = bytearray(buf.getvalue())
        i = b.index(b"\xff\xc0")
        assert b[i + 11] == 0x21
        b[i + 5:i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
        b[i + 11] = 0x12
        return bytes(b)
    img = photo(w, h, seed)
    if sub == "L":
        img.convert("L").save(buf, "JPEG", **kw)
    else:
        img.save(buf, "JPEG", subsampling=sub, **kw)
    return buf.getvalue()


def pillow(b: bytes, denom: int = 1) -> np.ndarray | None:
    """Pillow's decode; for denom > 1 after ``draft`` (None when draft cannot pick 1/denom)."""
    im = Image.open(io.BytesIO(b))
    if denom > 1:
        w, h = im.size
        if w < denom or h < denom:
            return None
        im.draft("RGB", (w // denom, h // denom))
        assert im.size == output_size(w, h, 1 / denom)
    return np.asarray(im.convert("RGB"))


def assert_exact(b: bytes, denom: int = 1) -> int:
    """Our decode == Pillow's; returns 1 if compared, 0 if Pillow cannot decode at that scale."""
    ref = pillow(b, denom)
    if ref is None:
        return 0
    got = decode(b, scale=1 / denom)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    if not np.array_equal(got, ref):
        bad = np.argwhere((got != ref).any(-1))
        pytest.fail(f"{len(bad)} pixels differ, first at {tuple(bad[0])}: "
                    f"{got[tuple(bad[0])]} vs {ref[tuple(bad[0])]}")
    return 1


def status(b: bytes, **kw) -> JpegStatus:
    with pytest.raises(JpegError) as e:
        decode(b, **kw)
    return e.value.code


def segment(b: bytes, code: int) -> tuple[int, int]:
    """(start, end) of the first marker segment FF <code> (start at the FF)."""
    i = b.index(bytes([0xFF, code]))
    return i, i + 2 + int.from_bytes(b[i + 2:i + 4], "big")


# ------------------------------------------------------------------------- shared test images


def shared(name: str) -> bytes:
    from conftest import shared_image
    return shared_image(name).read_bytes()


@pytest.mark.parametrize("name", ["testorig.jpg", "testimgint.jpg"])
@pytest.mark.parametrize("denom", [1, 2, 4, 8])
def test_shared_images_exact(name, denom):
    assert assert_exact(shared(name), denom) == 1


@pytest.mark.parametrize("name,code", [("testimgari.jpg", S.UNSUPPORTED_ARITHMETIC),
                                       ("monkey12.jpg", S.UNSUPPORTED_PRECISION)])
def test_shared_images_rejected(name, code):
    b = shared(name)
    assert status(b) == code
    assert decode_status(b) == (code, None)
    with pytest.raises(JpegError) as e:
        read_header(b)
    assert e.value.code == code


# ------------------------------------------------------------------------- Pillow matrix


@pytest.mark.parametrize("sub", SUBSAMPLINGS)
@pytest.mark.parametrize("quality", [10, 25, 50, 75, 90, 95, 100])
def test_quality_subsampling_matrix(sub, quality):
    assert_exact(encode(83, 61, sub, seed=quality, quality=quality))


@pytest.mark.parametrize("sub", SUBSAMPLINGS + ["L"])
def test_odd_sizes(sub):
    for w, h in [(1, 1), (2, 2), (3, 3), (7, 5), (17, 33), (33, 17), (100, 1), (1, 100),
                 (9, 16), (16, 9), (31, 2), (2, 31)]:
        assert_exact(encode(w, h, sub, seed=w * h, quality=80))


@pytest.mark.parametrize("quality", [20, 75, 100])
def test_grayscale(quality):
    b = encode(97, 71, "L", quality=quality)
    assert read_header(b) == (97, 71, 1, ((1, 1),))
    assert_exact(b)


@pytest.mark.parametrize("sub", SUBSAMPLINGS + ["L"])
@pytest.mark.parametrize("opt", [dict(restart_marker_blocks=1), dict(restart_marker_blocks=5),
                                 dict(restart_marker_rows=1), dict(restart_marker_rows=3)])
def test_restart_intervals(sub, opt):
    b = encode(75, 53, sub, quality=85, **opt)
    assert b"\xff\xdd" in b and b"\xff\xd0" in b
    assert_exact(b)


@pytest.mark.parametrize("sub", SUBSAMPLINGS + ["L"])
def test_optimized_huffman(sub):
    assert_exact(encode(90, 66, sub, quality=90, optimize=True))
    assert_exact(encode(90, 66, sub, quality=60, optimize=True, restart_marker_rows=2))


def test_long_codes_and_extreme_tables(monkeypatch):
    """Optimized tables of a noisy q100 image have codes whose length + magnitude bits exceed
    the 16-bit lookahead (the decoder's second-read path); quantization tables of all 1s / all
    255s give the largest coefficients and IDCT overshoot (range limiting)."""
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "MAXBLOCK", 1 << 23)   # Pillow's optimize buffer guess
    rng = np.random.default_rng(1)
    noisy = np.clip(np.asarray(photo(160, 120)).astype(int)
                    + rng.integers(-40, 41, (120, 160, 3)), 0, 255).astype(np.uint8)
    for sub in ("4:4:4", "4:2:0"):
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=100, optimize=True, subsampling=sub)
        b = buf.getvalue()
        stream = parse_header(b, 8192, 8192)
        long_codes = 0
        for spec in (t for pair in stream.huffman for t in pair):
            lengths = np.repeat(np.arange(1, 17), spec.counts)
            sizes = np.frombuffer(spec.symbols, np.uint8) & (15 if spec.table_class else 255)
            long_codes += int((lengths + sizes > 16).sum())
        assert long_codes > 0            # optimized tables hold only symbols that occur
        for denom in (1, 2, 8):
            assert_exact(b, denom)
    yy, xx = np.mgrid[0:43, 0:61]
    hard = np.zeros((43, 61, 3), np.uint8)
    hard[((yy // 2 + xx // 3) % 2) == 1] = 255
    hard[10:30, 5:40] = (255, 0, 0)
    for qt in ([[1] * 64] * 2, [[255] * 64] * 2, [list(range(1, 65))] * 2):
        for sub in ("4:4:4", "4:2:0"):
            buf = io.BytesIO()
            Image.fromarray(hard).save(buf, "JPEG", qtables=qt, subsampling=sub)
            for denom in (1, 2, 4, 8):
                assert_exact(buf.getvalue(), denom)


@pytest.mark.parametrize("sub", SUBSAMPLINGS + ["L"])
@pytest.mark.parametrize("denom", [2, 4, 8])
def test_scaled_decode_matches_draft(sub, denom):
    compared = 0
    for w, h in [(227, 149), (64, 48), (17, 33), (33, 17), (9, 9), (15, 8), (8, 15), (35, 20)]:
        for q in (30, 92):
            compared += assert_exact(encode(w, h, sub, seed=w + q, quality=q), denom)
    assert compared >= 14
    assert_exact(encode(61, 45, sub, quality=80, restart_marker_blocks=2), denom)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(5, 100), st.sampled_from(SUBSAMPLINGS),
       st.sampled_from([1, 2, 4, 8]), st.integers(0, 2 ** 16))
def test_random_streams_match_pillow(w, h, quality, sub, denom, seed):
    assert_exact(encode(w, h, sub, seed=seed, quality=quality), denom)


def test_metadata_segments_skipped():
    """APPn/COM of any length (multi-segment ICC profile, EXIF, XMP, comment) are skipped."""
    rng = np.random.default_rng(3)
    icc = bytes(rng.integers(0, 256, 150_000, dtype=np.uint8))    # 3 APP2 segments
    b = encode(50, 40, "4:2:0", quality=80, icc_profile=icc, comment=b"\xff\xd9" * 500,
               exif=b"Exif\x00\x00" + bytes(2000), xmp=b"<x>" * 100)
    assert b.count(b"\xff\xe2") >= 3
    assert_exact(b)


def test_header_variants_decode_like_pillow():
    b = encode(57, 43, "4:2:0", quality=80)
    # FF fill bytes before markers
    i, _ = segment(b, 0xDB)
    assert_exact(b[:i] + b"\xff\xff\xff" + b[i:])
    # SOF1 (extended sequential, 8-bit) decodes like SOF0
    i, _ = segment(b, 0xC0)
    assert_exact(b[:i + 1] + b"\xc1" + b[i + 2:])
    # no DHT at all: the Annex K tables are used, as libjpeg-turbo does for Motion-JPEG
    i, j = segment(b, 0xC4)
    nodht = b[:i] + b[j:]
    while b"\xff\xc4" in nodht[:nodht.index(b"\xff\xda")]:
        i, j = segment(nodht, 0xC4)
        nodht = nodht[:i] + nodht[j:]
    assert_exact(nodht)
    # a DHT redefined: the table in effect at SOS wins
    wrong = STD_HUFFMAN[(1, 1)]
    dht = bytes([0xFF, 0xC4]) + (19 + len(wrong.symbols)).to_bytes(2, "big") + bytes(
        [0x00]) + bytes(wrong.counts) + wrong.symbols
    dht = dht[:4] + bytes([0x10]) + dht[5:]       # AC table 0 := the chroma AC table
    i, _ = segment(b, 0xC4)
    assert_exact(b[:i] + dht + b[i:])
    # grayscale with 2x2 sampling factors (one component: one block per MCU regardless)
    g = bytearray(encode(41, 29, "L", quality=70))
    i, _ = segment(bytes(g), 0xC0)
    g[i + 11] = 0x22
    assert_exact(bytes(g))
    # data after EOI is ignored
    assert_exact(b + b"trailing garbage \xff\xd8")


@pytest.mark.parametrize("sub,sampling", [("4:4:4", ((1, 1), (1, 1), (1, 1))),
                                          ("4:2:2", ((2, 1), (1, 1), (1, 1))),
                                          ("4:2:0", ((2, 2), (1, 1), (1, 1))),
                                          ("4:4:0", ((1, 2), (1, 1), (1, 1)))])
def test_read_header(sub, sampling):
    b = encode(123, 45, sub)
    assert read_header(b) == (123, 45, 3, sampling)
    i, _ = segment(b, 0xC0)
    assert read_header(b[:i + 19]) == (123, 45, 3, sampling)   # nothing after SOF needed
    assert output_size(123, 45, 1 / 8) == (16, 6)


# ------------------------------------------------------------------------- unsupported


def test_progressive_rejected():
    b = encode(40, 30, "4:2:0", progressive=True)
    assert status(b) == S.UNSUPPORTED_PROGRESSIVE
    assert "baseline" in STATUS_MESSAGES[S.UNSUPPORTED_PROGRESSIVE]


def test_cmyk_and_rgb_rejected():
    buf = io.BytesIO()
    photo(40, 30).convert("CMYK").save(buf, "JPEG")
    assert status(buf.getvalue()) == S.UNSUPPORTED_COMPONENTS
    buf = io.BytesIO()
    photo(40, 30).save(buf, "JPEG", keep_rgb=True)        # Adobe transform 0: RGB coded
    assert status(buf.getvalue()) == S.UNSUPPORTED_COMPONENTS


def _with_sof(b: bytes, **edit) -> bytes:
    bb = bytearray(b)
    i, _ = segment(b, 0xC0)
    for off, val in edit.get("bytes", {}).items():
        bb[i + off] = val
    return bytes(bb)


@pytest.mark.parametrize("marker,code", [(0xC2, S.UNSUPPORTED_PROGRESSIVE),
                                         (0xC6, S.UNSUPPORTED_PROGRESSIVE),
                                         (0xCA, S.UNSUPPORTED_PROGRESSIVE),
                                         (0xC3, S.UNSUPPORTED_LOSSLESS),
                                         (0xC7, S.UNSUPPORTED_LOSSLESS),
                                         (0xCB, S.UNSUPPORTED_LOSSLESS),
                                         (0xCF, S.UNSUPPORTED_LOSSLESS),
                                         (0xC9, S.UNSUPPORTED_ARITHMETIC),
                                         (0xCD, S.UNSUPPORTED_ARITHMETIC)])
def test_other_sof_types_rejected(marker, code):
    b = _with_sof(encode(24, 16), bytes={1: marker})
    assert status(b) == code
    with pytest.raises(JpegError) as e:
        read_header(b)
    assert e.value.code == code


def test_sof_content_rejected():
    b = encode(40, 30, "4:2:0")
    assert status(_with_sof(b, bytes={4: 12})) == S.UNSUPPORTED_PRECISION
    i, _ = segment(b, 0xC0)
    assert status(b[:i + 1] + b"\xc1" + b[i + 2:i + 4] + b"\x0c" + b[i + 5:]) == \
        S.UNSUPPORTED_PRECISION
    assert status(_with_sof(b, bytes={11: 0x41})) == S.UNSUPPORTED_SAMPLING    # 4:1:1
    assert status(_with_sof(b, bytes={11: 0x23})) == S.UNSUPPORTED_SAMPLING
    assert status(_with_sof(b, bytes={14: 0x21})) == S.UNSUPPORTED_SAMPLING    # chroma 2x1
    assert status(_with_sof(b, bytes={5: 0, 6: 0})) == S.BAD_DIMENSIONS       # DNL height
    assert status(_with_sof(b, bytes={7: 0, 8: 0})) == S.BAD_DIMENSIONS
    assert status(b, max_width=39) == S.BAD_DIMENSIONS
    assert status(b, max_height=29) == S.BAD_DIMENSIONS
    decode(b, max_width=40, max_height=30)
    # 2 and 4 components (SOF rewritten; the header alone decides)
    sof2 = bytes([0xFF, 0xD8, 0xFF, 0xC0, 0, 14, 8, 0, 16, 0, 16, 2, 1, 0x11, 0, 2, 0x11, 0])
    assert status(sof2) == S.UNSUPPORTED_COMPONENTS
    sof4 = bytes([0xFF, 0xD8, 0xFF, 0xC0, 0, 20, 8, 0, 16, 0, 16, 4]) + bytes(
        [1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0])
    assert status(sof4) == S.UNSUPPORTED_COMPONENTS


def test_16bit_quant_table_rejected():
    buf = io.BytesIO()
    photo(24, 16).save(buf, "JPEG", qtables=[[300] * 64])      # Pillow writes Pq=1 (SOF1)
    assert status(buf.getvalue()) == S.UNSUPPORTED_PRECISION
    b = encode(24, 16, "4:4:4")
    i, j = segment(b, 0xDB)
    q16 = b"\xff\xdb\x00\x83\x10" + bytes(range(1, 129))       # Pq=1, table 0, 64 x 16 bits
    assert status(b[:i] + q16 + b[i:]) == S.UNSUPPORTED_PRECISION


def test_multi_scan_rejected():
    b = encode(40, 30, "4:2:0")
    i, j = segment(b, 0xDA)
    # first SOS holds only the luma component (a non-interleaved sequential file)
    sos1 = b"\xff\xda\x00\x08\x01" + b[i + 5:i + 7] + b"\x00\x3f\x00"
    assert status(b[:i] + sos1 + b[j:]) == S.MULTI_SCAN
    # a second SOS after the first scan
    assert status(b[:-2] + b[i:j] + b"\x00\x00\xff\xd9") == S.MULTI_SCAN


def test_missing_tables_rejected():
    b = encode(40, 30, "4:2:0")
    i, j = segment(b, 0xDA)
    sos = bytearray(b[i:j])
    sos[6] = 0x22                       # component 1: DC table 2, AC table 2 (never defined)
    assert status(b[:i] + bytes(sos) + b[j:]) == S.BAD_TABLE
    assert status(_with_sof(b, bytes={12: 3})) == S.BAD_TABLE       # quant table 3 missing
    i, j = segment(b, 0xDB)
    assert status(b[:i] + b"\xff\xdb\x00\x10" + b[i + 4:]) == S.BAD_TABLE   # length too short
    k = b.index(b"\xff\xc4")
    bad = bytearray(b)
    bad[k + 5:k + 7] = b"\x03\x00"      # 3 codes of length 1: the code space overflows
    assert status(bytes(bad)) == S.BAD_TABLE


def test_structure_errors():
    b = encode(40, 30, "4:2:0")
    assert status(b"") == S.NOT_JPEG
    assert status(b"GIF89a" + b) == S.NOT_JPEG
    assert status(b[:2] + b"\xff\xd9") == S.BAD_HEADER        # EOI before any frame
    assert status(b[:-2]) == S.MISSING_EOI
    assert status(b[:-1]) == S.MISSING_EOI
    i, _ = segment(b, 0xDB)
    assert status(b[:i] + b"\x00garbage" + b[i:]) == S.BAD_MARKER
    assert status(b[:i] + b"\xff\xd0" + b[i:]) == S.BAD_MARKER      # RST outside the scan
    assert status(b[:i] + b"\xff\xd8" + b[i:]) == S.BAD_MARKER      # second SOI
    i, _ = segment(b, 0xDA)
    assert status(b[:i] + b[b.index(b"\xff\xc0"):i] + b[i:]) == S.BAD_HEADER   # second SOF
    assert status(b[:-2] + b"\x12\x34\xff\xd9") == S.BAD_MARKER     # junk after the scan
    assert status(b, scale=1 / 3) == S.UNSUPPORTED_SCALE
    assert status(b, scale=2) == S.UNSUPPORTED_SCALE


def test_restart_marker_errors():
    b = encode(64, 64, "4:4:4", quality=90, restart_marker_rows=1)
    k = b.index(b"\xff\xd1")
    assert status(b[:k + 1] + b"\xd3" + b[k + 2:]) == S.BAD_RESTART     # out of sequence
    assert status(b[:k] + b[k + 2:]) == S.BAD_RESTART                  # missing
    plain = encode(64, 64, "4:4:4", quality=90)
    e = len(plain) - 2
    assert status(plain[:e] + b"\xff\xd0" + plain[e:]) == S.BAD_RESTART  # no DRI, stray RST


# ------------------------------------------------------------------------- corrupt streams


def _check_rejected_or_decoded(b: bytes, w: int, h: int) -> JpegStatus:
    try:
        img = decode(b)
    except JpegError as e:
        assert isinstance(e.code, JpegStatus) and int(e.code) >= 16 and e.message
        return e.code
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    return S.OK


@pytest.mark.parametrize("sub", ["4:2:0", "L"])
def test_truncation_at_every_offset(sub):
    b = encode(21, 13, sub, quality=75, restart_marker_blocks=2)
    for cut in range(len(b)):
        code = _check_rejected_or_decoded(b[:cut], 21, 13)
        if cut < 2:
            assert code == S.NOT_JPEG
        elif cut >= len(b) - 2:
            assert code == S.MISSING_EOI
        else:
            assert code in (S.TRUNCATED, S.MISSING_EOI), (cut, code)
        assert decode_status(b[:cut])[0] == code


def test_bit_flips_and_garbage():
    rng = np.random.default_rng(7)
    seen = set()
    for sub, opt in [("4:2:0", {}), ("4:4:4", dict(restart_marker_rows=1)),
                     ("4:2:2", dict(optimize=True)), ("L", {})]:
        b = encode(37, 29, sub, quality=70, **opt)
        sos = segment(b, 0xDA)[1]
        for _ in range(150):          # entropy data
            bb = bytearray(b)
            p = int(rng.integers(sos, len(b) - 2))
            bb[p] ^= 1 << int(rng.integers(0, 8))
            seen.add(_check_rejected_or_decoded(bytes(bb), 37, 29))
        for _ in range(100):          # anywhere, including headers
            bb = bytearray(b)
            p = int(rng.integers(0, len(b)))
            bb[p] = int(rng.integers(0, 256))
            seen.add(_check_rejected_or_decoded(bytes(bb), 37, 29))
        for _ in range(60):           # garbage inserted
            p = int(rng.integers(2, len(b)))
            junk = bytes(rng.integers(0, 256, int(rng.integers(1, 6)), dtype=np.uint8))
            seen.add(_check_rejected_or_decoded(b[:p] + junk + b[p:], 37, 29))
    for _ in range(200):              # random data after an SOI
        junk = b"\xff\xd8" + bytes(rng.integers(0, 256, int(rng.integers(0, 300)),
                                                dtype=np.uint8))
        seen.add(_check_rejected_or_decoded(junk, 1, 1))
    assert {S.BAD_HUFFMAN, S.BAD_COEFFICIENT, S.BAD_MARKER}.issubset(seen)


# ------------------------------------------------------------------------- stages alone


def test_status_codes():
    codes = [int(c) for c in JpegStatus]
    assert len(set(codes)) == len(codes) and S.OK == 0
    assert all(c >= 16 for c in codes if c)
    assert set(STATUS_MESSAGES) == set(JpegStatus)
    err = JpegError(S.TRUNCATED, detail="x")
    assert err.code == S.TRUNCATED and "TRUNCATED (17)" in str(err)


def test_idct_stages_against_float():
    """jpeg_idct_islow is within 1 of the float IDCT; all sizes are exact on DC-only blocks."""
    rng = np.random.default_rng(0)
    coef = np.zeros((500, 8, 8), np.int64)
    coef[:, :4, :4] = rng.integers(-60, 61, (500, 4, 4))
    coef[:, 0, 0] = rng.integers(-1000, 1001, 500)
    k = np.arange(8)
    m = np.where(k == 0, 1 / np.sqrt(2), 1.0)[None, :] / 2 * np.cos(
        (2 * k[:, None] + 1) * k[None, :] * np.pi / 16)          # m[x, u]
    ref = np.clip(np.einsum("xu,nuv,yv->nxy", m, coef, m) + 128, 0, 255)
    assert np.abs(idct_islow(coef).astype(float) - ref).max() <= 1
    dc = np.zeros((3, 8, 8), np.int64)
    dc[:, 0, 0] = [-1024, 8, 1016]
    for f, s in [(idct_islow, 8), (idct_4x4, 4), (idct_2x2, 2), (idct_1x1, 1)]:
        out = f(dc)
        assert out.shape == (3, s, s)
        assert (out == np.array([0, 129, 255])[:, None, None]).all()
    q = np.arange(1, 65, dtype=np.uint16)
    d = dequantize(np.ones((1, 8, 8), np.int16), q)
    assert d.reshape(64)[ZIGZAG].tolist() == list(range(1, 65))


def test_upsample_and_color_stages():
    x = np.array([[0, 100, 200]], np.uint8)
    assert h2v1_fancy(x).tolist() == [[0, 25, 75, 125, 175, 200]]
    assert h1v2_fancy(x.T).T.tolist() == [[0, 25, 75, 125, 175, 200]]
    flat = np.full((3, 4), 77, np.uint8)
    assert (h2v2_fancy(flat) == 77).all() and h2v2_fancy(flat).shape == (6, 8)
    y = np.array([[0, 128, 255]], np.uint8)
    mid = np.full_like(y, 128)
    assert (ycc_to_rgb(y, mid, mid) == np.repeat(y[..., None], 3, 2)).all()
    assert ycc_to_rgb(np.array([[76]], np.uint8), np.array([[85]], np.uint8),
                      np.array([[255]], np.uint8)).tolist() == [[[254, 0, 0]]]


def test_entropy_decoder_alone():
    """Coefficients of a 4:2:0 stream: 6 blocks per MCU, DC values bounded, and the Huffman
    lookup table inverts the canonical code of the standard DC table."""
    b = encode(32, 16, "4:2:0", quality=50)
    stream = parse_header(b, 8192, 8192)
    coefs = entropy_decode(stream, split_entropy_data(b, stream.scan_start))
    assert coefs.shape == (2 * 6, 64) and np.abs(coefs[:, 0]).max() <= 2047
    lut = build_lut(STD_HUFFMAN[(0, 0)])
    assert lut[0b00 << 14] == (2, 0, 0)                 # code 00: size 0
    assert lut[(0b011 << 13) | (0b10 << 11)] == (5, 0, 2)   # code 011 (size 2), bits 10 -> 2
    assert lut[(0b011 << 13) | (0b01 << 11)] == (5, 0, -2)
    assert lut[0xFFFF][0] == 99                          # no such code
