"""``preba gen``: Verilog and manifest.json for a pipeline spec."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from .fixedpoint import FORMATS, normalize_constants
from .job import HEADER_WORDS, Status
from .resample import LANES, STEP_FIELDS, STEP_WORDS
from .rtl.top import WATCHDOG_CYCLES, PreprocessCore, table_depths
from .spec import PipelineSpec

__all__ = ["generate", "verilog_text", "manifest", "top_name"]


def top_name(spec: PipelineSpec) -> str:
    return f"preba_{spec.name.replace('-', '_')}"


REPO = Path(__file__).resolve().parents[1]


_DIGEST: str | None = None


def _source_digest() -> str:
    """Hash of every gateware source file: a cached netlist is reused only for identical RTL.

    Taken once per process, after importing every gateware module the core can use, so it
    describes the code this process runs even if the files change on disk later."""
    global _DIGEST
    if _DIGEST is not None:
        return _DIGEST
    import hdl.jpeg.rtl.decoder  # noqa: F401  (imported before hashing, see above)
    h = hashlib.sha256()
    for f in sorted((REPO / "hdl").rglob("*.py")):
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    import amaranth
    h.update(amaranth.__version__.encode())
    _DIGEST = h.hexdigest()
    return _DIGEST


def verilog_text(spec: PipelineSpec) -> str:
    """The core's Verilog for ``spec``. Conversion of a big pipeline takes tens of seconds, so
    the text is cached under build/gen-cache by a hash of the spec and of the RTL sources."""
    # DCT scaling is chosen per job by the host: the same netlist serves both settings.
    spec = replace(spec, dct_scaling=False)
    key = hashlib.sha256((json.dumps(spec.to_dict(), sort_keys=True) + repr(spec)
                          + _source_digest()).encode()).hexdigest()[:20]
    cache = REPO / "build" / "gen-cache" / f"{top_name(spec)}-{key}.v"
    if cache.exists():
        return cache.read_text()
    text = verilog.convert(PreprocessCore(spec), name=top_name(spec), emit_src=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, cache)       # atomic: concurrent processes never read a partial file
    return text


def _fields(layout) -> dict:
    """{name: [lsb, width]} for a StructLayout; the pixel array ``rgb`` as fields r, g, b."""
    out = {}
    for name, f in layout:
        if name == "rgb":
            for c, ch in enumerate("rgb"):
                out[ch] = [f.offset + 8 * c, 8]
        else:
            out[name] = [f.offset, f.width]
    return out


def manifest(spec: PipelineSpec, verilog_file: str, verilog_sha256: str) -> dict:
    core = PreprocessCore(spec)
    core._MustUse__silence = True     # only its signature is needed here
    e = spec.output.element_bits
    ports = {}
    for name, member in core.signature.members.items():
        payload = member.signature.members["payload"].shape
        width = payload.size if hasattr(payload, "size") else payload.width
        fields = _fields(payload) if hasattr(payload, "__iter__") else {"word": [0, width]}
        ports[name] = {"dir": "in" if member.flow == wiring.In else "out", "width": width,
                       "fields": fields}
    ports["out"].update(elements=3, element_width=e)
    h_depth, v_depth = table_depths(spec)
    consts = normalize_constants(spec)
    return {
        "top": top_name(spec),
        "verilog": verilog_file,
        "verilog_sha256": verilog_sha256,
        "clock": "clk",
        "reset": "rst",
        "pipeline": spec.to_dict(),
        "ports": ports,
        "parameters": {
            "max_width": spec.max_width, "max_height": spec.max_height,
            "max_output_width": spec.out_width_limit,
            "h_table_depth": h_depth, "v_table_depth": v_depth,
            "resample_lanes": LANES, "watchdog_cycles": WATCHDOG_CYCLES,
            "output_dtype": spec.output.dtype, "output_layout": spec.output.layout,
            "element_bits": e,
            "normalize_gain_raw": list(consts[0]) if consts else None,
            "normalize_bias_raw": list(consts[1]) if consts else None,
        },
        "job": {
            "header_words": HEADER_WORDS,
            "step_words": STEP_WORDS,
            "step_fields": [[n, w] for n, w in STEP_FIELDS],
            "doc": "see hdl/job.py for the cfg word layout",
        },
        "status_codes": {s.name: int(s) for s in Status},
        "fixed_point": [f.describe() for f in FORMATS],
    }


def generate(spec: PipelineSpec, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog_text(spec)
    vfile = f"{top_name(spec)}.v"
    (out_dir / vfile).write_text(text)
    man = manifest(spec, vfile, hashlib.sha256(text.encode()).hexdigest())
    (out_dir / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    return {"verilog": out_dir / vfile, "manifest": out_dir / "manifest.json", "manifest_data": man}
