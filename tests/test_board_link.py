"""The board's host link end to end: the board top elaborates for the ULX3S-85F, and the host's
``--backend fpga`` talks to the Verilator model of the board top through a pseudo-terminal,
giving tensors bit-identical to ``--backend golden``; bad frames and bad images get errors and
the link keeps working after them."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hdl.board.protocol import (HEADER_BYTES, LinkStatus, ReqType, encode_header,
                                encode_request, spec_id)
from hdl.jpeg import JpegStatus
from hdl.job import Status, bad_dims_job, build_job
from hdl.spec import PRESETS, load_pipeline

REPO = Path(__file__).resolve().parents[1]

# A pipeline with every stage (upscale/downscale resize, center crop, normalize, float16 CHW),
# small enough that an image crosses the simulated UART in well under a second.
TINY_TOML = """
[pipeline]
name = "board_tiny"
max_width = 128
max_height = 128

[resize]
shorter_side = 24

[crop]
center = [20, 20]

[normalize]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[output]
dtype = "float16"
layout = "CHW"
"""


def photo(rng, h, w) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x * 3 + y * 5) % 256],
                    -1)
    return np.clip(base + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)


def save(path: Path, rgb: np.ndarray, fmt: str) -> Path:
    Image.fromarray(rgb).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def preba(*args, check_rc=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pyhost.cli", *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert r.returncode == check_rc, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def element_bits(t: np.ndarray) -> np.ndarray:
    return t.view(np.uint16) if t.dtype.itemsize == 2 else t.view(np.uint8)


def assert_same_outputs(golden_dir: Path, fpga_dir: Path) -> int:
    g = json.loads((golden_dir / "report.json").read_text())
    f = json.loads((fpga_dir / "report.json").read_text())
    n = 0
    for eg, ef in zip(g["images"], f["images"], strict=True):
        assert (eg["error"] is None) == (ef["error"] is None), (eg, ef)
        if eg["error"] is None:
            tg, tf = np.load(eg["output"]), np.load(ef["output"])
            assert tg.shape == tf.shape and tg.dtype == tf.dtype
            assert np.array_equal(element_bits(tg), element_bits(tf)), eg["input"]
            n += 1
    return n


# ---- the board top elaborates (CI: no place and route) ------------------------------------------

def test_board_top_elaborates():
    pytest.importorskip("amaranth_boards", reason="the fpga extra is not installed")
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    from hdl.board.ulx3s import ULX3STop
    top = ULX3STop(PRESETS["imagenet"])
    assert top.freq_hz == 100e6 and top.divisor == 33
    plan = ULX3S_85F_Platform().prepare(top, name="preba_board_imagenet")
    lpf = plan.files["preba_board_imagenet.lpf"]
    assert 'SITE "M1"' in lpf and 'SITE "L4"' in lpf          # FTDI UART rx, tx
    assert "EHXPLLL" in plan.files["preba_board_imagenet.il"]


def test_pll_config():
    from hdl.board.ulx3s import pll_config
    for mhz in (100, 112.5, 125, 75):
        p = pll_config(25e6, mhz * 1e6)
        assert abs(p.f_out - mhz * 1e6) < 0.01e6 and 400e6 <= p.f_vco <= 800e6


# ---- link error paths that a pty cannot produce (Amaranth simulation) ----------------------------

def test_link_timeout_and_framing_error():
    """A frame that stops arriving gives TIMEOUT, a byte with a bad stop bit RX_ERROR; each
    answers exactly one STATUS frame and the next request works."""
    from amaranth.sim import Simulator
    from hdl.board.ulx3s import LinkedCore
    from hdl.spec import with_limits
    spec = with_limits(PRESETS["rgb8"], jpeg_decoder=False, max_width=64, max_height=64)
    d = 4
    dut = LinkedCore(spec, divisor=d, timeout_cycles=2000, window=512)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    job = build_job(spec, 3, 2)
    good = encode_request(ReqType.RGB, job.words, rgb.tobytes())
    received = []

    async def send(ctx, data, bad_stop=False):
        for b in data:
            for bit in [0] + [(b >> i) & 1 for i in range(8)] + [0 if bad_stop else 1]:
                ctx.set(dut.uart_rx, bit)
                await ctx.tick().repeat(d)
            ctx.set(dut.uart_rx, 1)
            await ctx.tick().repeat(d)

    async def host(ctx):
        ctx.set(dut.uart_rx, 1)
        await ctx.tick().repeat(10)
        await send(ctx, good[:20])                 # stops mid-frame
        await ctx.tick().repeat(4000)
        await send(ctx, good[:15])
        await send(ctx, good[15:16], bad_stop=True)
        await ctx.tick().repeat(500)
        await send(ctx, good)

    async def monitor(ctx):
        while True:
            await ctx.tick()
            if ctx.get(dut.uart_tx) == 0:
                await ctx.tick().repeat(d // 2)
                v = 0
                for i in range(8):
                    await ctx.tick().repeat(d)
                    v |= ctx.get(dut.uart_tx) << i
                await ctx.tick().repeat(d)
                received.append(v)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(monitor, background=True)
    sim.run_until(1e-8 * 40000)
    data = bytes(received)
    statuses = [data[i + 2] for i in range(len(data) - 6) if data[i:i + 2] == b"ZS"]
    assert statuses == [LinkStatus.TIMEOUT, LinkStatus.RX_ERROR, Status.OK], data.hex(" ")
    assert bytes(rgb.reshape(-1)) in data.replace(b"ZD\x01", b"").replace(b"ZD\x02", b"")


# ---- the simulated board through a pseudo-terminal -----------------------------------------------

@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    p = tmp_path / "board_tiny.toml"
    p.write_text(TINY_TOML)
    return p


def run_cli_against_board(tmp_path, pipeline, images, port) -> list:
    gold, fpga = tmp_path / "golden", tmp_path / "fpga"
    rg = preba("preprocess", "--pipeline", pipeline, "--backend", "golden", "--out", gold,
               *images)
    rf = preba("preprocess", "--pipeline", pipeline, "--backend", "fpga", "--port", port,
               "--out", fpga, *images)
    assert rf.returncode == rg.returncode, rf.stderr
    n = assert_same_outputs(gold, fpga)
    assert n == sum(1 for i in images if "corrupt" not in str(i))
    return json.loads((fpga / "report.json").read_text())["images"]


def test_sim_board_rgb8(tmp_path):
    """The rgb8 preset (raw uint8 HWC): the CLI's fpga backend through the pty."""
    pytest.importorskip("serial", reason="pyserial (the host extra) is not installed")
    from sim.board import SimBoard
    spec = PRESETS["rgb8"]
    rng = np.random.default_rng(1)
    images = [save(tmp_path / "a.png", photo(rng, 12, 16), "PNG"),
              save(tmp_path / "b.jpg", photo(rng, 7, 5), "JPEG")]
    with SimBoard(spec) as board:
        entries = run_cli_against_board(tmp_path, "rgb8", images, board.port)
    assert [e.get("hw_input") for e in entries] == ["pixels", "jpeg"]


