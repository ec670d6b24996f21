"""Stage 2: the entropy decoder (Huffman, baseline sequential).

Produces the quantized coefficients of every 8x8 block, in zigzag order and in the order the
blocks appear in the scan (MCU by MCU). Hardware does the same: a 16-bit lookahead into the bit
stream indexes a code table (here a 65536-entry lookup table; in hardware the equivalent
canonical-code comparators of jdhuff.c's ``maxcode``), giving the code length and the symbol;
the symbol's low nibble is the number of magnitude bits that follow.

The lookup tables fold the magnitude bits in when code length + magnitude bits <= 16, so the
common case is one table read per coefficient; longer ones take a second read (the "slow path").

Strictness (see :mod:`hdl.jpeg.status`): a 16-bit prefix that is no code, a symbol that is not
valid for 8-bit baseline data (AC run/size with size 0 other than EOB/ZRL, AC size > 10, DC size
> 11), a run past coefficient 63, a DC value outside 12-bit signed range, a restart interval
whose data runs out or leaves whole bytes unused, and restart markers out of sequence are all
errors. libjpeg tolerates most of these.
"""
from __future__ import annotations

from array import array
from functools import lru_cache
from math import ceil

import numpy as np

from .markers import ZIGZAG, EntropyData, HuffmanSpec, Stream
from .status import JpegError, JpegStatus as S

__all__ = ["build_lut", "mcu_layout", "entropy_decode", "blocks_by_component", "LUT_INVALID",
           "LUT_BAD_SYMBOL", "LUT_SLOW"]

#: ``n`` field of a lookup entry whose 16-bit prefix matches no code
LUT_INVALID = 99
#: ``n`` field of an entry whose code decodes to a symbol not allowed in 8-bit baseline data
LUT_BAD_SYMBOL = 98
#: ``n`` = LUT_SLOW + code length: magnitude bits do not fit in the 16-bit lookahead
LUT_SLOW = 32
#: run value of the EOB symbol (pushes k past 63)
RUN_EOB = 64

_MAX_DC_SIZE = 11
_MAX_AC_SIZE = 10
_DC_LIMIT = 2047


@lru_cache(maxsize=64)
def build_lut(spec: HuffmanSpec) -> list[tuple[int, int, int]]:
    """The 65536-entry lookahead table of a DHT table: entry ``peek16`` is ``(n, r, v)``.

    * ``n <= 16``: consume ``n`` bits (code + magnitude); ``r`` = zero run before the coefficient
      (``RUN_EOB`` for EOB, 15 for ZRL whose ``v`` is 0), ``v`` = the signed value (DC: the
      difference).
    * ``n == LUT_SLOW + len``: consume the ``len``-bit code, then ``v`` magnitude bits.
    * ``n == LUT_INVALID`` / ``LUT_BAD_SYMBOL``: corrupt data.
    """
    counts = np.array(spec.counts, np.int64)
    lengths = np.repeat(np.arange(1, 17), counts)
    syms = np.frombuffer(spec.symbols, np.uint8).astype(np.int64)
    spans = 1 << (16 - lengths)
    total = int(spans.sum())
    # Canonical codes fill the 16-bit left-aligned code space contiguously from 0.
    L = np.full(65536, 0, np.int64)
    SYM = np.zeros(65536, np.int64)
    L[:total] = np.repeat(lengths, spans)
    SYM[:total] = np.repeat(syms, spans)
    idx = np.arange(65536, dtype=np.int64)
    if spec.table_class == 0:
        size, run = SYM, np.zeros_like(SYM)
        bad = size > _MAX_DC_SIZE
    else:
        size, run = SYM & 15, SYM >> 4
        bad = (size > _MAX_AC_SIZE) | ((size == 0) & (SYM != 0x00) & (SYM != 0xF0))
        run = np.where(SYM == 0x00, RUN_EOB, run)
        run = np.where(SYM == 0xF0, 15, run)
    fast = L + size <= 16
    shift = np.where(fast, 16 - L - size, 0)
    raw = (idx >> shift) & ((1 << size) - 1)
    half = np.where(size > 0, 1 << np.maximum(size - 1, 0), 1)
    val = np.where(raw >= half, raw, raw - (1 << size) + 1)
    val = np.where(size == 0, 0, val)
    n = np.where(fast, L + size, LUT_SLOW + L)
    val = np.where(fast, val, size)
    n = np.where(bad, LUT_BAD_SYMBOL, n)
    n[total:] = LUT_INVALID
    return list(zip(n.tolist(), run.tolist(), val.tolist()))


