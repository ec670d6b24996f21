"""``python -m sim.harness``: the harness speed benchmark on the self-test design (JSON lines)."""
import json

from sim.toolchain import ensure_tools_on_path

from .bench import bench_cycles_per_second

ensure_tools_on_path()
for bp in (0.0, 0.3):
    print(json.dumps(bench_cycles_per_second(backpressure=bp)))
