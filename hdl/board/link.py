"""The host link: request frames from the UART into the core's ``cfg``/``pix`` streams, and the
core's ``out``/``status`` streams back as response frames (see :mod:`hdl.board.protocol`).

::

    uart rx -> rx FIFO (window bytes) -> parser ---- cfg/pix ----> core
                                      \\-> credits --\\
    uart tx <----------------- serializer <- out FIFO <-- out ---- core
                                          <----------- status ---- core

The parser owns the core's reset (``core_rst``): any request it has to abort half-way (lengths
that do not match the job header, the host going quiet mid-frame, a UART receive error) resets
the core, so the next request starts clean. Every request gets exactly one 'S' frame.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..job import HEADER_WORDS
from ..resample import STEP_WORDS
from ..rtl.layouts import PixelIn, tensor_beat
from ..rtl.top import JpegByte, StatusWord
from ..spec import PipelineSpec
from .protocol import (CREDIT_UNIT, HEADER_BYTES, INFO_BYTES, REQ_SYNC, RESP_SYNC, LinkStatus,
                       ReqType, RespType, info_bytes)

__all__ = ["HostLink", "DEFAULT_WINDOW", "DEFAULT_OUT_DEPTH"]

DEFAULT_WINDOW = 4096        # receive FIFO bytes (two EBRs)
DEFAULT_OUT_DEPTH = 256      # tensor beats buffered towards the UART


def _bytes_const(data: bytes) -> list:
    return [Const(b, 8) for b in data]


class _Fifo(Elaboratable):
    """Amaranth's ``SyncFIFOBuffered`` (its ports but the levels), with the block RAM marked
    ``no_rw_check``: a read and a write never meet on one word (the RAM holds ``depth - 2``
    words; it is read only when not empty and written only when not full, and the two pointers
    are equal only then), and without the mark Yosys puts collision logic (a registered compare
    and a mux) between the block RAM's output and ``r_data``'s users. Yosys honours it only for
    a synchronous read port it builds itself, so the port is asynchronous and ``ram_q`` a
    register that it merges into the block RAM.

    ``r_data`` is a second register straight after ``ram_q`` with nothing but its enable in
    front, which ``bram_outreg`` moves into the DP16KD's output register: the block RAM's own
    clock-to-output (5.5 ns on the ECP5-85F, speed 6) then no longer starts the consumer's
    paths. A word takes one clock more from ``w_en`` to ``r_rdy`` than in
    ``SyncFIFOBuffered``; the capacity is still ``depth``. ``w_rdy`` is a register kept with
    the level, not a compare of it (it goes to the writer: the UART, the core)."""

    def __init__(self, *, width: int, depth: int):
        assert depth >= 3
        self.width, self.depth = width, depth
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal(init=1)
        self.r_data = Signal(width, reset_less=True)
        self.r_en = Signal()
        self.r_rdy = Signal()

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 2
        level = Signal(range(inner + 1))

        def incr(v):
            return v + 1 if inner == 1 << len(v) else Mux(v == inner - 1, 0, v + 1)

        ram_q = Signal(self.width, reset_less=True)
        ram_q_valid = Signal()
        out_load = Signal()         # ``ram_q`` moves to ``r_data``
        nonempty = Signal()         # ``level != 0``, kept with it
        do_write = self.w_rdy & self.w_en
        m.d.comb += out_load.eq(ram_q_valid & (~self.r_rdy | self.r_en))
        do_read = nonempty & (~ram_q_valid | out_load)
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        # The storage in lanes no deeper than one DP16KD shape (512 x 36 ... 16384 x 1): a lane
        # two EBRs deep puts a LUT mux after their clock-to-output, too slow for 100 MHz.
        lane = self.width
        for shape_depth, shape_width in ((512, 36), (1024, 18), (2048, 9), (4096, 4),
                                         (8192, 2), (16384, 1)):
            if inner <= shape_depth:
                lane = min(self.width, shape_width)
                break
        read_data = []
        for i, lo in enumerate(range(0, self.width, lane)):
            hi = min(self.width, lo + lane)
            m.submodules[f"storage{i}" if lane < self.width else "storage"] = mem = \
                memory.Memory(shape=hi - lo, depth=inner, init=[], attrs={"no_rw_check": 1})
            wp = mem.write_port()
            rp = mem.read_port(domain="comb")
            m.d.comb += [wp.addr.eq(produce), wp.data.eq(self.w_data[lo:hi]),
                         wp.en.eq(do_write), rp.addr.eq(consume)]
            read_data.append(rp.data)
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_read):
            m.d.sync += [ram_q.eq(Cat(*read_data)), consume.eq(incr(consume)),
                         ram_q_valid.eq(1)]
        with m.Elif(out_load):
            m.d.sync += ram_q_valid.eq(0)
        with m.If(out_load):
            m.d.sync += [self.r_data.eq(ram_q), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        # The flags from compares of ``level`` itself, beside the handshakes rather than
        # behind them and the count: they close 10 ns where ``level_next``'s did not.
        m.d.sync += [level.eq(Mux(do_write == do_read, level,
                                  Mux(do_write, level + 1, level - 1))),
                     nonempty.eq(do_write | (nonempty & ~((level == 1) & do_read))),
                     self.w_rdy.eq(do_read | (self.w_rdy & ~((level == inner - 1) & do_write)))]
        return m


def _registered_read(m: Module, fifo, name: str):
    """The consumer's registers behind a FIFO's read side. Returns (data, valid, take):
    ``data``/``valid`` are flip-flops; assert ``take`` to consume them.

    A second register (``spare``) takes the FIFO's word while ``data`` is full and not taken,
    so that the FIFO's read enable is a flip-flop (``~spare_valid``) rather than the consumer's
    ``take``: logic of its state machine, which would otherwise reach the FIFO's level, its
    pointers and its block RAM enables. The consumer gets the next word the clock after a take,
    when the FIFO has it."""
    data = Signal(fifo.width, name=f"{name}_data", reset_less=True)
    valid = Signal(name=f"{name}_valid")
    take = Signal(name=f"{name}_take")
    load = ~valid | take
    spare = Signal(fifo.width, name=f"{name}_spare", reset_less=True)
    spare_valid = Signal(name=f"{name}_spare_valid")
    m.d.comb += fifo.r_en.eq(~spare_valid)
    with m.If(load):
        with m.If(spare_valid):
            m.d.sync += [data.eq(spare), valid.eq(1), spare_valid.eq(0)]
        with m.Else():
            m.d.sync += [data.eq(fifo.r_data), valid.eq(fifo.r_rdy)]
    with m.Elif(fifo.r_rdy & ~spare_valid):
        m.d.sync += [spare.eq(fifo.r_data), spare_valid.eq(1)]
    return data, valid, take


class HostLink(wiring.Component):
    """Frame parser and serializer between UART bytes and one :class:`PreprocessCore`.

    ``timeout_cycles``: cycles without any progress inside a request before it is aborted
    (TIMEOUT). ``divisor`` is only reported in the ping answer.
    """

    def __init__(self, spec: PipelineSpec, *, timeout_cycles: int, divisor: int = 0,
                 window: int = DEFAULT_WINDOW, out_depth: int = DEFAULT_OUT_DEPTH):
        if window % CREDIT_UNIT or not CREDIT_UNIT <= window <= 0xFFFF:
            raise ValueError(f"window {window} must be a multiple of {CREDIT_UNIT} below 65536")
        self.spec = spec
        self.window = window
        self.out_depth = out_depth
        self.timeout_cycles = timeout_cycles
        self.divisor = divisor
        self.element_bits = spec.output.element_bits
        ports = {
            "rx": In(stream.Signature(8, always_ready=True)),
            "rx_frame_error": In(1),
            "tx": Out(stream.Signature(8)),
            "cfg": Out(stream.Signature(unsigned(32))),
            "pix": Out(stream.Signature(PixelIn)),
            "out": In(stream.Signature(tensor_beat(self.element_bits))),
            "status": In(stream.Signature(StatusWord)),
            "core_rst": Out(1),
            "busy": Out(1),
            "error": Out(1),
        }
        if spec.jpeg_decoder:
            ports["jpg"] = Out(stream.Signature(JpegByte))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        E = self.element_bits
        beat_bytes = 3 * E // 8

        # ---- receive FIFO and credits -----------------------------------------------------------
        m.submodules.rx_fifo = rxf = _Fifo(width=8, depth=self.window)
        m.d.comb += [rxf.w_data.eq(self.rx.payload), rxf.w_en.eq(self.rx.valid)]
        rx_fault = Signal()
        m.d.comb += rx_fault.eq(self.rx_frame_error | (self.rx.valid & ~rxf.w_rdy))
        rx_errors = Signal(8)
        with m.If(rx_fault & (rx_errors != 0xFF)):
            m.d.sync += rx_errors.eq(rx_errors + 1)

        pop = Signal()
        byte, have, rx_take = _registered_read(m, rxf, "rx")
        took = Signal()
        m.d.comb += [rx_take.eq(pop), took.eq(pop & have)]

        credit_acc = Signal(range(CREDIT_UNIT))
        credit_units = Signal(range(self.window // CREDIT_UNIT + 2))
        credit_any = Signal()       # ``credit_units != 0``, kept with it (the serializer's pick)
        credit_units_next = Signal.like(credit_units)
        credit_take = Signal()
        credit_clear = Signal()
        credit_inc = took & (credit_acc == CREDIT_UNIT - 1)
        m.d.comb += credit_units_next.eq(Mux(credit_take, 0, credit_units) + credit_inc)
        with m.If(credit_clear):
            m.d.sync += [credit_acc.eq(0), credit_units.eq(0), credit_any.eq(0)]
        with m.Else():
            with m.If(took):
                m.d.sync += credit_acc.eq(credit_acc + 1)
            m.d.sync += [credit_units.eq(credit_units_next),
                         credit_any.eq(credit_units_next != 0)]

        # ---- out FIFO (core -> serializer) ------------------------------------------------------
        m.submodules.out_fifo = outf = _Fifo(width=3 * E, depth=self.out_depth)
        m.d.comb += [outf.w_data.eq(self.out.payload.data), outf.w_en.eq(self.out.valid),
                     self.out.ready.eq(outf.w_rdy)]
        out_fire = self.out.valid & self.out.ready
        beat, beat_valid, beat_take = _registered_read(m, outf, "beat")
        queued = Signal(range(self.out_depth + 2))     # beats written, not yet taken for sending
        beat_pop = Signal()
        # ``queued == 0`` as a register kept with it, and ``min(queued, 255)`` a clock behind
        # it: they choose and fill the serializer's next frame (an add and a compare behind
        # the core's output handshake missed 10 ns). IDLE picks a DATA frame on ``out_empty``
        # and LOAD, a clock later, reads ``queued_255``; no beat leaves in between, so it is at
        # least 1 then, and at most the beats that are there.
        out_empty = Signal(init=1)
        queued_255 = Signal(8)
        m.d.sync += [queued.eq(queued + out_fire - beat_pop),
                     out_empty.eq(~out_fire & (out_empty | ((queued == 1) & beat_pop))),
                     queued_255.eq(Mux(queued > 255, 255, queued))]

        # Raster-order check of the core's offset tags.
        step = 3 if spec.output.layout == "HWC" else 1
        expect = Signal(32)
        order_err = Signal()
        order_clear = Signal()
        with m.If(out_fire):
            m.d.sync += expect.eq(expect + step)
            with m.If(self.out.payload.offset != expect):
                m.d.sync += order_err.eq(1)

        # ---- parser <-> serializer handshakes ---------------------------------------------------
        err_pending = Signal()
        err_code = Signal(8)
        info_pending = Signal()
        job_sent = Signal()
        last_code = Signal(8)
        m.d.comb += self.error.eq(last_code != 0)

        # The core's status word waits in a register of the link: ``status.ready`` is then a
        # flip-flop, so the serializer's choice (which depends on the out FIFO's level) does
        # not reach into the core's sequencer. A reset of the core drops it with the core.
        st_full = Signal()
        st_code = Signal(8)
        st_take = Signal()
        m.d.comb += self.status.ready.eq(~st_full)
        with m.If(self.core_rst | st_take):
            m.d.sync += st_full.eq(0)
        with m.Elif(self.status.valid & ~st_full):
            m.d.sync += [st_full.eq(1), st_code.eq(self.status.payload.code)]
        # the code sent: ORDER for an OK job whose tags were out of order (registered: the
        # status goes out only after every beat, long after the last tag was checked)
        st_word = Signal(8)
        m.d.sync += st_word.eq(Mux(order_err & (st_code == 0), LinkStatus.ORDER, st_code))
        status_waiting = self.status.valid | st_full

        # ---- parser ----------------------------------------------------------------------------
        rtype = Signal(8)
        n_cfg = Signal(32)
        n_data = Signal(32)
        hsum = Signal(8)
        hidx = Signal(range(HEADER_BYTES))
        mod3 = Signal(2)
        word = Signal(32)
        pixel = Signal(24)
        bidx = Signal(2)
        widx = Signal(range(HEADER_WORDS + 1))
        cfg_left = Signal(32)
        data_left = Signal(32)
        frame_left = Signal(35)         # payload bytes of the current request not yet taken
        bad_hdr_reported = Signal()
        # Cycles without progress inside a request, saturating at ``timeout_cycles``, kept one
        # cycle late: ``idle`` is last cycle's count and ``quiet_r`` whether last cycle reset it
        # (see the watchdog below), both flip-flops, so the progress signals (handshakes with
        # the core) only feed a flip-flop, not the counter's reset.
        idle = Signal(range(self.timeout_cycles + 1))
        quiet_r = Signal(init=1)

        def report(code):
            m.d.sync += [err_pending.eq(1), err_code.eq(code)]

        # n_data mod 3, a byte at a time: 256 = 4 = 1 (mod 3), so a byte is its 2-bit digits' sum.
        digit_sum = byte[0:2] + byte[2:4] + byte[4:6] + byte[6:8] + mod3
        mod3_lut = Array([Const(i % 3, 2) for i in range(16)])

        frame_none = Signal(init=1)     # ``frame_left == 0``, kept with it
        with m.If(took):
            m.d.sync += [frame_left.eq(frame_left - 1), frame_none.eq(frame_left == 1)]

        in_request = Signal()
        abort = Signal()
        timed_out = Signal()
        # A job request: RGB pixels, or (with the decoder) a JPEG file.
        is_jpeg = (rtype == ReqType.JPEG) if spec.jpeg_decoder else Const(0)
        job_type = (rtype == ReqType.RGB) | is_jpeg
        jpeg_job = Signal()
        # The core's reset is registered: it fans out to every register of the core.
        reset_core = Signal()
        m.d.sync += self.core_rst.eq(reset_core)

        # ``pix.valid``/``jpg.valid`` as flip-flops set and cleared with the PUSH_PIX/PUSH_JPG
        # transitions, not a decode of the state register: they reach the core's sequencer
        # (its status code's enable) through the pixel source
        push_pix = Signal()
        push_jpg = Signal()
        push_last = Signal()        # ``data_left == 0`` for the word pushed
        m.d.comb += [self.pix.valid.eq(push_pix), self.pix.payload.rgb.eq(pixel),
                     self.pix.payload.last.eq(push_last)]
        if spec.jpeg_decoder:
            m.d.comb += [self.jpg.valid.eq(push_jpg), self.jpg.payload.byte.eq(pixel[:8]),
                         self.jpg.payload.last.eq(push_last)]

        def check_abort():
            """Abort the request: the host went quiet (or the core stopped) mid-request, or a
            received byte was lost. Placed last in a state, so it overrides its transitions."""
            with m.If(abort):
                m.d.comb += reset_core.eq(1)
                m.d.sync += [push_pix.eq(0), push_jpg.eq(0)]
                report(Mux(rx_fault, LinkStatus.RX_ERROR, LinkStatus.TIMEOUT))
                m.next = "ERR_HUNT"
        with m.FSM(name="parse") as parse_fsm:
            with m.State("HUNT"):
                m.d.comb += pop.eq(1)
                with m.If(have & (byte == REQ_SYNC)):
                    m.d.sync += [hsum.eq(REQ_SYNC), hidx.eq(1), mod3.eq(0)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += [pop.eq(1), in_request.eq(1)]
                with m.If(have):
                    m.d.sync += [hsum.eq(hsum + byte), hidx.eq(hidx + 1)]
                    with m.If(hidx == 1):
                        m.d.sync += rtype.eq(byte)
                    with m.If((hidx >= 2) & (hidx < 6)):
                        m.d.sync += n_cfg.eq(Cat(n_cfg[8:], byte))
                    with m.If((hidx >= 6) & (hidx < 10)):
                        m.d.sync += [n_data.eq(Cat(n_data[8:], byte)),
                                     mod3.eq(mod3_lut[digit_sum])]
                    with m.If(hidx == HEADER_BYTES - 1):
                        m.next = "CHECK"
                check_abort()
            with m.State("CHECK"):
                frame_bytes = Cat(Const(0, 2), n_cfg) + n_data
                m.d.sync += [frame_left.eq(frame_bytes), frame_none.eq(frame_bytes == 0),
                             widx.eq(0),
                             bidx.eq(0), cfg_left.eq(n_cfg), data_left.eq(n_data)]
                with m.If(hsum != 0):
                    with m.If(bad_hdr_reported):
                        m.next = "HUNT"
                    with m.Else():
                        report(LinkStatus.BAD_HEADER)
                        m.d.sync += bad_hdr_reported.eq(1)
                        m.next = "ERR_HUNT"
                with m.Else():
                    m.d.sync += bad_hdr_reported.eq(0)
                    with m.If(rtype == ReqType.PING):
                        m.d.comb += credit_clear.eq(1)
                        m.d.sync += info_pending.eq(1)
                        m.next = "INFO"
                    with m.Elif(job_type):
                        if spec.resize is not None:
                            bad_cfg = n_cfg < HEADER_WORDS
                        else:
                            bad_cfg = n_cfg != HEADER_WORDS
                        with m.If(bad_cfg | (n_data == 0) | ((mod3 != 0) & ~is_jpeg)):
                            report(LinkStatus.BAD_LENGTH)
                            m.next = "ERR_SKIP"
                        with m.Else():
                            m.d.sync += [job_sent.eq(0), jpeg_job.eq(is_jpeg)]
                            m.next = "CFG"
                    with m.Else():
                        report(LinkStatus.BAD_TYPE)
                        m.next = "ERR_SKIP"
            with m.State("CFG"):
                m.d.comb += [pop.eq(1), in_request.eq(1)]
                with m.If(have):
                    m.d.sync += [word.eq(Cat(word[8:], byte)), bidx.eq(bidx + 1)]
                    with m.If(bidx == 3):
                        if spec.resize is not None:
                            with m.If(widx == 2):
                                m.next = "STEPS"
                            with m.Else():
                                m.next = "PUSH_CFG"
                        else:
                            m.next = "PUSH_CFG"
                check_abort()
            # Word 2 holds the schedule lengths: the cfg word count must be HEADER_WORDS +
            # STEP_WORDS * (h_steps + v_steps). Two cycles, shifts and adds (no multiplier).
            steps = Signal(17)
            expected = Signal(20)
            bad = Signal()
            if spec.resize is not None:
                assert STEP_WORDS == 3
                with m.State("STEPS"):
                    m.d.comb += in_request.eq(1)
                    m.d.sync += steps.eq(word[:16] + word[16:])
                    m.next = "STEPS_SUM"
                    check_abort()
                with m.State("STEPS_SUM"):
                    m.d.comb += in_request.eq(1)
                    m.d.sync += expected.eq((steps << 1) + steps + HEADER_WORDS)
                    m.next = "STEPS_CHECK"
                    check_abort()
                with m.State("STEPS_CHECK"):
                    m.d.comb += in_request.eq(1)
                    m.d.sync += bad.eq(expected != n_cfg)
                    m.next = "PUSH_CFG"
                    check_abort()
            with m.State("PUSH_CFG"):
                m.d.comb += in_request.eq(1)
                with m.If(bad & (widx == 2)):
                    m.d.comb += reset_core.eq(1)
                    report(LinkStatus.BAD_LENGTH)
                    m.next = "ERR_SKIP"
                with m.Elif((widx == 3) & (word[2] != jpeg_job)):   # src_jpeg vs request type
                    m.d.comb += reset_core.eq(1)
                    report(LinkStatus.BAD_SOURCE)
                    m.next = "ERR_SKIP"
                with m.Else():
                    m.d.comb += [self.cfg.valid.eq(1), self.cfg.payload.eq(word)]
                    with m.If(self.cfg.ready):
                        m.d.sync += cfg_left.eq(cfg_left - 1)
                        with m.If(widx != HEADER_WORDS):
                            m.d.sync += widx.eq(widx + 1)
                        with m.If(widx == HEADER_WORDS - 1):     # word 5: the tensor's base
                            m.d.sync += expect.eq(word)
                            m.d.comb += order_clear.eq(1)
                        with m.If(cfg_left == 1):
                            m.next = "DATA"
                        with m.Else():
                            m.next = "CFG"
                check_abort()
            with m.State("DATA"):
                m.d.comb += in_request.eq(1)
                m.next = "JPG" if spec.jpeg_decoder else "PIX"
                if spec.jpeg_decoder:
                    with m.If(~jpeg_job):
                        m.next = "PIX"
            if spec.jpeg_decoder:
                with m.State("JPG"):
                    m.d.comb += [pop.eq(1), in_request.eq(1)]
                    with m.If(have):
                        m.d.sync += [pixel[:8].eq(byte), data_left.eq(data_left - 1),
                                     push_jpg.eq(1), push_last.eq(data_left == 1)]
                        m.next = "PUSH_JPG"
                    check_abort()
                with m.State("PUSH_JPG"):
                    m.d.comb += in_request.eq(1)
                    with m.If(self.jpg.ready):
                        m.d.sync += push_jpg.eq(0)
                        with m.If(push_last):
                            m.next = "WAIT_JOB"
                        with m.Else():
                            m.next = "JPG"
                    check_abort()
            with m.State("PIX"):
                m.d.comb += [pop.eq(1), in_request.eq(1)]
                with m.If(have):
                    m.d.sync += [pixel.eq(Cat(pixel[8:], byte)), data_left.eq(data_left - 1)]
                    with m.If(bidx == 2):
                        m.d.sync += [bidx.eq(0), push_pix.eq(1), push_last.eq(data_left == 1)]
                        m.next = "PUSH_PIX"
                    with m.Else():
                        m.d.sync += bidx.eq(bidx + 1)
                check_abort()
            with m.State("PUSH_PIX"):
                m.d.comb += in_request.eq(1)
                with m.If(self.pix.ready):
                    m.d.sync += push_pix.eq(0)
                    with m.If(push_last):
                        m.next = "WAIT_JOB"
                    with m.Else():
                        m.next = "PIX"
                check_abort()
            with m.State("WAIT_JOB"):
                m.d.comb += in_request.eq(1)
                with m.If(job_sent):
                    m.next = "HUNT"
                check_abort()
            with m.State("INFO"):
                with m.If(~info_pending):
                    m.next = "SKIP"
            with m.State("ERR_SKIP"):
                with m.If(~err_pending):
                    m.next = "SKIP"
            with m.State("ERR_HUNT"):
                with m.If(~err_pending):
                    m.next = "HUNT"
            with m.State("SKIP"):         # the request was answered; drop the rest of it
                with m.If(frame_none):
                    m.next = "HUNT"
                with m.Else():
                    m.d.comb += pop.eq(1)
                    with m.If(timed_out):     # the host never sent it: already answered
                        m.next = "HUNT"

        with m.If(order_clear):
            m.d.sync += order_err.eq(0)

        tx_fire = self.tx.valid & self.tx.ready
        progress = took | tx_fire | out_fire | (self.cfg.valid & self.cfg.ready) | \
            (self.pix.valid & self.pix.ready)
        if spec.jpeg_decoder:
            progress = progress | (self.jpg.valid & self.jpg.ready)
        watched = in_request | parse_fsm.ongoing("SKIP")
        # The count of this cycle is ``quiet_r ? 0 : min(idle + 1, timeout)``: exactly that of
        # a counter reset by this cycle's ``~watched | progress``, one cycle earlier.
        m.d.sync += quiet_r.eq(~watched | progress)
        with m.If(quiet_r):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self.timeout_cycles):
            m.d.sync += idle.eq(idle + 1)
        m.d.comb += [timed_out.eq(~quiet_r & ((idle == self.timeout_cycles - 1)
                                              | (idle == self.timeout_cycles))),
                     abort.eq(in_request & ~status_waiting & ~err_pending
                              & (rx_fault | timed_out))]
        m.d.comb += self.busy.eq(~parse_fsm.ongoing("HUNT"))

        # ---- serializer ------------------------------------------------------------------------
        info = _bytes_const(bytes([RESP_SYNC, RespType.INFO, INFO_BYTES])
                            + info_bytes(spec, self.window, self.divisor))
        info[3 + 3] = rx_errors                  # INFO field rx_errors
        buf_bytes = max(len(info), beat_bytes, 7)
        txbuf = Signal(8 * buf_bytes)
        txn = Signal(range(buf_bytes + 1))
        beats_left = Signal(8)
        beats_none = Signal(init=1)     # ``beats_left == 0``, kept with it (it picks txbuf's load)
        beat_count = Signal(32)
        # ``txn != 0`` as a flag kept with it: ``tx.valid`` feeds the watchdog's progress, and
        # SEND waits on it. ``txn`` itself only counts while ``tx_busy``: LOAD sets it whether
        # or not the frame is sent.
        tx_busy = Signal()
        m.d.comb += [self.tx.valid.eq(tx_busy), self.tx.payload.eq(txbuf[:8])]
        with m.If(tx_fire):
            m.d.sync += [txbuf.eq(txbuf >> 8), txn.eq(txn - 1), tx_busy.eq(txn != 1)]

        def u8(value):
            s = Signal(8)
            m.d.comb += s.eq(value)
            return s

        # IDLE picks the next frame into a one-hot register and LOAD builds it a clock later:
        # ``txbuf`` is then an AND-OR of the frames by ``pick`` alone, and the picked frame's
        # condition, checked again in LOAD (a reset of the core or of the credits, or output
        # arriving before an error status, can lapse it in between), only decides whether the
        # frame is sent (``tx_busy``) and its side effects, not what ``txbuf`` holds.
        status_bytes = _bytes_const(bytes([RESP_SYNC, RespType.STATUS]))
        frames = [
            info,
            status_bytes + [err_code] + [beat_count[k:k + 8] for k in range(0, 32, 8)],
            _bytes_const(bytes([RESP_SYNC, RespType.CREDIT])) + [u8(credit_units)],
            status_bytes + [st_word] + [beat_count[k:k + 8] for k in range(0, 32, 8)],
            _bytes_const(bytes([RESP_SYNC, RespType.DATA])) + [queued_255],
        ]
        pick = Signal(len(frames))
        st_ok = st_full & out_empty & ~self.core_rst
        frame_ok = [Const(1), out_empty, credit_any, st_ok, Const(1)]
        built = Const(0, 8 * buf_bytes)
        length = Const(0, len(txn))
        for k, parts in enumerate(frames):
            assert all(len(p) == 8 for p in parts)
            built = built | Mux(pick[k], Cat(*parts), 0)
            length = length | Mux(pick[k], len(parts), 0)
        sent = Signal()
        m.d.comb += sent.eq(Cat(*(pick[k] & ok for k, ok in enumerate(frame_ok))).any())
        with m.FSM(name="serialize"):
            with m.State("IDLE"):
                m.d.sync += pick.eq(0)
                with m.If(info_pending):
                    m.d.sync += pick.eq(1 << 0)
                    m.next = "LOAD"
                with m.Elif(err_pending & out_empty):
                    m.d.sync += pick.eq(1 << 1)
                    m.next = "LOAD"
                with m.Elif(credit_any):
                    m.d.sync += pick.eq(1 << 2)
                    m.next = "LOAD"
                with m.Elif(st_ok):
                    m.d.sync += pick.eq(1 << 3)
                    m.next = "LOAD"
                with m.Elif(~out_empty):
                    m.d.sync += pick.eq(1 << 4)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [txbuf.eq(built), txn.eq(length), tx_busy.eq(sent)]
                m.next = "SEND"
                with m.If(~sent):
                    m.next = "IDLE"
                with m.If(pick[0]):
                    m.d.sync += info_pending.eq(0)
                with m.If(pick[1] & frame_ok[1]):
                    m.d.sync += [err_pending.eq(0), beat_count.eq(0), last_code.eq(err_code)]
                with m.If(pick[2] & frame_ok[2]):
                    m.d.comb += credit_take.eq(1)
                with m.If(pick[3] & frame_ok[3]):
                    m.d.comb += st_take.eq(1)
                    m.d.sync += [job_sent.eq(1), beat_count.eq(0), last_code.eq(st_word)]
                with m.If(pick[4]):
                    m.d.sync += [beats_left.eq(queued_255), beats_none.eq(queued_255 == 0)]
            with m.State("SEND"):
                with m.If(~tx_busy):
                    with m.If(beats_none):
                        m.next = "IDLE"
                    with m.Elif(beat_valid):
                        m.d.comb += [beat_take.eq(1), beat_pop.eq(1)]
                        m.d.sync += [txbuf.eq(beat), txn.eq(beat_bytes), tx_busy.eq(1),
                                     beats_left.eq(beats_left - 1),
                                     beats_none.eq(beats_left == 1),
                                     beat_count.eq(beat_count + 1)]
        return m
