"""Stage 1: the marker parser.

Walks the byte stream from SOI to the start of the (single) scan, collecting the frame header,
the quantization and Huffman tables in effect at SOS and the restart interval; then splits the
entropy-coded data at RSTn markers (removing FF00 byte stuffing and FF fill bytes); and, after the
entropy decoder has run, checks the markers between the scan and EOI.

The hardware's marker parser is the same state machine: read a marker, read its 16-bit length,
consume the payload (tables go to table RAMs, APPn/COM are skipped), stop at SOS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .status import JpegError, JpegStatus as S

__all__ = [
    "Component", "Frame", "HuffmanSpec", "ScanComponent", "Stream", "EntropyData",
    "parse_header", "parse_frame_only", "split_entropy_data", "parse_trailer", "ZIGZAG",
    "STD_HUFFMAN",
]

# Marker codes (second byte after FF).
SOI, EOI, SOS, DQT, DHT, DRI, COM, DNL, DAC, TEM = (
    0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD, 0xFE, 0xDC, 0xCC, 0x01)
RST0 = 0xD0
SOF_BASELINE = (0xC0, 0xC1)              # baseline, extended sequential (Huffman)
SOF_LOSSLESS = (0xC3, 0xC7, 0xCB, 0xCF)
SOF_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE, 0xC5)   # incl. hierarchical sequential (C5)
SOF_ARITHMETIC = (0xC9, 0xCD)            # arithmetic sequential (incl. differential)
DHP, EXP = 0xDE, 0xDF                    # hierarchical markers

#: ZIGZAG[k] is the natural (row-major) index of the k-th coefficient in zigzag order.
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63], dtype=np.intp)


@dataclass(frozen=True)
class HuffmanSpec:
    """A DHT table as transmitted: ``counts[i]`` codes of length i+1, then the symbols."""
    table_class: int          # 0 = DC, 1 = AC
    table_id: int
    counts: tuple[int, ...]
    symbols: bytes


def _std(counts: list[int], symbols: list[int], tc: int, th: int) -> HuffmanSpec:
    return HuffmanSpec(tc, th, tuple(counts), bytes(symbols))


#: The example tables of ITU T.81 Annex K.3, which libjpeg-turbo loads into DC/AC slots 0 and 1
#: when a stream never defines them (Motion-JPEG frames omit DHT); we do the same.
STD_HUFFMAN = {
    (0, 0): _std([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)), 0, 0),
    (0, 1): _std([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)), 0, 1),
    (1, 0): _std([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa], 1, 0),
    (1, 1): _std([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa], 1, 1),
}


@dataclass(frozen=True)
class Component:
    cid: int        # component identifier from SOF
    h: int          # horizontal sampling factor
    v: int          # vertical sampling factor
    tq: int         # quantization table selector


@dataclass(frozen=True)
class Frame:
    sof: int                  # SOF marker byte (0xC0 or 0xC1)
    precision: int
    height: int
    width: int
    components: tuple[Component, ...]

    @property
    def hmax(self) -> int:
        return max(c.h for c in self.components)

    @property
    def vmax(self) -> int:
        return max(c.v for c in self.components)

    @property
    def sampling(self) -> tuple[tuple[int, int], ...]:
        return tuple((c.h, c.v) for c in self.components)


@dataclass(frozen=True)
class ScanComponent:
    index: int      # index into Frame.components
    td: int         # DC Huffman table
    ta: int         # AC Huffman table


@dataclass
class Stream:
    """Everything the decoder needs, as in effect when the scan starts."""
    frame: Frame
    #: quantization tables per frame component, 64 uint16 values in *zigzag* order
    qtables: list[np.ndarray]
    #: (DC spec, AC spec) per scan component, in scan order
    huffman: list[tuple[HuffmanSpec, HuffmanSpec]]
    scan: tuple[ScanComponent, ...]
    restart_interval: int
    scan_start: int           # offset of the first entropy-coded byte
    colorspace: str           # "gray" or "ycbcr" (libjpeg's guess; "rgb" is rejected)


@dataclass
class EntropyData:
    """The scan's entropy-coded segments, unstuffed and concatenated; each starts on a byte."""
    data: bytes
    #: (start, end) byte offsets of each segment (one per restart interval) in ``data``
    segments: list[tuple[int, int]]
    #: RST number (0..7) that ended each segment, or -1 for the segment ended by another marker
    #: or by the end of the file
    terminators: list[int]
    #: the scan ran into the end of the file with no marker after it
    hit_eof: bool
    #: offset of the marker (its FF) that ended the scan, or len(file) when hit_eof
    end: int


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """Read the marker at ``pos`` (FF fill bytes allowed before it); return (code, next pos)."""
    n = len(data)
    if pos >= n:
        raise JpegError(S.TRUNCATED, detail=f"end of data at offset {pos}, a marker was expected")
    if data[pos] != 0xFF:
        raise JpegError(S.BAD_MARKER, detail=f"byte 0x{data[pos]:02X} at offset {pos} where a "
                                             "marker must be")
    while pos < n and data[pos] == 0xFF:
        pos += 1
    if pos >= n:
        raise JpegError(S.TRUNCATED, detail="end of data inside a marker")
    code = data[pos]
    if code == 0x00:
        raise JpegError(S.BAD_MARKER, detail=f"FF 00 at offset {pos - 1} where a marker must be")
    return code, pos + 1


