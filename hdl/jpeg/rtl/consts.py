"""Constants the decoder blocks share, derived from the golden model's own tables."""
from __future__ import annotations

from ..markers import STD_HUFFMAN, ZIGZAG
from ..status import JpegStatus

__all__ = ["ZIGZAG_LIST", "S", "canonical", "STD_PHYS", "N_PHYS_TABLES"]

S = JpegStatus
ZIGZAG_LIST = [int(z) for z in ZIGZAG]

#: Physical Huffman table slots: 0-3 DC tables, 4-7 AC tables (loaded from DHT), 8-9 DC std,
#: 10-11 AC std (T.81 Annex K, read-only: used when a stream never defines DC/AC table 0 or 1).
N_PHYS_TABLES = 12
STD_PHYS = {(0, 0): 8, (0, 1): 9, (1, 0): 10, (1, 1): 11}


def canonical(counts) -> tuple[list[int], list[int]]:
    """(lim, base) per code length 1..16 of a canonical Huffman table, as the parser computes
    them at DHT time: a left-aligned 16-bit lookahead ``peek`` has code length
    ``L = min{l : peek < lim[l]}`` and symbol index ``base[L] + (peek >> (16 - L))``."""
    lim, base = [], []
    code, idx = 0, 0
    for length, cnt in enumerate(counts, 1):
        lim.append((code + cnt) << (16 - length))
        base.append(idx - code)
        idx += cnt
        code = (code + cnt) << 1
    return lim, base
