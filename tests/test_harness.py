"""The fast C++ Verilator harness (sim/harness) on small self-contained Amaranth designs."""
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from amaranth.hdl import Cat, Const, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.harness import (BuildError, CoreHarness, Harness, bench_cycles_per_second, fields,
                         fst_available, selftest)
from sim.harness.build import LIB_NAME, default_build_root, parse_manifest
from sim.toolchain import ensure_tools_on_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _tools():
    ensure_tools_on_path()


_harnesses = {}


def echo(e=16) -> CoreHarness:
    if e not in _harnesses:
        _harnesses[e] = CoreHarness(selftest.verilog(e), selftest.manifest(e))
    return _harnesses[e]


def check_reference(res, jobs, e=16):
    off, data, last, codes, reserved = selftest.reference(jobs, e)
    assert np.array_equal(res.field("out", "offset"), off)
    assert np.array_equal(res.elements("out"), data)
    assert np.array_equal(res.field("out", "last"), last)
    assert np.array_equal(res.field("status", "code"), codes)
    assert np.array_equal(res.field("status", "reserved"), reserved)


@pytest.mark.parametrize("e", [16, 8])     # 81-bit (VlWide) and 57-bit (QData) out payloads
def test_streams_through(e):
    h = echo(e)
    cfg, pix, jobs = selftest.make_jobs(4, [7, 1, 30, 12], seed=e)
    res = h.run({"cfg": cfg, "pix": pix}, until=("status", 4))
    assert res.stop_reason == "until" and res.complete and not res.timed_out
    assert res.all_consumed and res.consumed == {"cfg": 4, "pix": 50}
    assert res.outputs["out"].shape == (50, (33 + 3 * e + 31) // 32)
    assert res.outputs["status"].shape == (4,) and res.outputs["status"].dtype == np.uint32
    check_reference(res, jobs, e)
    # one pixel per cycle: cycle numbers rise, and the per-job cycles add up
    for cyc in res.beat_cycles.values():
        assert np.all(np.diff(cyc.astype(np.int64)) > 0)
    assert res.cycles == int(res.beat_cycles["status"][-1]) + 1
    assert res.job_cycles().sum() == res.cycles
    assert res.input_done_cycle["pix"] < res.beat_cycles["status"][-1]
    print(f"\nE={e}: {res.summary()}")


def test_run_jobs_splits_per_job():
    h = echo()
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (3, 4, 3), dtype=np.uint8),
            rng.integers(0, 256, (1, 1, 3), dtype=np.uint8),
            rng.integers(0, 256, (5, 2, 3), dtype=np.uint8)]
    keys = [11, 22, 33]
    r = h.run_jobs([([k], img) for k, img in zip(keys, imgs)], backpressure=0.2, seed=3)
    assert r.complete and len(r.jobs) == 3
    for j, (k, img) in zip(r.jobs, zip(keys, imgs)):
        px = img.reshape(-1, 3)
        assert j.code == len(px)
        assert np.array_equal(j.offset, np.arange(len(px)))
        assert np.array_equal(j.data[:, 0], (px[:, 0].astype(int) + k) & 0xFFFF)
        assert np.array_equal(j.data[:, 2], px[:, 2])
        assert j.last[-1] == 1 and not j.last[:-1].any()
    assert sum(j.cycles for j in r.jobs) == r.cycles
    assert r.jobs[-1].end_cycle == r.cycles - 1