def _segment(data: bytes, pos: int, code: int, bad: S) -> tuple[bytes, int]:
    """The payload of the length-prefixed segment starting at ``pos``; returns (payload, end)."""
    if pos + 2 > len(data):
        raise JpegError(S.TRUNCATED, detail=f"end of data in the length of marker 0x{code:02X}")
    length = _u16(data, pos)
    if length < 2:
        raise JpegError(bad, detail=f"marker 0x{code:02X} at offset {pos - 2} has length {length}")
    end = pos + length
    if end > len(data):
        raise JpegError(S.TRUNCATED, detail=f"marker 0x{code:02X} segment ends past the data")
    return data[pos + 2:end], end


def _unsupported_sof(code: int) -> None:
    if code in SOF_LOSSLESS:
        raise JpegError(S.UNSUPPORTED_LOSSLESS, detail=f"SOF{code - 0xC0}")
    if code in SOF_PROGRESSIVE:
        raise JpegError(S.UNSUPPORTED_PROGRESSIVE, detail=f"SOF{code - 0xC0}")
    if code in SOF_ARITHMETIC:
        raise JpegError(S.UNSUPPORTED_ARITHMETIC, detail=f"SOF{code - 0xC0}")


def _parse_sof(code: int, p: bytes, max_width: int, max_height: int) -> Frame:
    if len(p) < 6:
        raise JpegError(S.BAD_HEADER, detail="SOF segment too short")
    precision, height, width, nf = p[0], _u16(p, 1), _u16(p, 3), p[5]
    if precision != 8:
        raise JpegError(S.UNSUPPORTED_PRECISION, detail=f"{precision}-bit samples")
    if nf == 0 or len(p) != 6 + 3 * nf:
        raise JpegError(S.BAD_HEADER, detail=f"SOF length {len(p) + 2} for {nf} components")
    comps = []
    for i in range(nf):
        cid, hv, tq = p[6 + 3 * i], p[7 + 3 * i], p[8 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise JpegError(S.BAD_HEADER, detail=f"component {cid} sampling factors {h}x{v}")
        if tq > 3:
            raise JpegError(S.BAD_HEADER, detail=f"component {cid} quantization table {tq}")
        if any(c.cid == cid for c in comps):
            raise JpegError(S.BAD_HEADER, detail=f"duplicate component id {cid}")
        comps.append(Component(cid, h, v, tq))
    if nf not in (1, 3):
        raise JpegError(S.UNSUPPORTED_COMPONENTS, detail=f"{nf} components")
    if width == 0 or height == 0:
        raise JpegError(S.BAD_DIMENSIONS, detail=f"{width}x{height} (height 0 = DNL, not "
                                                 "supported)")
    if width > max_width or height > max_height:
        raise JpegError(S.BAD_DIMENSIONS, detail=f"{width}x{height} exceeds the maximum "
                                                 f"{max_width}x{max_height}")
    if nf == 1:
        ok = comps[0].h in (1, 2) and comps[0].v in (1, 2)
    else:
        ok = comps[0].h in (1, 2) and comps[0].v in (1, 2) and all(
            (c.h, c.v) == (1, 1) for c in comps[1:])
    if not ok:
        raise JpegError(S.UNSUPPORTED_SAMPLING, detail="sampling factors " + ", ".join(
            f"{c.h}x{c.v}" for c in comps))
    return Frame(code, precision, height, width, tuple(comps))


def _parse_dqt(p: bytes, qtables: dict[int, np.ndarray]) -> None:
    i = 0
    while i < len(p):
        pq, tq = p[i] >> 4, p[i] & 15
        if pq == 1:
            raise JpegError(S.UNSUPPORTED_PRECISION, detail="16-bit quantization table "
                                                            "(the hardware takes 8-bit tables)")
        if pq != 0 or tq > 3:
            raise JpegError(S.BAD_TABLE, detail=f"DQT precision {pq} id {tq}")
        if i + 65 > len(p):
            raise JpegError(S.BAD_TABLE, detail="DQT segment shorter than its tables")
        q = np.frombuffer(p, np.uint8, 64, i + 1).astype(np.uint16)
        if not q.all():
            raise JpegError(S.BAD_TABLE, detail=f"DQT table {tq} has a zero entry")
        qtables[tq] = q
        i += 65


def _parse_dht(p: bytes, htables: dict[tuple[int, int], HuffmanSpec]) -> None:
    i = 0
    while i < len(p):
        tc, th = p[i] >> 4, p[i] & 15
        if tc > 1 or th > 3:
            raise JpegError(S.BAD_TABLE, detail=f"DHT class {tc} id {th}")
        if i + 17 > len(p):
            raise JpegError(S.BAD_TABLE, detail="DHT segment shorter than its counts")
        counts = tuple(p[i + 1:i + 17])
        total = sum(counts)
        if total > 256 or i + 17 + total > len(p):
            raise JpegError(S.BAD_TABLE, detail=f"DHT table {tc}/{th} with {total} symbols")
        symbols = bytes(p[i + 17:i + 17 + total])
        # Canonical code assignment must not overflow any code length (as jdhuff.c checks).
        code = 0
        for length, cnt in enumerate(counts, 1):
            code += cnt
            if code > (1 << length):
                raise JpegError(S.BAD_TABLE, detail=f"DHT table {tc}/{th}: too many codes of "
                                                    f"length {length}")
            code <<= 1
        if tc == 0 and any(s > 15 for s in symbols):
            raise JpegError(S.BAD_TABLE, detail=f"DC table {th} has a symbol above 15")
        htables[(tc, th)] = HuffmanSpec(tc, th, counts, symbols)
        i += 17 + total


def _colorspace(frame: Frame, jfif: bool, adobe: int | None) -> str:
    """libjpeg's colour-space guess (jdapimin.c default_decompress_parms) for 1 or 3 components."""
    if len(frame.components) == 1:
        return "gray"
    if jfif:
        return "ycbcr"
    if adobe is not None:
        return "rgb" if adobe == 0 else "ycbcr"
    ids = tuple(c.cid for c in frame.components)
    return "rgb" if ids == (82, 71, 66) else "ycbcr"


def parse_frame_only(data: bytes, max_width: int = 65535, max_height: int = 65535) -> Frame:
    """Parse from SOI up to and including the SOF segment (what ``read_header`` needs)."""
    return _parse(data, max_width, max_height, stop_at_sof=True)  # type: ignore[return-value]


def parse_header(data: bytes, max_width: int, max_height: int) -> Stream:
    """Parse from SOI up to and including SOS; check every table the scan needs."""
    return _parse(data, max_width, max_height, stop_at_sof=False)  # type: ignore[return-value]


def _parse(data: bytes, max_width: int, max_height: int, stop_at_sof: bool) -> Frame | Stream:
    if len(data) < 2 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError(S.NOT_JPEG)
    pos = 2
    frame: Frame | None = None
    qtables: dict[int, np.ndarray] = {}
    htables: dict[tuple[int, int], HuffmanSpec] = {}
    restart_interval = 0
    jfif = False
    adobe: int | None = None
    while True:
        code, pos = _next_marker(data, pos)
        if code in SOF_BASELINE:
            if frame is not None:
                raise JpegError(S.BAD_HEADER, detail="second SOF marker")
            p, pos = _segment(data, pos, code, S.BAD_HEADER)
            frame = _parse_sof(code, p, max_width, max_height)
            if stop_at_sof:
                return frame
        elif 0xC0 <= code <= 0xCF and code not in (DHT, DAC, 0xC8):
            _unsupported_sof(code)
        elif code in (DHP, EXP):
            raise JpegError(S.UNSUPPORTED_PROGRESSIVE, detail="hierarchical JPEG")
        elif code == DAC:
            raise JpegError(S.UNSUPPORTED_ARITHMETIC, detail="DAC marker")
        elif code == DQT:
            p, pos = _segment(data, pos, code, S.BAD_TABLE)
            _parse_dqt(p, qtables)
        elif code == DHT:
            p, pos = _segment(data, pos, code, S.BAD_TABLE)
            _parse_dht(p, htables)
        elif code == DRI:
            p, pos = _segment(data, pos, code, S.BAD_HEADER)
            if len(p) != 2:
                raise JpegError(S.BAD_HEADER, detail="DRI length is not 4")
            restart_interval = _u16(p, 0)
        elif 0xE0 <= code <= 0xEF or code == COM or code == DNL:
            p, pos = _segment(data, pos, code, S.BAD_HEADER)
            if code == 0xE0 and len(p) >= 14 and p[:5] == b"JFIF\0":
                jfif = True
            elif code == 0xEE and len(p) >= 12 and p[:5] == b"Adobe":
                adobe = p[11]
        elif code == TEM:
            pass
        elif code == SOS:
            if frame is None:
                raise JpegError(S.BAD_HEADER, detail="SOS before SOF")
            p, pos = _segment(data, pos, code, S.BAD_HEADER)
            return _parse_sos(p, pos, frame, qtables, htables, restart_interval,
                              _colorspace(frame, jfif, adobe))
        elif code == EOI:
            raise JpegError(S.BAD_HEADER, detail="EOI before any scan" if frame else
                            "EOI before SOF")
        else:   # SOI again, RSTn outside a scan, JPG, JPGn, reserved
            raise JpegError(S.BAD_MARKER, detail=f"marker 0x{code:02X} at offset {pos - 2}")


def _parse_sos(p: bytes, scan_start: int, frame: Frame, qtables: dict[int, np.ndarray],
               htables: dict[tuple[int, int], HuffmanSpec], restart_interval: int,
               colorspace: str) -> Stream:
    if len(p) < 1:
        raise JpegError(S.BAD_HEADER, detail="empty SOS")
    ns = p[0]
    if ns < 1 or ns > 4 or len(p) != 4 + 2 * ns:
        raise JpegError(S.BAD_HEADER, detail=f"SOS length {len(p) + 2} for {ns} components")
    nf = len(frame.components)
    scan = []
    for i in range(ns):
        cs, t = p[1 + 2 * i], p[2 + 2 * i]
        idx = [j for j, c in enumerate(frame.components) if c.cid == cs]
        if not idx or any(s.index == idx[0] for s in scan):
            raise JpegError(S.BAD_HEADER, detail=f"SOS component id {cs} not in the frame or "
                                                 "repeated")
        td, ta = t >> 4, t & 15
        if td > 3 or ta > 3:
            raise JpegError(S.BAD_HEADER, detail=f"SOS Huffman selectors {td}/{ta}")
        scan.append(ScanComponent(idx[0], td, ta))
    ss, se, ahal = p[1 + 2 * ns], p[2 + 2 * ns], p[3 + 2 * ns]
    if ss != 0 or se != 63 or ahal != 0:
        raise JpegError(S.BAD_HEADER, detail=f"sequential scan with Ss={ss} Se={se} "
                                             f"Ah/Al=0x{ahal:02X}")
    if ns != nf:
        raise JpegError(S.MULTI_SCAN, detail=f"first scan has {ns} of {nf} components")
    if colorspace == "rgb":
        raise JpegError(S.UNSUPPORTED_COMPONENTS, detail="3 components coded as RGB, not YCbCr")
    q = []
    for c in frame.components:
        if c.tq not in qtables:
            raise JpegError(S.BAD_TABLE, detail=f"quantization table {c.tq} is not defined")
        q.append(qtables[c.tq])
    huff = []
    for s in scan:
        pair = []
        for tc, th in ((0, s.td), (1, s.ta)):
            spec = htables.get((tc, th)) or (STD_HUFFMAN.get((tc, th)))
            if spec is None:
                raise JpegError(S.BAD_TABLE, detail=f"{'DC' if tc == 0 else 'AC'} Huffman table "
                                                    f"{th} is not defined")
            pair.append(spec)
        huff.append((pair[0], pair[1]))
    return Stream(frame, q, huff, tuple(scan), restart_interval, scan_start, colorspace)


def split_entropy_data(data: bytes, start: int) -> EntropyData:
    """Split the entropy-coded data beginning at ``start`` into restart segments.

    Inside entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed data byte FF), by more
    FF fill bytes and then a marker, or directly by a marker. RSTn markers separate restart
    intervals; any other marker ends the scan. As libjpeg does, a run of FFs ending in 00 counts
    as one data byte FF.
    """
    n = len(data)
    arr = np.frombuffer(data, np.uint8)
    ffs = np.flatnonzero(arr[start:] == 0xFF) + start
    pieces: list[bytes] = []
    out_len = 0
    segments: list[tuple[int, int]] = []
    terminators: list[int] = []
    seg_begin = 0           # in the unstuffed output
    cur = start             # next input byte not yet copied
    hit_eof = False
    end = n
    for p in ffs.tolist():
        if p < cur:
            continue
        q = p + 1
        while q < n and data[q] == 0xFF:
            q += 1
        if q >= n:          # FF (fill) run at the very end of the file
            pieces.append(data[cur:p])
            out_len += p - cur
            segments.append((seg_begin, out_len))
            terminators.append(-1)
            hit_eof, end = True, n
            break
        b = data[q]
        if b == 0x00:       # stuffed FF data byte
            pieces.append(data[cur:p + 1])
            out_len += p + 1 - cur
            cur = q + 1
            continue
        pieces.append(data[cur:p])
        out_len += p - cur
        segments.append((seg_begin, out_len))
        seg_begin = out_len
        if RST0 <= b <= RST0 + 7:
            terminators.append(b - RST0)
            cur = q + 1
            continue
        terminators.append(-1)
        end = q - 1          # the FF just before the marker code
        break
    else:
        pieces.append(data[cur:n])
        out_len += n - cur
        segments.append((seg_begin, out_len))
        terminators.append(-1)
        hit_eof = True
    return EntropyData(b"".join(pieces), segments, terminators, hit_eof, end)


def parse_trailer(data: bytes, pos: int) -> None:
    """Check the markers after the scan up to EOI. Tables, DRI, APPn and COM may appear and are
    parsed for validity; a second SOS is MULTI_SCAN; the end of data before EOI is MISSING_EOI.
    Bytes after EOI are ignored."""
    qt: dict[int, np.ndarray] = {}
    ht: dict[tuple[int, int], HuffmanSpec] = {}
    while True:
        if pos >= len(data):
            raise JpegError(S.MISSING_EOI)
        try:
            code, pos = _next_marker(data, pos)
        except JpegError as e:
            if e.code == S.TRUNCATED:
                raise JpegError(S.MISSING_EOI) from None
            raise
        if code == EOI:
            return
        if code == SOS:
            raise JpegError(S.MULTI_SCAN, detail="a second SOS after the first scan")
        if code == DQT:
            p, pos = _segment(data, pos, code, S.BAD_TABLE)
            _parse_dqt(p, qt)
        elif code == DHT:
            p, pos = _segment(data, pos, code, S.BAD_TABLE)
            _parse_dht(p, ht)
        elif code == DRI or 0xE0 <= code <= 0xEF or code == COM or code == DNL:
            p, pos = _segment(data, pos, code, S.BAD_HEADER)
        elif code == TEM:
            pass
        elif 0xC0 <= code <= 0xCF and code not in (DHT, DAC, 0xC8):
            raise JpegError(S.BAD_HEADER, detail="SOF marker after the scan")
        else:
            raise JpegError(S.BAD_MARKER, detail=f"marker 0x{code:02X} at offset {pos - 2}")