def test_sim_board_resize_crop_normalize(tmp_path, tiny_toml):
    """Resize (down and up) + crop + normalize + float16 CHW, images bigger than the link's
    receive window (credit flow control), a corrupt file, then the error paths."""
    pytest.importorskip("serial", reason="pyserial (the host extra) is not installed")
    from pyhost.accelerator import PreprocessError
    from pyhost.backends.fpga import FpgaBackend
    from pyhost.backends.golden import GoldenBackend
    from sim.board import SimBoard
    spec = load_pipeline(tiny_toml)
    rng = np.random.default_rng(2)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    images = [save(tmp_path / "wide.png", photo(rng, 40, 70), "PNG"),    # 8.4 kB > window
              corrupt,
              save(tmp_path / "small.jpg", photo(rng, 9, 13), "JPEG"),   # upscale
              save(tmp_path / "big.jpg", photo(rng, 60, 90), "JPEG")]    # on-chip decoder
    with SimBoard(spec) as board:
        entries = run_cli_against_board(tmp_path, tiny_toml, images, board.port)
        assert [e.get("hw_input") for e in entries] == ["pixels", None, "jpeg", "jpeg"]

        fb = FpgaBackend(spec, board.port, timeout=10)
        info = fb.link().info
        assert info.spec_id == spec_id(spec) and info.element_bits == 16
        rgb = photo(rng, 30, 25)
        png = io.BytesIO()
        Image.fromarray(rgb).save(png, "PNG")
        want = GoldenBackend(spec).run(png.getvalue(), "x").tensor

        def good():
            r = fb.run(png.getvalue(), "x.png")
            assert np.array_equal(r.tensor.view(np.uint16), want.view(np.uint16))

        job = build_job(spec, 25, 30)
        jjob = build_job(spec, 25, 30, jpeg=True)
        pix = rgb.tobytes()
        jpg = _jpeg(rgb)
        link = fb.link()
        cases = [
            # (frame, expected status)
            (encode_request(ord("Q"), job.words, pix), LinkStatus.BAD_TYPE),
            (encode_request(ReqType.JPEG, (), b"\xff\xd8\xff\xd9"), LinkStatus.BAD_LENGTH),
            # Request type and the header's src_jpeg bit disagree.
            (encode_request(ReqType.RGB, jjob.words, pix), LinkStatus.BAD_SOURCE),
            (encode_request(ReqType.JPEG, job.words, jpg), LinkStatus.BAD_SOURCE),
            # A JPEG cut short: the on-chip decoder's own status.
            (encode_request(ReqType.JPEG, jjob.words, jpg[:len(jpg) // 2]), JpegStatus.TRUNCATED),
            (encode_request(ReqType.RGB, job.words[:-3], pix), LinkStatus.BAD_LENGTH),
            (encode_request(ReqType.RGB, job.words, pix[:-1]), LinkStatus.BAD_LENGTH),
            (encode_header(ReqType.RGB, 6, 3, check_fix=1) + bytes(27), LinkStatus.BAD_HEADER),
            (encode_request(ReqType.RGB, job.words, pix[:-30]), Status.SHORT_FRAME),
            (encode_request(ReqType.RGB, job.words, pix + pix[:30]), Status.LONG_FRAME),
            (encode_request(ReqType.RGB, bad_dims_job(500, 2), bytes(3 * 1000)), Status.BAD_DIMS),
            # The host stops mid-frame: the board times out (about 2 s of silence).
            (encode_request(ReqType.RGB, job.words, pix)[:HEADER_BYTES + 40],
             LinkStatus.TIMEOUT),
        ]
        for frame, code in cases:
            link._lock()
            try:
                reply = link.exchange(frame)
            finally:
                link._unlock()
            assert reply.code == code, (hex(reply.code), reply.message)
            good()
        with pytest.raises(PreprocessError, match="outside this pipeline"):
            fb.run(_png(photo(rng, 4, 200)), "too-wide.png")
        good()
        fb.close()
    assert "0 framing errors" in board.log


def _jpeg(rgb) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "JPEG", quality=85)
    return b.getvalue()


def _png(rgb) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "PNG")
    return b.getvalue()