def test_backpressure_same_data_more_cycles():
    h = echo()
    cfg, pix, jobs = selftest.make_jobs(5, 400, seed=2)
    inputs = {"cfg": cfg, "pix": pix}
    base = h.run(inputs, until=("status", 5))
    runs = [h.run(inputs, until=("status", 5), backpressure=0.3, seed=s) for s in (1, 2)]
    again = h.run(inputs, until=("status", 5), backpressure=0.3, seed=1)
    for r in runs + [again]:
        assert r.complete
        check_reference(r, jobs)
        for p in ("out", "status"):
            assert np.array_equal(r.outputs[p], base.outputs[p])
        assert r.cycles > base.cycles * 1.2
    assert runs[0].cycles != runs[1].cycles                      # seeds matter
    assert again.cycles == runs[0].cycles                        # and are reproducible
    assert np.array_equal(again.beat_cycles["out"], runs[0].beat_cycles["out"])
    only_in = h.run(inputs, until=("status", 5), backpressure=(0.5, 0.0))
    only_out = h.run(inputs, until=("status", 5), backpressure=(0.0, 0.5))
    for r in (only_in, only_out):
        assert np.array_equal(r.outputs["out"], base.outputs["out"])
        assert r.cycles > base.cycles
    print(f"\nno backpressure: {base.cycles} cycles; p=0.3: {[r.cycles for r in runs]}")


def test_timeout_and_idle_are_reported():
    h = echo()
    cfg, pix, jobs = selftest.make_jobs(2, 20)
    # waiting for a third status beat that never comes
    r = h.run({"cfg": cfg, "pix": pix}, until=("status", 3), max_cycles=5000, idle_cycles=None)
    assert r.timed_out and r.stop_reason == "max_cycles" and r.cycles == 5000
    assert not r.complete and len(r.outputs["status"]) == 2
    with pytest.raises(TimeoutError, match="did not finish"):
        r.raise_for_status()
    r = h.run({"cfg": cfg, "pix": pix}, until=("status", 3), idle_cycles=100)
    assert r.stop_reason == "idle" and not r.complete and not r.timed_out
    assert r.cycles < 200
    # a job whose pixels never arrive: the inputs are consumed, the design waits forever
    r = h.run({"cfg": cfg[:1]}, until=("status", 1), idle_cycles=50)
    assert r.stop_reason == "idle" and r.consumed == {"cfg": 1, "pix": 0}
    assert r.cycles == 51 and not r.complete
    # a deadlock: the second job's cfg word waits for a job that never ends
    r = h.run({"cfg": cfg}, until=("status", 1), stall_cycles=300)
    assert r.stop_reason == "stalled" and r.consumed == {"cfg": 1, "pix": 0}
    assert not r.all_consumed and not r.complete and r.cycles == 301
    with pytest.raises(TimeoutError, match="stalled"):
        r.raise_for_status()


def test_stops_when_idle_without_until():
    h = echo()
    cfg, pix, jobs = selftest.make_jobs(3, 10)
    r = h.run({"cfg": cfg, "pix": pix}, idle_cycles=64)
    assert r.stop_reason == "idle" and r.complete
    check_reference(r, jobs)
    assert r.cycles == int(r.beat_cycles["status"][-1]) + 1 + 64
    empty = h.run({}, idle_cycles=10)
    assert empty.stop_reason == "idle" and empty.cycles == 11


def test_input_validation():
    h = echo()
    with pytest.raises(KeyError, match="not input ports"):
        h.run({"nope": [1]})
    with pytest.raises(KeyError, match="not an output port"):
        h.run({}, until=("cfg", 1))
    with pytest.raises(ValueError, match="bits set above"):
        h.run({"pix": np.array([1 << 25], np.uint32)})