def mcu_layout(stream: Stream) -> tuple[int, int, list[int], list[tuple[int, int, int]]]:
    """(MCUs across, MCUs down, scan component index per block of an MCU,
    (blocks across, blocks down, blocks per MCU) per frame component)."""
    f = stream.frame
    comps = f.components
    if len(stream.scan) == 1:
        c = comps[stream.scan[0].index]
        bw = ceil(ceil(f.width * c.h / f.hmax) / 8)
        bh = ceil(ceil(f.height * c.v / f.vmax) / 8)
        return bw, bh, [0], [(bw, bh, 1)]
    mx = ceil(f.width / (8 * f.hmax))
    my = ceil(f.height / (8 * f.vmax))
    per_block = []
    for j, s in enumerate(stream.scan):
        c = comps[s.index]
        per_block += [j] * (c.h * c.v)
    return mx, my, per_block, [(mx * c.h, my * c.v, c.h * c.v) for c in comps]


_CHUNK = 1 << 18         # bytes of bit-window list built at a time
_MARGIN = 1 << 13        # more than one MCU's worth of bytes (6 blocks x 64 x 27 bits)


def _windows(data: bytes, start: int, count: int) -> list[int]:
    """w[i] = the 32 bits starting at byte start+i (big-endian), zero past the end."""
    buf = np.zeros(count + 3, np.uint32)
    avail = min(count + 3, len(data) - start)
    if avail > 0:
        buf[:avail] = np.frombuffer(data, np.uint8, avail, start)
    w = (buf[:-3] << 24) | (buf[1:-2] << 16) | (buf[2:-1] << 8) | buf[3:]
    return w.tolist()


def entropy_decode(stream: Stream, ent: EntropyData) -> np.ndarray:
    """Decode every block of the scan: int16 array (n_blocks, 64), zigzag order, scan order."""
    mx, my, per_block, _ = mcu_layout(stream)
    n_mcus = mx * my
    bpm = len(per_block)
    luts = [(build_lut(dc), build_lut(ac)) for dc, ac in stream.huffman]
    plan = [(luts[j][0], luts[j][1], j) for j in per_block]
    ri = stream.restart_interval
    n_int = ceil(n_mcus / ri) if ri else 1
    coefs = array("h", [0]) * (64 * n_mcus * bpm)
    data = ent.data
    wstate = [0, _windows(data, 0, min(_CHUNK, len(data)) + _MARGIN)]
    b = 0
    for i in range(n_int):
        if i >= len(ent.segments):   # cannot happen: the last segment always ends the scan
            raise JpegError(S.TRUNCATED if ent.hit_eof else S.BAD_RESTART)
        seg_start, seg_end = ent.segments[i]
        term = ent.terminators[i]
        count = min(ri, n_mcus - i * ri) if ri else n_mcus
        try:
            pos_bits = _decode_interval(data, seg_start, seg_end, count, plan, len(stream.scan),
                                        coefs, b, wstate)
        except _Overrun:
            if term == -1:
                raise JpegError(S.TRUNCATED, detail=f"entropy data of restart interval {i} ends "
                                                    "before its last MCU") from None
            raise JpegError(S.BAD_RESTART, detail=f"restart marker RST{term} arrives before "
                                                  f"interval {i} is complete") from None
        b += count * bpm
        if seg_end * 8 - pos_bits >= 8:
            # Whole bytes left over: before the next RST a marker is missing; before the end
            # of the scan it is garbage where a marker must be.
            extra = (seg_end * 8 - pos_bits) // 8
            if i < n_int - 1:
                raise JpegError(S.BAD_RESTART, detail=f"RST{i % 8} missing: {extra} bytes "
                                                      f"follow the last MCU of interval {i}")
            raise JpegError(S.BAD_MARKER, detail=f"{extra} unused bytes after the last MCU")
        if i < n_int - 1:
            if term != i % 8:
                if term == -1 and ent.hit_eof:
                    raise JpegError(S.TRUNCATED, detail=f"data ends after restart interval {i}")
                found = f"RST{term}" if term >= 0 else "another marker"
                raise JpegError(S.BAD_RESTART, detail=f"after interval {i}: expected RST{i % 8}, "
                                                      f"found {found}")
        elif term != -1:
            raise JpegError(S.BAD_RESTART, detail=f"unexpected RST{term} after the last interval")
    return np.frombuffer(coefs, np.int16).reshape(-1, 64)


class _Overrun(Exception):
    pass


