"""Pieces shared by the horizontal and vertical resample units: ports, the step table (block
RAM whose read data goes straight into registers), the split weight x sample product and the
output skid buffer."""
from __future__ import annotations

from amaranth import Const, Mux, Signal, Value, signed
from amaranth.lib import memory, stream
from amaranth.lib.wiring import In, Out

from ..fixedpoint import RESAMPLE_ACC, RESAMPLE_PRECISION
from .layouts import Pixel, StepLayout

#: Pillow's rounding bias: the accumulator starts at one half of an output step.
BIAS = 1 << (RESAMPLE_PRECISION - 1)
ACC = signed(RESAMPLE_ACC.width)

#: A weight splits into its low W_LO bits (unsigned) and the signed rest, so that each partial
#: product fits one MULT18X18D and no carry chain joins them in the multipliers' clock.
W_LO = 17

#: Data width of one DP16KD at each power-of-two depth.
_EBR_WIDTH = {512: 36, 1024: 18, 2048: 9, 4096: 4, 8192: 2, 16384: 1}


def clip8(acc):
    """Pillow's clip8(): ``clamp(acc >> 22, 0, 255)`` for a signed accumulator value.

    Written with the sign bit and an OR of the bits above the byte: compares against 0 and 255
    would each become a carry chain."""
    v = acc.as_signed() >> RESAMPLE_PRECISION
    neg = v[-1]
    over = v[8:-1].any() if len(v) > 9 else Const(0, 1)
    return Mux(neg, 0, Mux(over, 255, v[:8]))


def partial_products(w, p):
    """``w * p`` (signed weight, 8-bit sample) as ``(lo, hi)``: ``w * p == (hi << W_LO) + lo``."""
    return w[:W_LO] * p, w[W_LO:].as_signed() * p


def join_products(lo, hi):
    """The product from :func:`partial_products`; the caller truncates it to ACC as before."""
    return (hi << W_LO) + lo


def unit_members(depth: int, banks: int) -> dict:
    """Ports every resample unit has: pixel streams in and out, this job's schedule (``run``,
    ``steps``, ``mode``, ``bank``) and the write port of its step table (``tbl_*``)."""
    return {
        "i": In(stream.Signature(Pixel)),
        "o": Out(stream.Signature(Pixel)),
        "run": In(1),
        "steps": In(16),
        "mode": In(1),
        "bank": In(range(banks)) if banks > 1 else In(1),
        "tbl_addr": In(range(depth * banks)),
        "tbl_data": In(StepLayout),
        "tbl_we": In(1),
    }


class StepTable:
    """The unit's table of ``banks`` schedules: the job loader writes it through the unit's
    ``tbl_*`` ports while the unit reads the running job's bank.

    A deep table spans several block RAMs, and a read mux across them behind a block RAM's slow
    clock-to-output breaks a 10 ns clock. So the table is built as (at most) two memories, a
    power-of-two deep one and the rest, each mapping onto block RAMs without a depth mux; each
    one's read data goes straight into its own register, and the entry is picked among those
    registers (``entry``, one LUT level from flip-flops).

    Drive ``addr`` (the address read, sampled at the clock edge when ``en``) and ``cap`` (the
    registers take the read data: that of the last enabled read).
    """

    def __init__(self, m, unit):
        total = unit.depth * unit.banks
        k = max(total.bit_length() - 1, 0)
        split = total > 512 and (1 << k) != total
        sizes = [1 << k, total - (1 << k)] if split else [total]
        self.addr = Signal(range(total))
        self.en = Signal()
        self.cap = Signal()
        regs = []
        for i, size in enumerate(sizes):
            # A power-of-two deep memory is cut into columns exactly as wide as one block RAM
            # at that depth: Yosys would otherwise mix RAM shapes and add a depth mux.
            cols = _EBR_WIDTH.get(size, StepLayout.size)
            in_chunk = (unit.tbl_addr[k] == i) if split else 1
            reg = Signal(StepLayout, name=f"tbl_q{i}")
            data = Value.cast(unit.tbl_data)
            q = reg.as_value()
            for lo in range(0, StepLayout.size, cols):
                hi = min(lo + cols, StepLayout.size)
                mem = memory.Memory(shape=hi - lo, depth=size, init=[])
                name = f"table{i}" if split else "table"
                m.submodules[name if cols >= StepLayout.size else f"{name}_{lo}"] = mem
                wp = mem.write_port()
                rp = mem.read_port()
                m.d.comb += [wp.addr.eq(unit.tbl_addr), wp.data.eq(data[lo:hi]),
                             wp.en.eq(unit.tbl_we & in_chunk),
                             rp.addr.eq(self.addr), rp.en.eq(self.en)]
                with m.If(self.cap):
                    m.d.sync += q[lo:hi].eq(rp.data)
            regs.append(reg)
        if split:
            rd_sel = Signal()       # memory the block RAMs' output comes from
            q_sel = Signal()        # memory the registers' entry comes from
            with m.If(self.en):
                m.d.sync += rd_sel.eq(self.addr[k])
            with m.If(self.cap):
                m.d.sync += q_sel.eq(rd_sel)
            self.entry = Signal(StepLayout)
            m.d.comb += self.entry.eq(Mux(q_sel, regs[1], regs[0]))
        else:
            self.entry = regs[0]


def output_skid(m, o):
    """The unit's output register and a skid register behind it, so that the pipeline's
    enable (``en``) comes from a flip-flop instead of the downstream ``ready``.

    Returns ``(en, push, data)``: the pipeline advances when ``en``; drive ``push`` with the
    last stage's valid and ``data`` with its pixel (taken only when ``en``). While the output
    waits, one more pixel lands in the skid register and the pipeline stops; it restarts the
    clock after the skid register empties into the output register.
    """
    sk_valid = Signal()
    sk = Signal(Pixel)
    push = Signal()
    data = Signal(Pixel)
    en = Signal()
    m.d.comb += en.eq(~sk_valid)
    with m.If(sk_valid):
        with m.If(o.ready):
            m.d.sync += [o.payload.eq(sk), o.valid.eq(1), sk_valid.eq(0)]
    with m.Elif(push):
        with m.If(~o.valid | o.ready):
            m.d.sync += [o.payload.eq(data), o.valid.eq(1)]
        with m.Else():
            m.d.sync += [sk.eq(data), sk_valid.eq(1)]
    with m.Elif(o.ready):
        m.d.sync += o.valid.eq(0)
    return en, push, data
