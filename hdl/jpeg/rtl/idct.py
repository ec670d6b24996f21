"""Dequantize, coefficient block buffer and the IDCTs of libjpeg-turbo, full size and reduced:
jidctint.c ``jpeg_idct_islow`` (8x8) and jidctred.c ``jpeg_idct_4x4`` / ``_2x2`` / ``_1x1`` (the
outputs of scaled decoding), as :mod:`hdl.jpeg.idct` computes them.

* Dequantize on the way in: the quantization RAM (4 tables x 64, zigzag order, written by the
  parser) is read at the coefficient's zigzag index, the product goes to its natural position.
* Two block buffers (ping-pong) with a written-mask each, so a block never needs clearing: the
  entropy decoder claims a free buffer at the start of each block.
* Per block, the IDCT size ``s`` (8, 4, 2 or 1) of its component: ``log2 s`` = ``ls`` for
  component 0, ``cs`` for the others (the decoder's plan, see :mod:`hdl.jpeg.rtl.decoder`).
* IDCT: pass 1 one coefficient column per clock (13-bit constants; the ``s`` workspace rows of
  that column, descaled by 11 / 12 / 13 bits for s = 8 / 4 / 2, the DC term as it is for s = 1),
  pass 2 one workspace row per clock (descale by 18 / 19 / 20 / 3, ``& 1023`` wrap, +128,
  clamp) -> one row of ``s`` samples to the line buffers (``lw_data`` bits ``[0, 8 s)``; the
  bytes past ``s`` are 128). Pass 1 skips the columns pass 2 never reads (column 4 for 4x4;
  2, 4, 6 for 2x2; all but 0 for 1x1). The passes are issued one after the other, never
  overlapping: 8 + 8 = 16 clocks per block at s = 8, 7 + 4 = 11 at s = 4, 5 + 2 = 7 at s = 2,
  1 + 1 = 2 at s = 1.

Both 1-D passes use one datapath shape for all four sizes (:func:`flat_tables`): every output is
``tmp0/tmp1 +- T0/T1 +- S0..S3`` with ``tmp`` the shifted DC (and, for s = 8, input 4) term,
``T`` two products of inputs 2 and 6, ``S`` four products of inputs 7, 5, 3, 1. The butterflies
of libjpeg are exact integer algebra, so multiplying out their sums gives the same integers; the
constants of the 20 products are picked by the block's size (s = 4 lands its outputs 2 and 3
swapped, which the output select undoes).

Pipeline (a clock per register stage; nothing stalls, so each pass is a fixed delay line):

* Input side, 4 stages: [q1] quantizer RAM read at (tq, k), the coefficient and block-end
  beside it; [q2] the RAM's data registered in fabric as it leaves the block RAM, the natural
  index looked up; [q3]-[q4] the dequantizing product (one multiplier, operands and product
  registered),
  then written to the coefficient buffer (and mask, block end) -- block ends are delayed as
  much as the coefficients, so a buffer is full only once its coefficients are in.
* Pass 1, issued one column per clock by the control as before, 9 stages to the workspace:
  [0] the column's eight coefficients read from the buffer and masked, registered; [1] those
  registered again in a copy
  per multiplier, each multiplier's constant selected by its own copy of the size (one shared
  register would drive 20-40 multipliers across the chip); [2] products: the low 17 bits of
  a coefficient times its constant in a multiplier, the top 3 bits by a table lookup; the DC
  term shifted and the rounding added; [2b] the products registered again in fabric as they
  leave the DSP rows (the DC term and size delayed alike); [3] each
  product's two halves added, ``tmp0/tmp1``; [4] pairs of products added, ``T0/T1``; [5]
  ``S0..S3`` and ``tmp0/tmp1 +- T``; [6] the eight outputs; [7] descale and select by size ->
  the workspace write of that column.
* Pass 2 runs on the control's schedule delayed by those 9 clocks (so its reads see every
  write of the block, and the next block's writes come after its last read, as before),
  10 stages: [0] the row read from the workspace, registered; [1] the multipliers' operand
  registers; [2]-[6] as pass 1 (with [2b]), all in arithmetic modulo
  2^30 (only bits up to 10 above the descale matter; the range limit's +512 rides on the
  rounding constant), both halves of each 28-bit input in multipliers (each with its own
  copies of input, size and constant); [7] descale: the 10 bits selected by size; [8] range
  limit -> ``lw_*`` registers. ``rows_done`` counts a block row's last line as it leaves.
  Latency against the unpipelined version: +3 clocks on the input side, +19 from a row's
  issue to its ``lw_en``: a block's last row leaves 21 clocks later; the clocks per block are
  unchanged. The [0] and [2b] stages exist for the ECP5 layout: a read mux's LUT levels and
  the route across the die into the DSP rows, or the route out of them and a carry chain, do
  not fit one 10 ns clock together.
* Each buffer's IDCT size is registered with its block end (not looked up from the header's
  ``ls``/``cs`` while the buffer is read).
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import idct as G
from ...rtl.dsp import registered_product
from .consts import ZIGZAG_LIST

__all__ = ["BlockIdct", "flat_tables", "flat_1d", "OUT_POS"]

WS_BITS = 28
P2_BITS = 30            # pass 2 arithmetic modulo 2^30: descale 20 + 10 bits kept at most
P1_BITS = 42            # pass 1 exact: 20-bit inputs x 17-bit constants, sums of 4, DC << 15
LO = 17                 # multiplier input split: low 17 bits unsigned, the rest signed

ODD_IN = (7, 5, 3, 1)
EVEN_IN = (2, 6)
# outputs of the common shape that a size's outputs 0.. are, by log2 size
OUT_POS = {3: (0, 1, 2, 3, 4, 5, 6, 7), 2: (0, 1, 3, 2), 1: (0, 1), 0: (0,)}
# DC term shift by log2 size (input 4 joins it << 13 at s = 8 only)
_DC_SHIFT = {3: G.CONST_BITS, 2: G.CONST_BITS + 1, 1: G.CONST_BITS + 2, 0: 0}

# descale amounts: pass 1 / pass 2, by log2 of the output size (0 = 1x1 ... 3 = 8x8)
_SH1 = {3: G.CONST_BITS - G.PASS1_BITS, 2: G.CONST_BITS - G.PASS1_BITS + 1,
        1: G.CONST_BITS - G.PASS1_BITS + 2, 0: 0}
_SH2 = {3: G.CONST_BITS + G.PASS1_BITS + 3, 2: G.CONST_BITS + G.PASS1_BITS + 3 + 1,
        1: G.CONST_BITS + G.PASS1_BITS + 3 + 2, 0: 3}


def _unit(f, k):
    d = [0] * 8
    d[k] = 1
    return f(d)


def flat_tables():
    """Per log2 size: (S, T) with S[j][i] the constant of input ODD_IN[i] in the odd sum S_j and
    T[j][i] that of input EVEN_IN[i] in the even sum T_j, such that :func:`flat_1d` is the
    size's 1-D pass (outputs at OUT_POS)."""
    tabs = {}
    # islow: outputs tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, ...: S_j = t_j,
    # T0 = tmp3, T1 = tmp2 (tmp10/13 = tmp0 +- tmp3, tmp11/12 = tmp1 +- tmp2)
    u = {k: _unit(G._islow_1d, k) for k in range(8)}
    tabs[3] = ([[u[k][3 - j] for k in ODD_IN] for j in range(4)],
               [[(u[k][0] - u[k][3]) // 2 for k in EVEN_IN],
                [(u[k][1] - u[k][2]) // 2 for k in EVEN_IN]])
    # 4x4: [tmp10 + tmp2, tmp12 + tmp0, tmp12 - tmp0, tmp10 - tmp2] (tmp10/12 = dc +- e):
    # S3 = tmp2, S2 = tmp0, S0 = -tmp0, S1 = -tmp2, T0 = e, T1 = -e -> outputs 0, 1, 3, 2
    u = {k: _unit(G._red4_1d, k) for k in range(8)}
    tabs[2] = ([[-u[k][1] for k in ODD_IN], [-u[k][0] for k in ODD_IN],
                [u[k][1] for k in ODD_IN], [u[k][0] for k in ODD_IN]],
               [[u[k][0] for k in EVEN_IN], [-u[k][0] for k in EVEN_IN]])
    # 2x2: [dc + tmp0, dc - tmp0]: S3 = tmp0, S2 = -tmp0
    u = {k: _unit(G._red2_1d, k) for k in range(8)}
    tabs[1] = ([[0] * 4, [0] * 4, [u[k][1] for k in ODD_IN], [u[k][0] for k in ODD_IN]],
               [[0, 0], [0, 0]])
    tabs[0] = ([[0] * 4 for _ in range(4)], [[0, 0], [0, 0]])
    return tabs


def flat_1d(d, sz: int, rnd: int = 0):
    """The common shape on integers (or Amaranth values): 8 outputs, ``rnd`` added to each."""
    S, T = flat_tables()[sz]
    s = [sum(d[k] * c for k, c in zip(ODD_IN, row)) for row in S]
    t = [sum(d[k] * c for k, c in zip(EVEN_IN, row)) for row in T]
    dc = (d[0] << _DC_SHIFT[sz]) + rnd
    d4 = d[4] << G.CONST_BITS if sz == 3 else 0
    tmp0, tmp1 = dc + d4, dc - d4
    e10, e13, e11, e12 = tmp0 + t[0], tmp0 - t[0], tmp1 + t[1], tmp1 - t[1]
    return [e10 + s[3], e11 + s[2], e12 + s[1], e13 + s[0],
            e13 - s[0], e12 - s[1], e11 - s[2], e10 - s[3]]


def _reg(m: Module, value, shape, name: str, ctl: bool = False) -> Signal:
    """``value`` one clock later. Only control (``ctl``: valid bits) is reset; data in flight
    is ignored after a reset, and leaving it out keeps the reset's fanout small."""
    r = Signal(shape, name=name, reset_less=not ctl)
    m.d.sync += r.eq(value)
    return r


def _delay(m: Module, value, n: int, name: str, ctl: bool = False) -> Signal:
    """``value`` ``n`` clocks later (registers only)."""
    for i in range(n):
        value = _reg(m, value, len(value), f"{name}_d{i + 1}", ctl)
    return value


def _pass(m: Module, d_in, valid, sz, sz_early, load, ctr, name: str, exact: bool):
    """Stages [1]-[6] of a 1-D pass: ``d_in`` (8 inputs) are registered into stage [1] when
    ``valid``; ``sz`` is the stage [1] size register, ``sz_early`` the size one clock before,
    valid whenever ``load``. Returns the 8 outputs of the common shape (stage [6] registers)
    and ``sz`` there."""
    tabs = flat_tables()
    width = P1_BITS if exact else P2_BITS
    shape = signed(width) if exact else unsigned(width)
    shifts = _SH1 if exact else _SH2
    rnd = {z: ((1 << (n - 1)) if n else 0) + (0 if exact else 512 << n)
           for z, n in shifts.items()}

    # [1] constants, beside the inputs: multiplier operands straight from registers
    slots = []                  # (input index, constants by size, sum kind, sum index)
    for j in range(4):
        for i, k in enumerate(ODD_IN):
            slots.append((k, [tabs[z][0][j][i] for z in range(4)], "S", j))
    for j in range(2):
        for i, k in enumerate(EVEN_IN):
            slots.append((k, [tabs[z][1][j][i] for z in range(4)], "T", j))
    prods = {}

    ticks = {}

    def tick(v: int) -> Signal:
        # ``ctr == v`` as a register (``ctr`` counts freely): no compare in front of the
        # clock enables of multipliers across the die
        if v not in ticks:
            ticks[v] = Signal(name=f"{name}_tick{v}", reset_less=True)
            m.d.sync += ticks[v].eq(ctr == (v - 1) % (1 << len(ctr)))
        return ticks[v]

    for n, (k, consts, kind, j) in enumerate(slots):
        assert all(-(1 << 16) <= c < (1 << 16) for c in consts)
        # Each multiplier gets its own copy of its input and of its constant (in its operand
        # registers) and of the size: shared, one register would drive 8-40 multipliers
        # across the chip. The copies also load at extra, harmless times (``ctr``: the size
        # is stable then, or the input unused) so that synthesis cannot merge them into one.
        szc = Signal(2, name=f"{name}_szc{n}", reset_less=True)
        with m.If(load | tick(n)):
            m.d.sync += szc.eq(sz_early)
        # [1] -> [2]: the input's low half and the constant go into the operand registers
        # and their product into the result register of one MULT18X18D (hdl/rtl/dsp.py).
        k_now = Array(Const(c, signed(17)) for c in consts)[szc]
        pl = registered_product(m, f"{name}_ml{n}", d_in[k][:LO], k_now, shape,
                                a_en=valid | tick(n))
        if exact:
            # 3 top bits: a table of (top bits, size), no second multiplier
            xt = Signal(3, name=f"{name}_xt{n}", reset_less=True)
            with m.If(valid | tick(n)):
                m.d.sync += xt.eq(d_in[k][LO:LO + 3])
            tbl = Array(Const(((v ^ 4) - 4) * consts[z], signed(21))
                        for z in range(4) for v in range(8))
            ph = _reg(m, tbl[Cat(xt, sz)], shape, f"{name}_ph{n}")
        else:
            # the top 11 bits in a second multiplier, with copies of its own
            szh = Signal(2, name=f"{name}_szh{n}", reset_less=True)
            with m.If(load | tick(n + 32)):
                m.d.sync += szh.eq(sz_early)
            ph = registered_product(m, f"{name}_mh{n}", d_in[k][LO:].as_signed(),
                                    Array(Const(c, signed(17)) for c in consts)[szh],
                                    unsigned(width - LO), a_en=valid | tick(n + 32))
        # [2b] both halves registered in fabric as they leave the DSP rows, [3] added: the
        # route out of a DSP row and a 25-bit carry chain do not fit one clock together
        pl_b = _reg(m, pl, pl.shape(), f"{name}_plb{n}")
        ph_b = _reg(m, ph, ph.shape(), f"{name}_phb{n}")
        prods.setdefault((kind, j), []).append(
            _reg(m, pl_b + (ph_b << LO), shape, f"{name}_q{n}"))
    sz2 = _reg(m, _reg(m, sz, 2, f"{name}_sz2a"), 2, f"{name}_sz2")
    d = {k: _reg(m, d_in[k], d_in[k].shape(), f"{name}_d{k}") for k in (0, 4)}
    dc_a = Signal(shape, name=f"{name}_dca", reset_less=True)
    with m.Switch(sz):
        for z in range(4):
            with m.Case(z):
                m.d.sync += dc_a.eq((d[0] << _DC_SHIFT[z]) + rnd[z])
    dc = _reg(m, dc_a, shape, f"{name}_dc")
    d4 = _reg(m, _reg(m, Mux(sz == 3, d[4] << G.CONST_BITS, 0), shape, f"{name}_d4a"), shape,
              f"{name}_d4")
    # [3]
    sz3 = _reg(m, sz2, 2, f"{name}_sz3")
    tmp0 = _reg(m, dc + d4, shape, f"{name}_tmp0")
    tmp1 = _reg(m, dc - d4, shape, f"{name}_tmp1")
    # [4] pairs
    sz4 = _reg(m, sz3, 2, f"{name}_sz4")
    pairs = {}
    for (kind, j), p in prods.items():
        pairs[kind, j] = [_reg(m, p[0] + p[1], shape, f"{name}_{kind}{j}a")]
        if len(p) == 4:
            pairs[kind, j].append(_reg(m, p[2] + p[3], shape, f"{name}_{kind}{j}b"))
    tmp0_4 = _reg(m, tmp0, shape, f"{name}_tmp0_4")
    tmp1_4 = _reg(m, tmp1, shape, f"{name}_tmp1_4")
    # [5] odd sums, even halves
    sz5 = _reg(m, sz4, 2, f"{name}_sz5")
    s = [_reg(m, pairs["S", j][0] + pairs["S", j][1], shape, f"{name}_s{j}") for j in range(4)]
    t0, t1 = pairs["T", 0][0], pairs["T", 1][0]
    e10 = _reg(m, tmp0_4 + t0, shape, f"{name}_e10")
    e13 = _reg(m, tmp0_4 - t0, shape, f"{name}_e13")
    e11 = _reg(m, tmp1_4 + t1, shape, f"{name}_e11")
    e12 = _reg(m, tmp1_4 - t1, shape, f"{name}_e12")
    # [6] outputs
    sz6 = _reg(m, sz5, 2, f"{name}_sz6")
    outs = [e10 + s[3], e11 + s[2], e12 + s[1], e13 + s[0],
            e13 - s[0], e12 - s[1], e11 - s[2], e10 - s[3]]
    o = [_reg(m, v, shape, f"{name}_o{i}") for i, v in enumerate(outs)]
    return o, sz6


def _select(m: Module, o, sz, name: str, exact: bool) -> list[Signal]:
    """Stage [7]: the size's outputs in order, descaled (pass 1: the workspace word; pass 2: the
    10 bits the range limit keeps, +512 included); past the size 0 (pass 2: 512, i.e. 128)."""
    res = []
    for i in range(8):
        v = Signal(signed(WS_BITS) if exact else 10, name=f"{name}_y{i}", reset_less=True)
        with m.Switch(sz):
            for z in range(4):
                with m.Case(z):
                    if i < len(OUT_POS[z]):
                        src = o[OUT_POS[z][i]]
                        m.d.sync += v.eq(src >> _SH1[z] if exact
                                         else src[_SH2[z]:_SH2[z] + 10])
                    else:
                        m.d.sync += v.eq(0 if exact else 512)
        res.append(v)
    return res


class BlockIdct(wiring.Component):
    def __init__(self):
        super().__init__({
            "q_we": In(1), "q_addr": In(8), "q_data": In(8),
            # log2 of the IDCT size of component 0 / of the others (stable during a scan)
            "ls": In(2, init=3), "cs": In(2, init=3),
            "claim": In(1), "can_claim": Out(1),
            "cw_valid": In(1), "cw_k": In(6), "cw_val": In(signed(12)), "cw_tq": In(2),
            "be_valid": In(1), "be_comp": In(2), "be_bcol": In(13), "be_brow": In(13),
            "be_row_end": In(1),
            # one block row of s = 1 << lw_size samples to the line buffers: component sample
            # row ``brow * s + r`` mod 32 (lw_line), block column lw_col (sample column
            # lw_col * s), samples in lw_data[0:8 s]
            "lw_en": Out(1), "lw_comp": Out(2), "lw_line": Out(5), "lw_col": Out(13),
            "lw_size": Out(2), "lw_data": Out(64),
            "rows_done": Out(16),       # MCU rows completely written
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.qmem = qmem = memory.Memory(shape=8, depth=256, init=[])
        qw = qmem.write_port()
        qr = qmem.read_port(transparent_for=())
        m.d.comb += [qw.addr.eq(self.q_addr), qw.data.eq(self.q_data), qw.en.eq(self.q_we)]

        # ---- input side: [q1] quantizer read, [q2] its data registered, [q3]-[q4] product
        m.d.comb += qr.addr.eq(Cat(self.cw_k, self.cw_tq))
        s1_cw = _reg(m, self.cw_valid, 1, "s1_cw", ctl=True)
        s1_k = _reg(m, self.cw_k, 6, "s1_k")
        s1_val = _reg(m, self.cw_val, signed(12), "s1_val")
        s1_be = _reg(m, self.be_valid, 1, "s1_be", ctl=True)
        meta_in = Cat(self.be_comp, self.be_bcol, self.be_brow, self.be_row_end)
        s1_meta = _reg(m, meta_in, len(meta_in), "s1_meta")
        s2_cw = _reg(m, s1_cw, 1, "s2_cw", ctl=True)
        s2_be = _reg(m, s1_be, 1, "s2_be", ctl=True)
        s2_meta = _reg(m, s1_meta, len(s1_meta), "s2_meta")
        s2_nat = _reg(m, Array(Const(z, 6) for z in ZIGZAG_LIST)[s1_k], 6, "s2_nat")
        # [q2] the quantizer value registered as it leaves the block RAM (its clock-to-output
        # is over half the clock), [q3] it and the coefficient in a MULT18X18D's operand
        # registers, [q4] the product in its result register (hdl/rtl/dsp.py)
        prod = registered_product(m, "dequant_mul", _reg(m, s1_val, signed(12), "s2_val"),
                                  _reg(m, qr.data, 8, "s2_q"), signed(20))
        s3_be = _reg(m, s2_be, 1, "s3_be", ctl=True)
        # the coefficient, its natural index and the block end beside the product
        wr_cw = _reg(m, _reg(m, s2_cw, 1, "s3_cw", ctl=True), 1, "s4_cw", ctl=True)
        wr_be = _reg(m, s3_be, 1, "s4_be", ctl=True)
        wr_meta = _reg(m, _reg(m, s2_meta, len(s2_meta), "s3_meta"), len(s2_meta), "s4_meta")
        nat = _reg(m, _reg(m, s2_nat, 6, "s3_nat"), 6, "s4_nat")

        # ---- coefficient buffers -------------------------------------------------------------
        # One RAM per coefficient row (natural order), addressed by (buffer, column): pass 1
        # reads one column of the buffer ``rb`` (all eight rows) per clock.
        mask = [Signal(64, name=f"mask{b}") for b in range(2)]
        full = [Signal(name=f"full{b}") for b in range(2)]
        meta = [Signal(len(wr_meta), name=f"meta{b}") for b in range(2)]
        # each buffer's IDCT size, fixed when its block ends: ``ls``/``cs`` come from the
        # parser's header registers across the die, and pass 1's column count and the buffer
        # release depend on the size, so they must not see that route
        bsz = [Signal(2, name=f"bsz{b}") for b in range(2)]
        wb = Signal()
        rb = Signal()
        claimed = Signal(2)
        free = Signal()
        m.d.comb += self.can_claim.eq(claimed < 2)
        m.d.sync += claimed.eq(claimed + self.claim - free)

        c1 = Signal(3)
        coef_rd = []
        for r in range(8):
            mem = memory.Memory(shape=signed(20), depth=16, init=[])
            m.submodules[f"coef{r}"] = mem
            w = mem.write_port()
            m.d.comb += [w.addr.eq(Cat(nat[:3], wb)), w.data.eq(prod),
                         w.en.eq(wr_cw & (nat[3:] == r))]
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(Cat(c1, rb))
            coef_rd.append(rp.data)
        for b in range(2):
            with m.If(wr_cw & (wb == b)):
                m.d.sync += mask[b].eq(mask[b] | (Const(1, 1) << nat))     # 64 bits wide
            with m.If(wr_be & (wb == b)):
                m.d.sync += [full[b].eq(1), meta[b].eq(wr_meta),
                             bsz[b].eq(Mux(wr_meta[:2] == 0, self.ls, self.cs))]
            with m.If(free & (rb == b)):
                m.d.sync += [mask[b].eq(0), full[b].eq(0)]
        with m.If(wr_be):
            m.d.sync += wb.eq(~wb)

        # ---- pass 1: columns -----------------------------------------------------------------
        p1 = Signal()               # pass 1 issuing columns of buffer rb
        start1 = Signal()           # pass 1 starts on buffer rb next clock
        rmeta = Signal(len(wr_meta))
        m.d.comb += rmeta.eq(Mux(rb, meta[1], meta[0]))
        sz1 = Signal(2)             # log2 IDCT size of the block in buffer rb
        m.d.comb += sz1.eq(Mux(rb, bsz[1], bsz[0]))
        rmask = Signal(64)
        m.d.comb += rmask.eq(Mux(rb, mask[1], mask[0]))
        # [0] the column read and masked, registered: the distributed-RAM read mux and the
        # mask are 5 LUT levels, and the multipliers fed from here sit in DSP rows across the
        # die, so the read and the route to the multipliers get a clock each
        d1 = []
        for r in range(8):
            d1.append(_reg(m, Mux(rmask.bit_select(Cat(c1, Const(r, 3)), 1), coef_rd[r], 0),
                           signed(20), f"p1_in{r}"))
        # the pass's control follows the column by the same clock; sz1 is the block's from
        # start1 to its last column (rb and its size stay put), p1_sz0 one clock later
        p1_v0 = _reg(m, p1, 1, "p1_v0", ctl=True)
        p1_load0 = _reg(m, start1, 1, "p1_load0", ctl=True)
        p1_sz0 = _reg(m, sz1, 2, "p1_sz0")
        p1_sz = _reg(m, p1_sz0, 2, "p1_sz")
        # free-running: only tells the copies of the size apart (see _pass)
        ctr = Signal(6, reset_less=True)
        m.d.sync += ctr.eq(ctr + 1)
        o1, p1_sz6 = _pass(m, d1, p1_v0, p1_sz, p1_sz0, p1_load0, ctr, "p1", exact=True)
        ws_data = _select(m, o1, p1_sz6, "p1", exact=True)
        # [7]: the write, 9 clocks after the column was issued
        P1_LAT = 9
        ws_we = _delay(m, p1, P1_LAT, "p1_v", ctl=True)
        ws_col = _delay(m, c1, P1_LAT, "p1_c")
        # workspace (row = pass 1 output, column = coefficient column): registers, written a
        # column at a time, read a row at a time
        ws = [[Signal(signed(WS_BITS), name=f"ws{r}_{c}", reset_less=True) for c in range(8)]
              for r in range(8)]
        for c in range(8):
            with m.If(ws_we & (ws_col == c)):
                m.d.sync += [ws[r][c].eq(ws_data[r]) for r in range(8)]

        # the columns pass 2 reads: all for 8x8; not 4 for 4x4; 0, 1, 3, 5, 7 for 2x2; 0 for 1x1
        c1_last = Signal()
        c1_next = Signal(3)
        m.d.comb += c1_last.eq(Mux(sz1 == 0, 1, c1 == 7))
        with m.Switch(sz1):
            with m.Case(2):
                m.d.comb += c1_next.eq(Mux(c1 == 3, 5, c1 + 1))
            with m.Case(1):
                m.d.comb += c1_next.eq(Mux(c1 == 0, 1, c1 + 2))
            with m.Default():
                m.d.comb += c1_next.eq(c1 + 1)

        # ---- pass 2: rows --------------------------------------------------------------------
        r2 = Signal(3)
        p2 = Signal()
        meta2 = Signal(len(wr_meta))
        sz2 = Signal(2)
        m2_comp, m2_bcol, m2_brow, m2_end = meta2[:2], meta2[2:15], meta2[15:28], meta2[28]
        line = Signal(5)
        with m.Switch(sz2):
            for sz in range(4):
                with m.Case(sz):
                    m.d.comb += line.eq(Cat(r2[:sz], m2_brow)[:5])
        r2_last = Signal()
        m.d.comb += r2_last.eq(r2 == (Const(1, 4) << sz2) - 1)
        # the row's reads happen P1_LAT clocks after it is issued, like pass 1's writes
        rd_row = _delay(m, r2, P1_LAT, "p2_rr")
        rd_v_e = _delay(m, p2, P1_LAT - 1, "p2_rv", ctl=True)
        rd_v = _reg(m, rd_v_e, 1, "p2_rv", ctl=True)
        rd_sz_e = _delay(m, sz2, P1_LAT - 1, "p2_rs")
        rd_sz = _reg(m, rd_sz_e, 2, "p2_rs")
        # [0] the row read, registered: the row select drives 224 read muxes, and the
        # multipliers fed from here sit in DSP rows across the die; the pass's control
        # follows one clock later
        d2 = [_reg(m, Array(ws[r][c] for r in range(8))[rd_row], signed(WS_BITS), f"p2_in{c}")
              for c in range(8)]
        rd_v0 = _reg(m, rd_v, 1, "p2_v0", ctl=True)
        rd_sz0 = _reg(m, rd_sz, 2, "p2_sz0")
        rd_sz1 = _reg(m, rd_sz0, 2, "p2_sz1")
        o2, p2_sz6 = _pass(m, d2, rd_v0, rd_sz1, rd_sz, rd_v, ctr, "p2", exact=False)
        t = _select(m, o2, p2_sz6, "p2", exact=False)
        # [8] range limit: clamp(t - 384, 0, 255); t - 384 is t[:8] ^ 0x80 inside the range
        samples = []
        for c in range(8):
            px = Signal(8, name=f"px{c}", reset_less=True)
            m.d.sync += px.eq(Mux(t[c] < 384, 0, Mux(t[c] > 639, 255, t[c][:8] ^ 0x80)))
            samples.append(px)
        P2_LAT = P1_LAT + 10
        o_en, o_end = _delay(m, Cat(p2, m2_end & r2_last), P2_LAT, "lw_v", ctl=True)
        o_meta = _delay(m, Cat(m2_comp, line, m2_bcol, sz2), P2_LAT, "lw_meta")
        o_comp, o_line, o_col, o_size = o_meta[0:2], o_meta[2:7], o_meta[7:20], o_meta[20:22]
        m.d.comb += [self.lw_en.eq(o_en), self.lw_comp.eq(o_comp), self.lw_line.eq(o_line),
                     self.lw_col.eq(o_col), self.lw_size.eq(o_size),
                     self.lw_data.eq(Cat(*samples))]
        with m.If(o_en & o_end):
            m.d.sync += self.rows_done.eq(self.rows_done + 1)

        # pass 1 writes one workspace column per clock while pass 2 reads one row per clock,
        # so they must not overlap: pass 1 waits for pass 2's last row.
        p2_last = p2 & r2_last
        m.d.comb += start1.eq(~p1 & Mux(rb, full[1], full[0]) & (~p2 | p2_last))
        with m.If(start1):
            m.d.sync += [p1.eq(1), c1.eq(0)]
        with m.If(p1):
            m.d.sync += c1.eq(c1_next)
            with m.If(c1_last):
                m.d.comb += free.eq(1)
                m.d.sync += [p1.eq(0), rb.eq(~rb), p2.eq(1), r2.eq(0), meta2.eq(rmeta),
                             sz2.eq(sz1)]
        with m.If(p2):
            m.d.sync += r2.eq(r2 + 1)
            with m.If(r2_last):
                with m.If(~(p1 & c1_last)):
                    m.d.sync += p2.eq(0)
        # anything in flight: block ends on the input side, rows in the passes' delay lines
        drain = Signal(range(P2_LAT + 2))
        with m.If(p1 | p2):
            m.d.sync += drain.eq(P2_LAT + 1)
        with m.Elif(drain != 0):
            m.d.sync += drain.eq(drain - 1)
        m.d.comb += self.busy.eq(p1 | p2 | full[0] | full[1] | s1_be | s2_be | s3_be | wr_be
                                 | (drain != 0))
        return m
