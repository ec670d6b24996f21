"""The preprocessing core generated from a pipeline spec.

``cfg`` words (see :mod:`hdl.job`) → job sequencer → pixel gate → skid → [resize | crop →
skid] → tensor layout → [skid → normalize → output convert] → skid → ``out``; one ``status``
word per job.

Register stages of the core's own logic (each unit documents its own): the skids are two-entry
register slices whose ``ready`` is a register too, so the handshake's ready path never runs from
``out`` through the whole datapath into the pixel source (or the JPEG decoder); the pixel gate
decides the frame's end from registered last-column/last-row flags; the cfg words enter through
a skid too; the loader ends a table on a registered flag; the header checks are registered per
bank, then for the bank the runner takes next; the runner's "running", "tables ready" and
``status.valid`` are registers kept with its state; the watchdog sees the handshakes one clock
late (and compensates, so STALL comes on the same cycle); the table writes reach the resample
units' memories through one register stage; the between-jobs clear that resets the datapath is
a register. None of these changes a cycle count per pixel or per job's feed: the skids add one
clock of latency each, the clear happens in the runner's first IDLE cycle.

The sequencer makes the core hang-proof: every job ends with a status word, a bad header or a
frame of the wrong length drains the ``pix`` stream up to ``last``, and a watchdog turns a
datapath that stops making progress (tables inconsistent with the image) into ``STALL``. Between
jobs the whole datapath is reset, so an aborted job leaves nothing behind.

With the JPEG decoder, a job's file may flow into the decoder as soon as the job is loaded (its
DCT scale waits in a small FIFO, one entry per file), so the decoder parses the next file and
decodes its first MCU row while this image's last rows still come out.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import normalize_constants
from ..job import HEADER_WORDS, Status
from ..resample import STEP_WORDS
from ..spec import PipelineSpec
from .crop import Crop
from .hresample import HResample
from .layouts import Pixel, PixelIn, StepLayout, Tag, tensor_beat
from .normalize import Normalize, TaggedPixel
from .tensor_layout import TensorLayout
from .vresample import VResample

#: The ``jpg`` input: a JPEG file's bytes as stored, ``last`` on the final byte.
JpegByte = data.StructLayout({"byte": unsigned(8), "last": unsigned(1)})

#: One per job. ``feed_cycles``: clocks from the first cycle of RUN until the job's last pixel
#: entered the datapath; ``run_cycles``: until the job's last output (performance counters, so
#: the pixel pipeline's own rate can be read apart from the table load).
StatusWord = data.StructLayout({"code": unsigned(8), "reserved": unsigned(24),
                                "feed_cycles": unsigned(32), "run_cycles": unsigned(32)})

#: Cycles without any datapath handshake (while not waiting on the host) before STALL.
WATCHDOG_CYCLES = 1024
#: Header/table banks: the next job's tables load while the current job runs.
TABLE_BANKS = 2


def table_depths(spec: PipelineSpec) -> tuple[int, int]:
    """Steps the horizontal and vertical tables hold: a downscale takes one step per input
    sample, an upscale at most one per input sample plus one per output sample."""
    out_h = spec.crop.out_size[1] if spec.crop else (
        spec.resize.size[1] if spec.resize and spec.resize.size else spec.max_height)
    return spec.max_width + spec.out_width_limit, spec.max_height + out_h


class Skid(wiring.Component):
    """A two-entry register slice: ``o`` is a register and ``i.ready`` is one too, so neither
    the payload nor the ready path crosses it combinationally. Full rate: a beat that arrives
    while ``o`` stalls waits in the second entry, and ``i.ready`` drops only then."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        buf = Signal.like(self.i.payload, reset_less=True)
        buf_valid = Signal()
        m.d.comb += self.i.ready.eq(~buf_valid)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(buf_valid):
                m.d.sync += [self.o.payload.eq(buf), self.o.valid.eq(1), buf_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~buf_valid):
            m.d.sync += [buf.eq(self.i.payload), buf_valid.eq(1)]
        return m