def test_fields_roundtrip():
    rng = np.random.default_rng(0)
    for width in (1, 25, 32, 33, 57, 64, 81, 100, 128):
        spec = {"dir": "in", "width": width, "fields": {}}
        lsb, fl = 0, {}
        while lsb < width:
            w = int(min(width - lsb, rng.integers(1, 65)))
            fl[f"f{lsb}"] = [lsb, w]
            lsb += w
        spec["fields"] = fl
        port = parse_manifest({"top": "t", "ports": {"p": spec}}).ports["p"]
        vals = {n: rng.integers(0, 2**w, size=50, dtype=np.uint64) if w < 64 else
                rng.integers(0, 2**63, size=50, dtype=np.uint64) * 2 + 1 for n, (_, w) in fl.items()}
        words = fields.pack(port, **vals)
        assert words.shape == ((50,) if width <= 32 else (50, (width + 31) // 32))
        for n, v in vals.items():
            assert np.array_equal(fields.field(port, words, n).astype(np.uint64), v), (width, n)
    pix = parse_manifest(selftest.manifest()).ports["pix"]
    with pytest.raises(ValueError, match="does not fit"):
        fields.pack(pix, r=[255, 256])
    w = fields.pack(pix, r=[1, 2], last=[0, 1])
    assert w.tolist() == [1, 2 | 1 << 24]


# ---------------------------------------------------------------- generic ports (any width)

class WideCore(wiring.Component):
    """a (100 bits) -> x (128 bits) combinationally: x = {0xABCDEF1, a ^ K};
    b (40 bits) -> y (41 bits) through a register: y = b + 1; n (1 bit, no consumer of ready)."""
    K = (1 << 99) | 0x1234_5678_9ABC_DEF0_1234_5678

    a: In(stream.Signature(100))
    b: In(stream.Signature(40))
    x: Out(stream.Signature(128))
    y: Out(stream.Signature(41))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.x.payload.eq(Cat(self.a.payload ^ Const(self.K, 100),
                                           Const(0xABCDEF1, 28))),
                     self.x.valid.eq(self.a.valid), self.a.ready.eq(self.x.ready)]
        m.d.comb += self.b.ready.eq(~self.y.valid | self.y.ready)
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        with m.If(self.b.valid & self.b.ready):
            m.d.sync += [self.y.valid.eq(1), self.y.payload.eq(self.b.payload + 1)]
        return m


WIDE_MANIFEST = {"top": "wide_core", "clock": "clk", "reset": "rst", "ports": {
    "a": {"dir": "in", "width": 100, "fields": {"v": [0, 100]}},
    "b": {"dir": "in", "width": 40, "fields": {"v": [0, 40]}},
    "x": {"dir": "out", "width": 128, "fields": {"v": [0, 100], "tag": [100, 28]}},
    "y": {"dir": "out", "width": 41, "fields": {"v": [0, 41]}},
}}


def wide_verilog():
    from amaranth.back import verilog
    return verilog.convert(WideCore(), name="wide_core", emit_src=False)


def test_generic_wide_ports():
    h = Harness(wide_verilog(), WIDE_MANIFEST)
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**32, size=(300, 4), dtype=np.uint64).astype(np.uint32)
    a[:, 3] &= 0xF                                       # 100 bits
    b = rng.integers(0, 2**40, size=200, dtype=np.uint64)  # (n,) uint64 for a 40-bit port
    for bp in (0.0, 0.4):
        r = h.run({"a": a, "b": b}, backpressure=bp, seed=9, idle_cycles=20)
        assert r.complete and r.all_consumed
        x = r.outputs["x"]
        assert x.shape == (300, 4) and x.dtype == np.uint32
        k = WideCore.K
        kw = np.array([(k >> (32 * i)) & 0xFFFFFFFF for i in range(4)], np.uint32)
        assert np.array_equal(x[:, :3], a[:, :3] ^ kw[:3])
        assert np.array_equal(x[:, 3] & 0xF, a[:, 3] ^ kw[3])
        assert np.all(r.field("x", "tag") == 0xABCDEF1)
        assert r.outputs["y"].shape == (200, 2)
        assert np.array_equal(r.field("y", "v"), b + 1)
        if bp == 0:
            assert r.cycles == 300 + 20     # x at one beat per cycle, then idle_cycles


def test_manifest_mismatch_is_a_clear_error(tmp_path):
    bad = {**WIDE_MANIFEST, "ports": {**WIDE_MANIFEST["ports"],
                                      "b": {"dir": "in", "width": 39, "fields": {}}}}
    with pytest.raises(BuildError, match="40 bits wide in the Verilog but 39 in the manifest"):
        Harness(wide_verilog(), bad, build_root=tmp_path).build()
    missing = {**WIDE_MANIFEST, "ports": {**WIDE_MANIFEST["ports"],
                                          "q": {"dir": "out", "width": 8, "fields": {}}}}
    with pytest.raises(BuildError, match="no port 'q__payload'"):
        Harness(wide_verilog(), missing, build_root=tmp_path).build()


