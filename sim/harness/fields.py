"""Bit fields of stream payloads held as little-endian 32-bit words.

A payload of W bits is ``ceil(W/32)`` uint32 words, word 0 holding bits [31:0] (Verilator's own
layout). Arrays of beats are ``(n,)`` uint32 when W <= 32 and ``(n, words)`` uint32 otherwise.
Fields come from the manifest as ``[lsb, width]``; extracted fields up to 64 bits wide are
returned in the smallest unsigned dtype that holds them (so a 16-bit float element can be
``.view(np.float16)`` directly).
"""
from __future__ import annotations

import numpy as np

from .build import Port


def _dtype_for(width: int):
    for bits, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if width <= bits:
            return dt
    raise ValueError(f"a {width}-bit field does not fit one integer; use extract_words()")


def as_words(beats: np.ndarray, width: int) -> np.ndarray:
    """``beats`` as a 2-D (n, words) uint32 array (a view when possible)."""
    nw = (width + 31) // 32
    a = np.asarray(beats)
    if a.ndim == 1:
        if nw == 1:
            return a.astype(np.uint32, copy=False).reshape(-1, 1)
        if nw == 2 and a.dtype.kind in "ui":
            a = a.astype(np.uint64, copy=False)
            return np.stack([(a & 0xFFFFFFFF).astype(np.uint32),
                             (a >> np.uint64(32)).astype(np.uint32)], axis=1)
        raise ValueError(f"a {width}-bit payload needs an (n, {nw}) uint32 array, "
                         f"got shape {a.shape}")
    if a.ndim != 2 or a.shape[1] != nw:
        raise ValueError(f"a {width}-bit payload needs an (n, {nw}) uint32 array, got shape "
                         f"{a.shape}")
    return a.astype(np.uint32, copy=False)


def extract(beats: np.ndarray, width: int, lsb: int, fwidth: int) -> np.ndarray:
    """Bits [lsb, lsb+fwidth) of every beat (fwidth <= 64)."""
    w = as_words(beats, width)
    dt = _dtype_for(fwidth)
    wi, sh = divmod(lsb, 32)
    n = w.shape[0]

    def word(i):
        return w[:, i].astype(np.uint64) if i < w.shape[1] else np.zeros(n, np.uint64)

    lo = word(wi) | (word(wi + 1) << np.uint64(32))
    v = lo >> np.uint64(sh)
    if sh and sh + fwidth > 64:
        v |= word(wi + 2) << np.uint64(64 - sh)
    if fwidth < 64:
        v &= np.uint64((1 << fwidth) - 1)
    return v.astype(dt)


def extract_words(beats: np.ndarray, width: int, lsb: int, fwidth: int) -> np.ndarray:
    """Bits [lsb, lsb+fwidth) of every beat as an (n, ceil(fwidth/32)) uint32 array."""
    nw = (fwidth + 31) // 32
    out = np.empty((as_words(beats, width).shape[0], nw), np.uint32)
    for i in range(nw):
        fw = min(32, fwidth - 32 * i)
        out[:, i] = extract(beats, width, lsb + 32 * i, fw)
    return out


def insert(words: np.ndarray, lsb: int, fwidth: int, values) -> None:
    """OR ``values`` (each < 2**fwidth, fwidth <= 64) into bits [lsb, lsb+fwidth) of the
    (n, words) uint32 array ``words`` in place."""
    v = np.asarray(values)
    if v.dtype.kind == "b":
        v = v.astype(np.uint64)
    if v.dtype.kind not in "ui":
        raise TypeError(f"field values must be integers, not {v.dtype}")
    if v.dtype.kind == "i" and v.size and v.min() < 0:
        raise ValueError("field values must not be negative")
    v = np.broadcast_to(v.astype(np.uint64), (words.shape[0],))
    if fwidth < 64 and v.size and int(v.max()) >> fwidth:
        raise ValueError(f"a value {int(v.max())} does not fit {fwidth} bits")
    wi, sh = divmod(lsb, 32)
    parts = [(v << np.uint64(sh)) & np.uint64(0xFFFFFFFF),
             (v >> np.uint64(32 - sh)) & np.uint64(0xFFFFFFFF) if sh else
             (v >> np.uint64(32)) & np.uint64(0xFFFFFFFF),
             (v >> np.uint64(64 - sh)) if sh else np.zeros_like(v)]
    for j, part in enumerate(parts):
        if wi + j < words.shape[1]:
            words[:, wi + j] |= part.astype(np.uint32)
        elif part.any():
            raise ValueError("field runs past the end of the payload")


def field_spec(port: Port, name: str) -> tuple[int, int]:
    for f, lsb, w in port.fields:
        if f == name:
            return lsb, w
    raise KeyError(f"port {port.name!r} has no field {name!r}; it has "
                   f"{[f for f, _, _ in port.fields]}")


def field(port: Port, beats: np.ndarray, name: str) -> np.ndarray:
    """One manifest field of every beat."""
    lsb, w = field_spec(port, name)
    return extract(beats, port.width, lsb, w)


def fields(port: Port, beats: np.ndarray) -> dict:
    """All manifest fields up to 64 bits wide, by name."""
    return {f: extract(beats, port.width, lsb, w) for f, lsb, w in port.fields if w <= 64}


def elements(port: Port, beats: np.ndarray, name: str = "data") -> np.ndarray:
    """The ``elements`` x ``element_width`` array field as an (n, elements) array."""
    lsb, w = field_spec(port, name)
    k, e = port.elements, port.element_width
    if not k or not e or k * e != w:
        raise ValueError(f"port {port.name!r}: field {name!r} is {w} bits but the manifest says "
                         f"{k} elements of {e} bits")
    n = as_words(beats, port.width).shape[0]
    out = np.empty((n, k), _dtype_for(e))
    for c in range(k):
        out[:, c] = extract(beats, port.width, lsb + c * e, e)
    return out


def pack(port: Port, n: int | None = None, **values) -> np.ndarray:
    """Build payload beats from field values (arrays or scalars; missing fields are 0).

    Returns (n,) uint32 for ports up to 32 bits, else (n, words) uint32.
    """
    if n is None:
        lens = [len(np.atleast_1d(v)) for v in values.values() if np.ndim(v)]
        if not lens:
            raise ValueError("pass n= when every field is a scalar")
        n = max(lens)
    words = np.zeros((n, port.words), np.uint32)
    for name, v in values.items():
        lsb, w = field_spec(port, name)
        insert(words, lsb, w, v)
    return words[:, 0].copy() if port.words == 1 else words