class PreprocessCore(wiring.Component):
    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self.element_bits = spec.output.element_bits
        ports = {
            "cfg": In(stream.Signature(unsigned(32))),
            "pix": In(stream.Signature(PixelIn)),
            "out": Out(stream.Signature(tensor_beat(self.element_bits))),
            "status": Out(stream.Signature(StatusWord)),
        }
        if spec.jpeg_decoder:
            ports["jpg"] = In(stream.Signature(JpegByte))
        super().__init__(ports)

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        # One cycle between jobs empties the datapath: the cycle after the status word was
        # taken (the runner's first IDLE cycle, so before the next job's CHECK). Registered:
        # it resets every unit's registers, a net of high fanout.
        clear = Signal()
        # The runner is in RUN (``running``), or in CHECK or RUN (``tables_ready``): registers
        # kept with the runner's state (see ``goto``), not decodes of it, as they fan out to the
        # resample units, the pixel gate and the output. The resample units prefetch their
        # first table entry during CHECK, so the first pixel can enter on the first cycle of RUN.
        running = Signal()
        tables_ready = Signal()

        def unit(name, elaboratable):
            m.submodules[name] = ResetInserter(clear)(elaboratable)
            return elaboratable

        # ---- job header ---------------------------------------------------------------------
        hdr = [Signal(32, name=f"hdr{i}") for i in range(HEADER_WORDS)]
        in_w, in_h = hdr[0][:16], hdr[0][16:]
        out_w, out_h = hdr[1][:16], hdr[1][16:]
        h_steps, v_steps = hdr[2][:16], hdr[2][16:]
        h_mode, v_mode = hdr[3][0], hdr[3][1]
        src_jpeg = hdr[3][2] if spec.jpeg_decoder else Const(0, 1)   # pixels from the JPEG decoder
        jpg_open = Signal()             # the jpg input flows into the decoder
        # One entry per JPEG job loaded whose file's last byte has not gone into the decoder:
        # that job's DCT scale (log2). Files come in job order, so the head is always the scale
        # of the file now flowing; the decoder takes it with the file's first byte. Loaded
        # jobs' files may flow ahead of the job, so the decoder can start on the next image
        # while this one's last rows still come out.
        SCALE_FIFO = 4
        scale_q = [Signal(2, name=f"scale_q{i}") for i in range(SCALE_FIFO)]
        scale_wp = Signal(2)
        scale_rp = Signal(2)
        scale_n = Signal(range(SCALE_FIFO + 1))
        scale_push = Signal()
        scale_pop = Signal()
        crop_x, crop_y = hdr[4][:16], hdr[4][16:]
        out_base = hdr[5]

        # ---- datapath -----------------------------------------------------------------------
        # Register slices (Skid, registered ready) at the datapath's input, between the
        # resampler (or crop) and the layout, between layout and normalize, and at ``out``:
        # no ready path runs through more than a few units, and none from ``out`` or a unit
        # into the pixel source.
        layout = unit("layout", TensorLayout(spec.output.layout))
        m.d.comb += [layout.base.eq(out_base), layout.out_w.eq(out_w), layout.out_h.eq(out_h)]
        handshakes = []

        def fired(s):
            h = s.valid & s.ready
            handshakes.append(h)
            return h

        h_depth, v_depth = table_depths(spec)
        tbl_data = Signal(StepLayout)
        tab_idx = Signal(17)            # step being loaded into the loader's bank
        load_bank = Signal()            # bank the loader fills
        run_bank = Signal()             # bank the running job reads
        h_we = Signal()
        v_we = Signal()
        skid_in = unit("skid_in", Skid(Pixel))
        dp_in = skid_in.i
        if spec.resize is not None:
            hr = unit("hresample", HResample(h_depth, banks=TABLE_BANKS))
            vr = unit("vresample", VResample(v_depth, spec.out_width_limit, banks=TABLE_BANKS))
            # Table writes are registered on their way to the units' memories: the loader's
            # address add and bank select stay away from the block RAMs' setup.
            h_addr_r = Signal.like(hr.tbl_addr)
            v_addr_r = Signal.like(vr.tbl_addr)
            tbl_data_r = Signal(StepLayout)
            h_we_r = Signal()
            v_we_r = Signal()
            m.d.sync += [h_addr_r.eq(tab_idx + Mux(load_bank, h_depth, 0)),
                         v_addr_r.eq(tab_idx + Mux(load_bank, v_depth, 0)),
                         tbl_data_r.eq(tbl_data), h_we_r.eq(h_we), v_we_r.eq(v_we)]
            m.d.comb += [hr.run.eq(tables_ready), hr.steps.eq(h_steps), hr.mode.eq(h_mode),
                         hr.bank.eq(run_bank),
                         hr.tbl_addr.eq(h_addr_r), hr.tbl_data.eq(tbl_data_r),
                         hr.tbl_we.eq(h_we_r),
                         vr.run.eq(tables_ready), vr.steps.eq(v_steps), vr.mode.eq(v_mode),
                         vr.width.eq(out_w), vr.bank.eq(run_bank),
                         vr.tbl_addr.eq(v_addr_r), vr.tbl_data.eq(tbl_data_r),
                         vr.tbl_we.eq(v_we_r)]
            skid_mid = unit("skid_mid", Skid(Pixel))
            wiring.connect(m, skid_in.o, hr.i)
            wiring.connect(m, hr.o, vr.i)
            wiring.connect(m, vr.o, skid_mid.i)
            wiring.connect(m, skid_mid.o, layout.i)
            fired(hr.i)
            fired(hr.o)
            fired(vr.o)
            fired(layout.i)
        elif spec.crop is not None:
            crop = unit("crop", Crop())
            m.d.comb += [crop.in_w.eq(in_w), crop.x0.eq(crop_x), crop.y0.eq(crop_y),
                         crop.out_w.eq(out_w), crop.out_h.eq(out_h)]
            skid_mid = unit("skid_mid", Skid(Pixel))
            wiring.connect(m, skid_in.o, crop.i)
            wiring.connect(m, crop.o, skid_mid.i)
            wiring.connect(m, skid_mid.o, layout.i)
            fired(crop.i)
            fired(crop.o)
            fired(layout.i)
        else:
            wiring.connect(m, skid_in.o, layout.i)
            fired(layout.i)
        fired(dp_in)

        consts = normalize_constants(spec)
        if consts is None:          # raw uint8 passthrough
            dp_out = layout.o
            out_data = layout.o.payload.rgb
            out_tag = layout.o.payload.tag
        else:
            from .convert import OutputConvert   # noqa: PLC0415 (only specs that convert)
            norm = unit("normalize", Normalize(*consts))
            conv = unit("convert", OutputConvert(spec.output.dtype, lanes=3, side_layout=Tag))
            # A fourth slice between layout and normalize: the output slice's ready would
            # otherwise pass convert's, normalize's and layout's enables on its way up.
            skid_norm = unit("skid_norm", Skid(TaggedPixel))
            wiring.connect(m, layout.o, skid_norm.i)
            wiring.connect(m, skid_norm.o, norm.i)
            wiring.connect(m, norm.o, conv.i)
            fired(layout.o)
            fired(norm.i)
            fired(norm.o)
            dp_out = conv.o
            out_data = conv.o.payload.data
            out_tag = conv.o.payload.side
        skid_out = unit("skid_out", Skid(tensor_beat(self.element_bits)))
        m.d.comb += [skid_out.i.valid.eq(dp_out.valid), dp_out.ready.eq(skid_out.i.ready),
                     skid_out.i.payload.offset.eq(out_tag.offset),
                     skid_out.i.payload.last.eq(out_tag.last)]
        m.d.comb += [skid_out.i.payload.data[c].eq(out_data[c]) for c in range(3)]
        fired(dp_out)
        out_fire = fired(self.out)
        m.d.comb += [self.out.valid.eq(skid_out.o.valid & running),
                     skid_out.o.ready.eq(self.out.ready & running),
                     self.out.payload.eq(skid_out.o.payload)]

        # ---- job loader: cfg words into the free bank --------------------------------------
        # Two banks of header and tables: the next job loads while this one runs, so the table
        # load costs no clocks in a stream of images. The cfg words come through a register
        # slice (not reset between jobs: the next job's words flow while this one ends), so
        # neither the loader's enables nor ``cfg.ready`` are logic of the sender's.
        m.submodules.cfg_skid = cfg_skid = Skid(unsigned(32))
        m.d.comb += [cfg_skid.i.valid.eq(self.cfg.valid),
                     cfg_skid.i.payload.eq(self.cfg.payload),
                     self.cfg.ready.eq(cfg_skid.i.ready)]
        cfg = cfg_skid.o
        bank_hdr = [[Signal(32, name=f"bank{b}_hdr{i}") for i in range(HEADER_WORDS)]
                    for b in range(TABLE_BANKS)]
        full = Signal(TABLE_BANKS)
        set_full = Signal(TABLE_BANKS)
        clr_full = Signal(TABLE_BANKS)
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        ld_hdr = [Mux(load_bank, bank_hdr[1][i], bank_hdr[0][i]) for i in range(HEADER_WORDS)]
        ld_h_steps, ld_v_steps = ld_hdr[2][:16], ld_hdr[2][16:]
        word_idx = Signal(range(HEADER_WORDS))
        sub = Signal(range(STEP_WORDS))
        words = [Signal(32, name=f"step_word{i}") for i in range(STEP_WORDS - 1)]
        m.d.comb += tbl_data.eq(Cat(*words, cfg.payload)[:StepLayout.size])

        # ``tab_end`` (tab_idx == this table's step count) is a register, kept with a compare
        # against the count minus one, both set up when the previous part of the job is done,
        # so the loader's state and cfg.ready do not wait on a compare against the bank.
        tab_end = Signal()
        cnt_m1 = Signal(17)

        def start_table(count):
            m.d.sync += [tab_end.eq(count == 0), cnt_m1.eq(count - 1)]

        def load_table(next_count, depth, we, next_state):
            with m.If(tab_end):
                m.d.sync += [tab_idx.eq(0), sub.eq(0)]
                if next_count is not None:
                    start_table(next_count)
                m.next = next_state
            with m.Else():
                m.d.comb += cfg.ready.eq(1)
                with m.If(cfg.valid):
                    with m.If(sub == STEP_WORDS - 1):
                        m.d.comb += we.eq(tab_idx < depth)
                        m.d.sync += [sub.eq(0), tab_idx.eq(tab_idx + 1),
                                     tab_end.eq(tab_idx == cnt_m1)]
                    with m.Else():
                        m.d.sync += sub.eq(sub + 1)
                        for i in range(STEP_WORDS - 1):
                            with m.If(sub == i):
                                m.d.sync += words[i].eq(cfg.payload)

        with m.FSM(name="loader"):
            with m.State("WAIT_BANK"):
                with m.If(~full.bit_select(load_bank, 1) & (scale_n < SCALE_FIFO)):
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += cfg.ready.eq(1)
                with m.If(cfg.valid):
                    for b in range(TABLE_BANKS):
                        for i in range(HEADER_WORDS):
                            with m.If((load_bank == b) & (word_idx == i)):
                                m.d.sync += bank_hdr[b][i].eq(cfg.payload)
                    m.d.sync += word_idx.eq(word_idx + 1)
                    with m.If(word_idx == HEADER_WORDS - 1):
                        if spec.jpeg_decoder:
                            m.d.comb += scale_push.eq(ld_hdr[3][2])     # a JPEG job
                        m.d.sync += [word_idx.eq(0), tab_idx.eq(0), sub.eq(0)]
                        start_table(ld_h_steps)
                        m.next = "HTAB" if spec.resize is not None else "LOADED"
            if spec.resize is not None:
                with m.State("HTAB"):
                    load_table(ld_v_steps, h_depth, h_we, "VTAB")
                with m.State("VTAB"):
                    load_table(None, v_depth, v_we, "LOADED")
            with m.State("LOADED"):
                m.d.comb += set_full.bit_select(load_bank, 1).eq(1)
                m.d.sync += load_bank.eq(~load_bank)
                m.next = "WAIT_BANK"

        # ---- pixel source: the pix port, or the JPEG decoder on the jpg port ----------------
        src = stream.Signature(PixelIn).create(path=("src",))
        dec_status_fire = Signal()
        dec_status_ready = Signal()
        if spec.jpeg_decoder:
            from ..jpeg.rtl.decoder import JpegDecoder     # noqa: PLC0415 (only specs with it)
            # Not reset between jobs: the decoder keeps itself in step with its input, one
            # status beat per JPEG file.
            m.submodules.jpeg = dec = JpegDecoder(spec.max_width, spec.max_height)
            # A file's bytes reach the decoder only once its job has started (one file per
            # JPEG job, counted by ``files_owed``; the decoder reads ahead of the image it
            # decodes), so the decoder samples that job's scale with the file's first byte.
            # Bytes an aborted file left behind still flow (the decoder drains them) while the
            # next job runs.
            jpg_fire = self.jpg.valid & self.jpg.ready
            m.d.comb += [scale_pop.eq(jpg_fire & self.jpg.payload.last),
                         jpg_open.eq(scale_n != 0),
                         dec.i.valid.eq(self.jpg.valid & jpg_open),
                         self.jpg.ready.eq(dec.i.ready & jpg_open),
                         dec.i.payload.eq(self.jpg.payload),
                         dec.scale.eq(Array(scale_q)[scale_rp])]
            with m.If(scale_push):
                m.d.sync += [Array(scale_q)[scale_wp].eq(ld_hdr[3][3:5]),
                             scale_wp.eq(scale_wp + 1)]
            with m.If(scale_pop):
                m.d.sync += scale_rp.eq(scale_rp + 1)
            m.d.sync += scale_n.eq(scale_n + scale_push - scale_pop)
            m.d.comb += [dec.status.ready.eq(dec_status_ready),
                         dec_status_fire.eq(dec.status.valid & dec.status.ready)]
            dec_code = dec.status.payload.code
            with m.If(src_jpeg):
                m.d.comb += [src.valid.eq(dec.o.valid), src.payload.eq(dec.o.payload),
                             dec.o.ready.eq(src.ready)]
            with m.Else():
                m.d.comb += [src.valid.eq(self.pix.valid), src.payload.eq(self.pix.payload),
                             self.pix.ready.eq(src.ready)]
        else:
            dec_code = 0
            m.d.comb += [src.valid.eq(self.pix.valid), src.payload.eq(self.pix.payload),
                         self.pix.ready.eq(src.ready)]

        # ---- job runner: one loaded bank at a time through the datapath ---------------------
        code = Signal(8)
        dec_done = Signal()        # the decoder's status beat for this job has been taken
        px = Signal(16)
        py = Signal(16)
        # Registered "px/py is the last column/row" flags, kept up to date with compares
        # against in_w - 2 / in_h - 2 computed once per job in CHECK, so the pixel gate sees
        # the frame's end without a subtract and compare in front of it.
        x_last = Signal()
        y_last = Signal()
        w_m2 = Signal(16)
        h_m2 = Signal(16)
        w_is_1 = Signal()
        in_done = Signal()
        out_done = Signal()
        draining = Signal()
        long_frame = Signal()
        # The watchdog runs one clock behind: ``watchdog`` holds last cycle's count and
        # ``busy_r`` whether last cycle made progress (or waited on the host), both registers,
        # so the wide OR of every unit's handshake only feeds a flip-flop. The count the
        # sequencer acts on, ``busy_r ? 0 : watchdog + 1``, is exactly the unregistered one.
        watchdog = Signal(range(WATCHDOG_CYCLES + 1))
        busy_r = Signal()
        feed_cycles = Signal(32)
        run_cycles = Signal(32)

        at_end = x_last & y_last
        gate_open = running & ~in_done & ~draining
        progress = Signal()
        m.d.comb += progress.eq(Cat(*handshakes).any())

        m.d.sync += clear.eq(0)
        # The header checks, in two register stages: each bank's flags from its header words,
        # then the flags of the bank the runner takes next, so in CHECK they are those of
        # ``hdr`` without compares (or a bank select) in front of the runner's state. In CHECK
        # they show the bank as it was two cycles before, and it was unchanging then: a bank is
        # full only from the cycle after LOADED, which follows its last header word, and the
        # runner leaves IDLE at the earliest in the cycle after it sees the bank full; after a
        # job, the first IDLE cycle (with ``run_bank`` already the next bank) is the clear
        # cycle, in which it waits.
        run_hdr = [Mux(run_bank, bank_hdr[1][i], bank_hdr[0][i]) for i in range(HEADER_WORDS)]
        bad_dims = Signal()
        bad_table = Signal()
        bank_bad_dims = Signal(TABLE_BANKS)
        bank_bad_table = Signal(TABLE_BANKS)
        for b in range(TABLE_BANKS):
            in_w_b, in_h_b = bank_hdr[b][0][:16], bank_hdr[b][0][16:]
            out_w_b, out_h_b = bank_hdr[b][1][:16], bank_hdr[b][1][16:]
            h_steps_b, v_steps_b = bank_hdr[b][2][:16], bank_hdr[b][2][16:]
            crop_x_b, crop_y_b = bank_hdr[b][4][:16], bank_hdr[b][4][16:]
            dims_b = ((in_w_b == 0) | (in_w_b > spec.max_width) | (in_h_b == 0)
                      | (in_h_b > spec.max_height) | (out_w_b == 0)
                      | (out_w_b > spec.out_width_limit) | (out_h_b == 0))
            if spec.resize is not None:
                m.d.sync += bank_bad_table[b].eq((h_steps_b == 0) | (h_steps_b > h_depth)
                                                 | (v_steps_b == 0) | (v_steps_b > v_depth))
            else:
                dims_b = (dims_b | (crop_x_b + out_w_b > in_w_b)
                          | (crop_y_b + out_h_b > in_h_b))
            m.d.sync += bank_bad_dims[b].eq(dims_b)
        m.d.sync += [bad_dims.eq(bank_bad_dims.bit_select(run_bank, 1)),
                     bad_table.eq(bank_bad_table.bit_select(run_bank, 1))]

        # ``status.valid`` too is a register kept with the state (it goes to the host link),
        # and the status word is driven in every state (it is read only with ``valid``).
        status_valid = Signal()
        m.d.comb += [self.status.valid.eq(status_valid), self.status.payload.code.eq(code),
                     self.status.payload.feed_cycles.eq(feed_cycles),
                     self.status.payload.run_cycles.eq(run_cycles)]

        def goto(state):
            m.next = state
            m.d.sync += [running.eq(state == "RUN"), tables_ready.eq(state in ("CHECK", "RUN")),
                         status_valid.eq(state == "STATUS")]

        with m.FSM(name="runner"):
            with m.State("IDLE"):
                # Not in the clear cycle: the resample units prefetch step 0 of the new bank
                # while ``run`` is low, and a read made under their reset would be lost.
                with m.If(full.bit_select(run_bank, 1) & ~clear):
                    for i in range(HEADER_WORDS):
                        m.d.sync += hdr[i].eq(run_hdr[i])
                    goto("CHECK")
            with m.State("CHECK"):
                m.d.sync += [px.eq(0), py.eq(0), x_last.eq(in_w == 1), y_last.eq(in_h == 1),
                             w_m2.eq(in_w - 2), h_m2.eq(in_h - 2), w_is_1.eq(in_w == 1),
                             in_done.eq(0), out_done.eq(0), dec_done.eq(0),
                             draining.eq(0), long_frame.eq(0), watchdog.eq(0), busy_r.eq(1),
                             feed_cycles.eq(0), run_cycles.eq(0)]
                with m.If(bad_dims):
                    m.d.sync += code.eq(Status.BAD_DIMS)
                    goto("DRAIN")
                with m.Elif(bad_table):
                    m.d.sync += code.eq(Status.BAD_TABLE)
                    goto("DRAIN")
                with m.Else():
                    m.d.sync += code.eq(Status.OK)
                    goto("RUN")
            with m.State("RUN"):
                m.d.sync += run_cycles.eq(run_cycles + 1)
                with m.If(~in_done & ~draining):
                    m.d.sync += feed_cycles.eq(feed_cycles + 1)
                # Pixel gate: exactly in_w*in_h pixels reach the datapath.
                m.d.comb += [dp_in.valid.eq(src.valid & gate_open),
                             dp_in.payload.eq(src.payload.rgb),
                             src.ready.eq(Mux(gate_open, dp_in.ready, draining)),
                             # one decoder status per job: the decoder may already be on the
                             # next file, whose status belongs to the next job
                             dec_status_ready.eq(src_jpeg & ~dec_done)]
                pix_fire = src.valid & src.ready
                with m.If(pix_fire & gate_open):
                    with m.If(x_last):
                        m.d.sync += [px.eq(0), x_last.eq(w_is_1),
                                     py.eq(py + 1), y_last.eq(py == h_m2)]
                    with m.Else():
                        m.d.sync += [px.eq(px + 1), x_last.eq(px == w_m2)]
                    with m.If(at_end):
                        with m.If(src.payload.last):
                            m.d.sync += in_done.eq(1)
                        with m.Else():
                            m.d.sync += [draining.eq(1), long_frame.eq(1)]
                with m.If(pix_fire & draining & src.payload.last):
                    m.d.sync += [draining.eq(0), in_done.eq(1)]
                with m.If(out_fire & self.out.payload.last):
                    m.d.sync += out_done.eq(1)
                with m.If(dec_status_fire):
                    m.d.sync += dec_done.eq(1)

                waiting_on_host = ((gate_open & ~src.valid) | draining
                                   | (self.out.valid & ~self.out.ready))
                m.d.sync += busy_r.eq(progress | waiting_on_host)
                with m.If(busy_r):
                    m.d.sync += watchdog.eq(0)
                with m.Else():
                    m.d.sync += watchdog.eq(watchdog + 1)

                # A JPEG job ends when its decoder status has been taken as well.
                input_finished = Mux(src_jpeg, dec_done, in_done)
                with m.If(dec_status_fire & (dec_code != 0)):
                    # The decoder stopped (its pixels end without `last`) and drained its input.
                    m.d.sync += code.eq(dec_code)
                    goto("STATUS")
                with m.Elif(pix_fire & gate_open & src.payload.last & ~at_end):
                    m.d.sync += code.eq(Status.SHORT_FRAME)
                    with m.If(src_jpeg & ~dec_done):
                        goto("DRAIN")
                    with m.Else():
                        goto("STATUS")
                with m.Elif(~busy_r & (watchdog == WATCHDOG_CYCLES - 1)):
                    m.d.sync += code.eq(Status.STALL)
                    with m.If(input_finished):
                        goto("STATUS")
                    with m.Else():
                        goto("DRAIN")
                with m.Elif(in_done & out_done & (~src_jpeg | dec_done | dec_status_fire)):
                    m.d.sync += code.eq(Mux(long_frame, Status.LONG_FRAME, Status.OK))
                    goto("STATUS")
            with m.State("DRAIN"):
                # Discard the rest of this job's input: pixels up to `last`, or for a JPEG job
                # everything up to the decoder's status beat.
                # (after the decoder's status, its pixels are the next file's: leave them)
                m.d.comb += [src.ready.eq(~(src_jpeg & dec_done)),
                             dec_status_ready.eq(src_jpeg & ~dec_done)]
                with m.If(src_jpeg):
                    with m.If(dec_done | dec_status_fire):
                        with m.If(dec_status_fire & (dec_code != 0) & (code == Status.OK)):
                            m.d.sync += code.eq(dec_code)
                        goto("STATUS")
                with m.Elif(in_done | (src.valid & src.payload.last)):
                    goto("STATUS")
            with m.State("STATUS"):
                with m.If(self.status.ready):
                    m.d.comb += clr_full.bit_select(run_bank, 1).eq(1)
                    m.d.sync += clear.eq(1)
                    m.d.sync += run_bank.eq(~run_bank)
                    goto("IDLE")
        return m