# ---------------------------------------------------------------- build cache

def _variant_of(tag):
    return selftest.verilog().replace("module echo_core", f"// cache test {tag}\nmodule echo_core", 1)


def test_cache_hit_and_rebuild(capsys):
    tag = uuid.uuid4().hex
    made = []
    try:
        h1 = Harness(_variant_of(tag), selftest.manifest())
        d1 = h1.build()
        made.append(d1)
        assert "building echo_core (plain)" in capsys.readouterr().err
        assert (d1 / LIB_NAME).exists() and d1.parent == default_build_root()
        # same text, new object: a cache hit, no notice
        h2 = Harness(_variant_of(tag), selftest.manifest())
        assert h2.build() == d1
        assert "building" not in capsys.readouterr().err
        cfg, pix, jobs = selftest.make_jobs(2, 5)
        check_reference(h2.run({"cfg": cfg, "pix": pix}, until=("status", 2)), jobs)
        # a change in the Verilog rebuilds; so does a build option
        h3 = Harness(_variant_of(tag + "x"), selftest.manifest())
        d3 = h3.build()
        made.append(d3)
        assert d3 != d1 and "building" in capsys.readouterr().err
        # the manifest's field layout is not part of the build
        m = selftest.manifest()
        m["ports"]["status"]["fields"] = {"code": [0, 8]}
        assert Harness(_variant_of(tag), m).build() == d1
        assert not list(default_build_root().glob(f".tmp-*{d1.name}*"))
    finally:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)


def test_concurrent_builds_do_not_collide(tmp_path):
    tag = uuid.uuid4().hex
    script = tmp_path / "build_one.py"
    vfile = tmp_path / "echo_core.v"
    vfile.write_text(_variant_of(tag))
    script.write_text(
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from sim.harness import Harness, selftest\n"
        f"h = Harness({str(vfile)!r}, selftest.manifest(), jobs=1)\n"
        "cfg, pix, jobs = selftest.make_jobs(2, 9)\n"
        "r = h.run({'cfg': cfg, 'pix': pix}, until=('status', 2))\n"
        "print(json.dumps({'dir': str(h.build()), 'status': r.outputs['status'].tolist()}))\n")
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    try:
        assert all(p.returncode == 0 for p in procs), outs
        lines = [o.strip().splitlines()[-1] for o, _ in outs]
        assert lines[0] == lines[1]
        notices = sum(e.count("preba harness: building") for _, e in outs)
        assert notices == 1, outs                      # the second waited for the first
    finally:
        import json
        shutil.rmtree(json.loads(outs[0][0].strip().splitlines()[-1])["dir"], ignore_errors=True)


# ---------------------------------------------------------------- waveforms

def parse_vcd(path):
    """Minimal VCD reader: ({id: name} of top-level vars, timescale, [(time, {id: value})])."""
    text = Path(path).read_text()
    header, _, body = text.partition("$enddefinitions $end")
    assert header.startswith("$version"), header[:40]
    timescale = re.search(r"\$timescale\s+(\S+)\s+\$end", header).group(1)
    names, depth = {}, 0
    for tok in re.finditer(r"\$scope|\$upscope|\$var\s+\w+\s+(\d+)\s+(\S+)\s+(\S+)", header):
        if tok.group(0) == "$scope":
            depth += 1
        elif tok.group(0) == "$upscope":
            depth -= 1
        elif depth == 1:
            names[tok.group(2)] = tok.group(3)
    steps, cur = [], None
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("$"):
            continue
        if line.startswith("#"):
            cur = {}
            steps.append((int(line[1:]), cur))
        elif line[0] in "01xz":
            cur[line[1:]] = line[0]
        elif line[0] == "b":
            val, ident = line[1:].split()
            cur[ident] = val
    return names, timescale, steps


