"""Pieces shared by the horizontal and vertical resample units: ports, the step table (block
RAM whose read data goes straight into registers), the split weight x sample product and the
output skid buffer."""
from __future__ import annotations

from amaranth import Const, Mux, Signal, Value, signed, unsigned
from amaranth.lib import memory, stream
from amaranth.lib.wiring import In, Out

from ..fixedpoint import RESAMPLE_ACC, RESAMPLE_PRECISION
from .dsp import registered_product
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


def weight_products(m, names, w_lo, w_hi, x, en):
    """The two partial products ``w_lo * x`` and ``w_hi * x`` (a weight split at W_LO, an 8-bit
    sample) in two :func:`~.dsp.registered_product` units named ``names``, operands and
    product all loaded on ``en``; returns ``(lo, hi)`` for :func:`join_products`."""
    lo = registered_product(m, names[0], w_lo, x, unsigned(W_LO + 8), a_en=en, b_en=en, p_en=en)
    hi = registered_product(m, names[1], w_hi, x, signed(17), a_en=en, b_en=en, p_en=en)
    return lo, hi


def join_products(lo, hi):
    """``w * p`` (signed weight, 8-bit sample) from its partial products ``lo = w[:W_LO] * p``
    and ``hi = w[W_LO:].as_signed() * p``; the caller truncates it to ACC."""
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
    registers (``entry``, one LUT level from flip-flops). Except ``entry.adv``: it gates the
    unit's ``fire``, the block RAMs' read enable, so it has a memory of its own, one bit wide
    (one block RAM holds it whatever the depth), and is a flip-flop.

    Drive ``addr`` (the address read, sampled at the clock edge when ``en``) and ``cap`` (the
    registers take the read data: that of the last enabled read).

    The memories carry ``no_rw_check``: a unit reads only the running job's bank, which the
    loader does not write while that job runs, and it captures its first read clocks after the
    bank's last write (the bank is marked full, then the runner takes it), so a read never
    meets a write to its word in the same clock. Without it Yosys adds collision logic (a
    registered address compare and a mux) between each block RAM's output and its register.
    Yosys honours it only when it builds the synchronous read port itself, so each memory has
    an asynchronous port and a register (``tbl_rd``, enabled by ``en``) that it merges into the
    block RAM. The registers are not reset: the unit captures into them before it uses them.
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
            reg = Signal(StepLayout, name=f"tbl_q{i}", reset_less=True)
            data = Value.cast(unit.tbl_data)
            q = reg.as_value()
            for lo in range(0, StepLayout.size, cols):
                hi = min(lo + cols, StepLayout.size)
                mem = memory.Memory(shape=hi - lo, depth=size, init=[],
                                    attrs={"no_rw_check": 1})
                name = f"table{i}" if split else "table"
                m.submodules[name if cols >= StepLayout.size else f"{name}_{lo}"] = mem
                wp = mem.write_port()
                rp = mem.read_port(domain="comb")
                rd = Signal(hi - lo, name=f"tbl_rd{i}_{lo}", reset_less=True)
                m.d.comb += [wp.addr.eq(unit.tbl_addr), wp.data.eq(data[lo:hi]),
                             wp.en.eq(unit.tbl_we & in_chunk), rp.addr.eq(self.addr)]
                with m.If(self.en):
                    m.d.sync += rd.eq(rp.data)
                with m.If(self.cap):
                    m.d.sync += q[lo:hi].eq(rd)
            regs.append(reg)
        if split:
            rd_sel = Signal(reset_less=True)    # memory the block RAMs' output comes from
            q_sel = Signal(reset_less=True)     # memory the registers' entry comes from
            with m.If(self.en):
                m.d.sync += rd_sel.eq(self.addr[k])
            with m.If(self.cap):
                m.d.sync += q_sel.eq(rd_sel)
            adv_mem = memory.Memory(shape=1, depth=total, init=[], attrs={"no_rw_check": 1})
            m.submodules.table_adv = adv_mem
            wp = adv_mem.write_port()
            rp = adv_mem.read_port(domain="comb")
            adv_rd = Signal(name="tbl_rd_adv", reset_less=True)
            adv_q = Signal(name="tbl_q_adv", reset_less=True)
            m.d.comb += [wp.addr.eq(unit.tbl_addr), wp.data.eq(unit.tbl_data.adv),
                         wp.en.eq(unit.tbl_we), rp.addr.eq(self.addr)]
            with m.If(self.en):
                m.d.sync += adv_rd.eq(rp.data)
            with m.If(self.cap):
                m.d.sync += adv_q.eq(adv_rd)
            self.entry = Signal(StepLayout)
            m.d.comb += [self.entry.eq(Mux(q_sel, regs[1], regs[0])), self.entry.adv.eq(adv_q)]
        else:
            self.entry = regs[0]


def output_skid(m, o):
    """The unit's output register and a skid register behind it, so that the pipeline's
    enable (``en``) comes from a flip-flop instead of the downstream ``ready``.

    Returns ``(en, push, data)``: the pipeline advances when ``en``; drive ``push`` with the
    last stage's valid and ``data`` with its pixel (taken only when ``en``). While the output
    waits, one more pixel lands in the skid register and the pipeline stops; it restarts the
    clock after the skid register empties into the output register.

    ``en`` is itself the flip-flop (``sk_empty``, not an inverter after a "skid full" flag): it
    drives the clock enables of every pipeline register and multiplier of the unit. The pixel
    registers are not reset (only the valid flags are).
    """
    sk_empty = Signal(init=1)
    sk = Signal(Pixel, reset_less=True)
    o_data = Signal(Pixel, reset_less=True)
    push = Signal()
    data = Signal(Pixel)
    m.d.comb += o.payload.eq(o_data)
    with m.If(~sk_empty):
        with m.If(o.ready):
            m.d.sync += [o_data.eq(sk), o.valid.eq(1), sk_empty.eq(1)]
    with m.Elif(push):
        with m.If(~o.valid | o.ready):
            m.d.sync += [o_data.eq(data), o.valid.eq(1)]
        with m.Else():
            m.d.sync += [sk.eq(data), sk_empty.eq(0)]
    with m.Elif(o.ready):
        m.d.sync += o.valid.eq(0)
    return sk_empty, push, data