def _decode_interval(data: bytes, seg_start: int, seg_end: int, n_mcus: int, plan: list,
                     n_scan: int, coefs: array, b: int, wstate: list) -> int:
    """Decode ``n_mcus`` MCUs from the segment ``data[seg_start:seg_end]`` into ``coefs`` starting
    at block ``b``; DC predictors start at 0. Returns the bit position after the last MCU
    (absolute, in bits from the start of ``data``). Raises _Overrun if the data runs out.

    ``wstate`` = [base byte, window list] is the 32-bit lookahead window over ``data`` shared by
    the intervals; it is rebuilt whenever fewer than _MARGIN bytes of it remain ahead."""
    preds = [0] * n_scan
    base_byte, win = wstate
    if seg_start < base_byte or seg_start - base_byte + _MARGIN > len(win):
        base_byte = seg_start
        win = _windows(data, base_byte, _CHUNK + _MARGIN)
    pos = (seg_start - base_byte) * 8        # bit position relative to base_byte
    end = (seg_end - base_byte) * 8          # end of the segment's bits
    rebuild_at = (len(win) - _MARGIN) * 8
    try:
        for _ in range(n_mcus):
            if pos >= rebuild_at:
                skip = pos >> 3
                base_byte += skip
                pos -= skip * 8
                end -= skip * 8
                win = _windows(data, base_byte, _CHUNK + _MARGIN)
                rebuild_at = (len(win) - _MARGIN) * 8
            for dc, ac, j in plan:
                n, r, v = dc[(win[pos >> 3] >> (16 - (pos & 7))) & 0xFFFF]
                if n > 16:
                    if n >= LUT_BAD_SYMBOL:
                        raise _BadCode(n, pos)
                    n -= LUT_SLOW
                    q = pos + n
                    raw = (win[q >> 3] >> (32 - (q & 7) - v)) & ((1 << v) - 1)
                    n += v
                    v = raw if raw >> (v - 1) else raw - (1 << v) + 1
                pos += n
                v += preds[j]
                if v > _DC_LIMIT or v < -_DC_LIMIT:
                    raise _BadCoef("DC", pos)
                preds[j] = v
                base = b << 6
                coefs[base] = v
                k = 1
                while k < 64:
                    n, r, v = ac[(win[pos >> 3] >> (16 - (pos & 7))) & 0xFFFF]
                    if n > 16:
                        if n >= LUT_BAD_SYMBOL:
                            raise _BadCode(n, pos)
                        n -= LUT_SLOW
                        q = pos + n
                        raw = (win[q >> 3] >> (32 - (q & 7) - v)) & ((1 << v) - 1)
                        n += v
                        v = raw if raw >> (v - 1) else raw - (1 << v) + 1
                    pos += n
                    k += r
                    if k > 63:
                        if r == RUN_EOB:
                            break
                        raise _BadCoef("AC", pos)
                    coefs[base + k] = v
                    k += 1
                b += 1
                if pos > end:
                    raise _Overrun()
    except (_BadCode, _BadCoef) as e:
        if e.pos > end:          # garbage read past the segment: the data ran out
            raise _Overrun() from None
        if isinstance(e, _BadCode):
            what = "no such code" if e.n == LUT_INVALID else "symbol invalid for 8-bit data"
            raise JpegError(S.BAD_HUFFMAN, detail=f"{what} at byte {base_byte + e.pos // 8} "
                                                  "of the unstuffed scan data") from None
        raise JpegError(S.BAD_COEFFICIENT, detail=f"{e.kind} coefficient at byte "
                                                  f"{base_byte + e.pos // 8} of the unstuffed "
                                                  "scan data") from None
    wstate[0], wstate[1] = base_byte, win
    return base_byte * 8 + pos


class _BadCode(Exception):
    def __init__(self, n: int, pos: int):
        self.n, self.pos = n, pos


class _BadCoef(Exception):
    def __init__(self, kind: str, pos: int):
        self.kind, self.pos = kind, pos


_UNZIGZAG = np.argsort(ZIGZAG)   # natural index -> zigzag position


def blocks_by_component(stream: Stream, coefs: np.ndarray) -> list[np.ndarray]:
    """Regroup scan-order blocks into one (blocks down, blocks across, 8, 8) array per frame
    component, coefficients in natural (row-major) order."""
    mx, my, per_block, dims = mcu_layout(stream)
    out: list[np.ndarray | None] = [None] * len(stream.frame.components)
    if len(stream.scan) == 1:
        bw, bh, _ = dims[0]
        zz = coefs.reshape(bh, bw, 64)
        out[stream.scan[0].index] = zz[..., _UNZIGZAG].reshape(bh, bw, 8, 8)
        return out  # type: ignore[return-value]
    bpm = len(per_block)
    offset = 0
    for s in stream.scan:
        c = stream.frame.components[s.index]
        # block (row, col) of this component -> index in scan order
        rows = np.arange(my * c.v)
        cols = np.arange(mx * c.h)
        mcu = (rows[:, None] // c.v) * mx + cols[None, :] // c.h
        within = offset + (rows[:, None] % c.v) * c.h + cols[None, :] % c.h
        zz = coefs[mcu * bpm + within]
        out[s.index] = zz[..., _UNZIGZAG].reshape(my * c.v, mx * c.h, 8, 8)
        offset += c.h * c.v
    return out  # type: ignore[return-value]