def test_vcd_trace_window(tmp_path):
    h = echo()
    cfg, pix, jobs = selftest.make_jobs(3, 40)
    vcd = tmp_path / "w.vcd"
    r = h.run({"cfg": cfg, "pix": pix}, until=("status", 3), backpressure=0.2,
              trace=vcd, trace_window=(30, 60))
    check_reference(r, jobs)                    # the trace build computes the same thing
    names, timescale, steps = parse_vcd(vcd)
    assert timescale == "1ns"
    ids = {v: k for k, v in names.items()}
    assert {"clk", "rst", "cfg__payload", "pix__valid", "out__payload", "status__ready"} <= set(ids)
    times = [t for t, _ in steps]
    assert times[0] == 300 and times[-1] == 595
    assert all(300 <= t < 600 for t in times) and times == sorted(times)
    clk = [c[ids["clk"]] for t, c in steps if ids["clk"] in c]
    assert clk[:4] == ["0", "1", "0", "1"] and len(clk) == 60
    # out__valid high at a rising edge where out__ready is high = a beat in that cycle
    state, beats = {}, []
    for t, c in steps:
        state.update(c)
        if t % 10 == 0 and state.get(ids["out__valid"]) == "1" and state.get(ids["out__ready"]) == "1":
            beats.append(t // 10)
    in_window = [int(c) for c in r.beat_cycles["out"] if 30 <= c < 60]
    assert beats == in_window and beats
    small = vcd.stat().st_size
    h.run({"cfg": cfg, "pix": pix}, until=("status", 3), trace=tmp_path / "all.vcd")
    assert (tmp_path / "all.vcd").stat().st_size > 2 * small


def test_fst_needs_lz4(tmp_path):
    if fst_available():
        pytest.skip("liblz4-dev is installed; FST builds are possible")
    with pytest.raises(RuntimeError, match="liblz4-dev"):
        echo().run({}, trace=tmp_path / "x.fst")
    with pytest.raises(ValueError, match=r"\.vcd or \.fst"):
        echo().run({}, trace=tmp_path / "x.ghw")


# ---------------------------------------------------------------- coverage and speed

def test_coverage_report(tmp_path):
    from sim import coverage
    verilog, manifest, jobs = coverage.selftest_jobs()
    r = coverage.run_coverage(verilog, manifest, jobs, tmp_path, quiet=True)
    s = r["summary"]
    assert re.search(r"echo_core\s+\d+/\d+", s) and "toggles" in s
    assert (tmp_path / "annotated" / "echo_core.v").exists()
    assert (tmp_path / "coverage.dat").read_text().startswith("# SystemC::Coverage-3")
    assert "end_of_record" in (tmp_path / "coverage.info").read_text()
    ann = (tmp_path / "annotated" / "echo_core.v").read_text()
    assert re.search(r"^ \d{6}  ", ann, re.M)
    # a run that never resets a job leaves lines uncovered, and they are listed
    one = [{"inputs": {"cfg": np.array([5], np.uint32)}, "idle_cycles": 10}]
    r2 = coverage.run_coverage(verilog, manifest, one, tmp_path / "one", quiet=True)
    assert "uncovered in echo_core" in r2["summary"] and re.search(r"echo_core\.v:\d+", r2["summary"])
    assert re.search(r"^%0{6}  ", (tmp_path / "one" / "annotated" / "echo_core.v").read_text(), re.M)
    print("\n" + s)


def test_speed_report():
    for bp in (0.0, 0.3):
        b = bench_cycles_per_second(pixels=1_000_000, backpressure=bp)
        assert b["stop_reason"] == "until" and b["beats"]["out"] == 1_000_000 // 64 * 64
        print(f"\nharness, echo core, backpressure {bp}: {b['cycles']} cycles in "
              f"{b['sim_seconds']:.3f} s = {b['cycles_per_second'] / 1e6:.2f} M cycles/s")
