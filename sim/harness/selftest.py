"""A tiny Amaranth design with the preprocessing core's port shapes, for the harness's own tests
and for :func:`sim.harness.bench_cycles_per_second`.

Per job it takes one ``cfg`` word ``k`` (the job's key), then ``pix`` beats up to ``last``. Each
pixel becomes one ``out`` beat ``{offset: pixel index in the job, data: [(r + k) & mask, g ^ (k & 0xff),
b], last}``; after the beat with ``last`` has left, one ``status`` beat ``{code: pixel count & 0xff,
reserved: running sum of all cfg words & 0xffffff}``. Everything is a function of the job words
and pixels, never of timing, so backpressure must not change the outputs (:func:`reference`).
"""
# (no `from __future__ import annotations`: data.Struct reads real annotations)

import numpy as np

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class Pixel(data.Struct):
    r: 8
    g: 8
    b: 8
    last: 1


class Status(data.Struct):
    code: 8
    reserved: 24


def out_layout(e: int) -> data.StructLayout:
    return data.StructLayout({"offset": 32, "data": data.ArrayLayout(e, 3), "last": 1})


class EchoCore(wiring.Component):
    def __init__(self, element_width: int = 16):
        self.e = element_width
        super().__init__({
            "cfg": In(stream.Signature(32)),
            "pix": In(stream.Signature(Pixel)),
            "out": Out(stream.Signature(out_layout(element_width))),
            "status": Out(stream.Signature(Status)),
        })

    def elaborate(self, platform):
        m = Module()
        e = self.e
        key = Signal(32)
        total = Signal(32)
        count = Signal(32)
        have_key = Signal()      # from the job's cfg word until its status beat has left
        pix_done = Signal()      # the job's last pixel was accepted
        status_pending = Signal()

        # cfg: one word per job, accepted only between jobs.
        m.d.comb += self.cfg.ready.eq(~have_key)
        with m.If(self.cfg.valid & self.cfg.ready):
            m.d.sync += [key.eq(self.cfg.payload), total.eq(total + self.cfg.payload),
                         have_key.eq(1)]

        # pix -> out through a one-deep register stage.
        can_load = ~self.out.valid | self.out.ready
        m.d.comb += self.pix.ready.eq(have_key & ~pix_done & can_load)
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += self.out.valid.eq(0)
            with m.If(self.out.payload.last):
                m.d.sync += [status_pending.eq(1),
                             self.status.payload.code.eq(self.out.payload.offset + 1),
                             self.status.payload.reserved.eq(total)]
        with m.If(self.pix.valid & self.pix.ready):
            p = self.pix.payload
            m.d.sync += [
                self.out.valid.eq(1),
                self.out.payload.offset.eq(count),
                self.out.payload.data[0].eq((p.r + key)[:e]),
                self.out.payload.data[1].eq(p.g ^ key[:8]),
                self.out.payload.data[2].eq(p.b),
                self.out.payload.last.eq(p.last),
                count.eq(count + 1),
            ]
            with m.If(p.last):
                m.d.sync += [count.eq(0), pix_done.eq(1)]

        m.d.comb += self.status.valid.eq(status_pending)
        with m.If(self.status.valid & self.status.ready):
            m.d.sync += [status_pending.eq(0), have_key.eq(0), pix_done.eq(0)]
        return m


def verilog(element_width: int = 16, name: str = "echo_core") -> str:
    from amaranth.back import verilog as vlog
    core = EchoCore(element_width)
    return vlog.convert(core, name=name, emit_src=False)


def manifest(element_width: int = 16, name: str = "echo_core") -> dict:
    e = element_width
    return {
        "top": name, "verilog": f"{name}.v", "clock": "clk", "reset": "rst",
        "ports": {
            "cfg": {"dir": "in", "width": 32, "fields": {"word": [0, 32]}},
            "pix": {"dir": "in", "width": 25,
                    "fields": {"r": [0, 8], "g": [8, 8], "b": [16, 8], "last": [24, 1]}},
            "out": {"dir": "out", "width": 33 + 3 * e,
                    "fields": {"offset": [0, 32], "data": [32, 3 * e], "last": [32 + 3 * e, 1]},
                    "elements": 3, "element_width": e},
            "status": {"dir": "out", "width": 32, "fields": {"code": [0, 8], "reserved": [8, 24]}},
        },
    }


def make_jobs(n_jobs: int, pixels_per_job, seed: int = 0):
    """Random jobs: returns (cfg words, pix words, list of (key, (n, 3) uint8 pixels))."""
    rng = np.random.default_rng(seed)
    sizes = ([pixels_per_job] * n_jobs if np.isscalar(pixels_per_job) else list(pixels_per_job))
    jobs = []
    for n in sizes:
        key = int(rng.integers(0, 2**32, dtype=np.uint64))
        jobs.append((key, rng.integers(0, 256, size=(n, 3), dtype=np.uint8)))
    cfg = np.array([k for k, _ in jobs], dtype=np.uint32)
    pix = np.concatenate([pixel_words(px) for _, px in jobs]) if jobs else np.zeros(0, np.uint32)
    return cfg, pix, jobs


def pixel_words(px: np.ndarray) -> np.ndarray:
    px = px.astype(np.uint32)
    w = px[:, 0] | (px[:, 1] << 8) | (px[:, 2] << 16)
    if len(w):
        w[-1] |= 1 << 24
    return w


def reference(jobs, element_width: int = 16):
    """Expected (offset, data (n, 3), last, status code, status reserved) arrays."""
    mask = (1 << element_width) - 1
    offs, datas, lasts, codes, res = [], [], [], [], []
    total = 0
    for key, px in jobs:
        total = (total + key) & 0xFFFFFFFF
        n = len(px)
        offs.append(np.arange(n, dtype=np.uint64))
        d = np.empty((n, 3), np.uint64)
        d[:, 0] = (px[:, 0].astype(np.uint64) + key) & mask
        d[:, 1] = px[:, 1] ^ (key & 0xFF)
        d[:, 2] = px[:, 2]
        datas.append(d)
        lasts.append(np.arange(n) == n - 1)
        codes.append(n & 0xFF)
        res.append(total & 0xFFFFFF)
    return (np.concatenate(offs), np.concatenate(datas), np.concatenate(lasts),
            np.array(codes, np.uint64), np.array(res, np.uint64))
