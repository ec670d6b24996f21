"""OutputConvert on Verilator via cocotb: random vectors with random backpressure on both sides,
every lane compared bit for bit with hdl/golden/convert.py (sim/cocotb/tb_convert.py).

``PREBA_SEED=<int>`` reruns with another seed (the one used is printed and logged).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdl.golden.convert import DTYPES
from hdl.rtl.convert import OutputConvert
from hdl.rtl.layouts import Tag
from sim.toolchain import ensure_tools_on_path

ROOT = Path(__file__).resolve().parents[1]
TB_DIR = ROOT / "sim" / "cocotb"
VECTORS = 10000


@pytest.mark.parametrize("dtype", DTYPES)
def test_rtl_convert(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    ensure_tools_on_path()
    seed = int(os.environ.get("PREBA_SEED", "20240521")) + DTYPES.index(dtype)
    print(f"test_rtl_convert[{dtype}]: seed {seed}")

    build_dir = ROOT / "sim_build" / f"convert_{dtype}"
    build_dir.mkdir(parents=True, exist_ok=True)
    top = f"convert_{dtype}"
    # The output tag {offset, last} as the sideband: what the core really carries.
    dut = OutputConvert(dtype, lanes=3, side_layout=Tag)
    src = build_dir / f"{top}.v"
    text = verilog.convert(dut, name=top)
    if not src.exists() or src.read_text() != text:  # keep the mtime: make skips rebuilds
        src.write_text(text)

    # The simulator's PYTHONPATH is this process's sys.path: the repo root for `hdl`, the
    # testbench folder for `tb_convert`.
    monkeypatch.syspath_prepend(str(TB_DIR))
    monkeypatch.syspath_prepend(str(ROOT))
    runner = get_runner("verilator")
    runner.build(sources=[src], hdl_toplevel=top, build_args=["-Wno-fatal"],
                 build_dir=build_dir)
    runner.test(hdl_toplevel=top, test_module="tb_convert", build_dir=build_dir,
                test_dir=build_dir,
                extra_env={"CONVERT_DTYPE": dtype, "CONVERT_SEED": str(seed),
                           "CONVERT_VECTORS": str(VECTORS),
                           "CONVERT_LATENCY": str(OutputConvert.LATENCY)})
