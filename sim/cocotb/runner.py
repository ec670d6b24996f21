"""Build a Verilog top with Verilator and run a cocotb test module on it, from pytest.

Builds are kept under ``sim_build/<name>`` and reused while the Verilog text is unchanged.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from ..toolchain import ensure_tools_on_path

REPO = Path(__file__).resolve().parents[2]


class CocotbFailure(AssertionError):
    pass


def run_cocotb(verilog: str, top: str, test_module: str, name: str,
               extra_env: dict[str, str] | None = None, testcase: str | None = None,
               seed: int | None = None, waves: bool = False) -> tuple[int, int]:
    """Compile ``verilog`` (text) once per content hash and run ``test_module`` against it.

    Returns (tests, failed); raises CocotbFailure if any cocotb test failed.
    """
    ensure_tools_on_path()
    digest = hashlib.sha256(verilog.encode()).hexdigest()[:12]
    build_dir = REPO / "sim_build" / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{top}.v"
    if not src.exists() or src.read_text() != verilog:
        src.write_text(verilog)
    runner = get_runner("verilator")
    runner.build(sources=[src], hdl_toplevel=top, build_args=["-Wno-fatal", "-O2"],
                 build_dir=build_dir, waves=waves, log_file=build_dir / "build.log")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           **(extra_env or {})}
    results = runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir,
                          test_dir=build_dir, extra_env=env, testcase=testcase, seed=seed,
                          waves=waves, results_xml=str(build_dir / f"results-{os.getpid()}.xml"))
    tests, failed = get_results(Path(results))
    if tests == 0 or failed:
        raise CocotbFailure(f"cocotb {test_module} on {top}: {failed} of {tests} tests failed "
                            f"(log above; build in {build_dir})")
    return tests, failed
