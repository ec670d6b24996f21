"""The serving CLI end to end: preba bench / profile / mig, as a user runs them (subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyhost.partitions import PartitionError, cpu_partitions, nvml_inventory
from pyhost.preprocessing import backend_available
from pyhost.profile import BatchStats, PartitionProfile, Profile, synthetic_profile

ROOT = Path(__file__).resolve().parents[1]
from conftest import SHARED_IMAGES as IMAGES  # noqa: E402


def preba(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pyhost.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def has_gpu() -> bool:
    try:
        nvml_inventory()
        return True
    except PartitionError:
        return False


def test_bench_real_model_json_and_plot(tmp_path):
    key = cpu_partitions(1)[0].profile_key
    pts = [(1, 30.0), (2, 33.0)]
    Profile("efficientnet-lite0", {key: PartitionProfile(
        key, [BatchStats(b, ms, ms, ms, ms, b * 1000 / ms) for b, ms in pts])}).save(
        tmp_path / "prof.json")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    r = preba("bench", "--images", str(IMAGES / "testorig.jpg"), str(IMAGES / "testimgint.jpg"),
              str(IMAGES / "monkey12.jpg"), "--rate", "4", "--duration", "1.0", "--warmup", "0.3",
              "--policies", "preba,none", "--preprocess", "pillow,ideal", "--partitions", "cpu:1",
              "--slo-ms", "500", "--profile", str(tmp_path / "prof.json"), "--buckets", "1,2",
              "--preprocess-workers", "1", "--json", str(out), "--plot", str(png),
              "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [(x["policy"], x["preprocess"]) for x in res["runs"]] == [
        ("preba", "pillow"), ("none", "pillow"), ("preba", "ideal"), ("none", "ideal")]
    for run in res["runs"]:
        assert set(run) >= {"policy", "preprocess", "partitions", "offered_rps",
                            "throughput_rps", "latency_ms", "slo_ms", "slo_violation_pct",
                            "batch_size_hist", "partition_util"}
        assert set(run["latency_ms"]) == {"p50", "p95", "p99"}
        assert run["partitions"] == "cpu:1" and run["slo_ms"] == 500
        assert run["modeled"] is False
        assert sum(run["counts"].values()) == run["requests"]
        assert set(run["partition_util"]) == {"cpu0"}
        assert all(int(b) <= 2 for b in run["batch_size_hist"])
    assert all(set(r2["batch_size_hist"]) <= {"1"} for r2 in res["runs"]
               if r2["policy"] == "none")
    assert res["meta"]["skipped_images"][0]["image"].endswith("monkey12.jpg")
    agree = res["meta"]["agreement_top1_golden_vs_pillow"]
    if backend_available("golden"):
        assert agree["images"] == 2 and agree["rate"] == 1.0
    else:
        assert agree["available"] is False
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "policy" in r.stdout and "top-1 agreement" in r.stdout


def test_profile_cli_writes_knees(tmp_path):
    out = tmp_path / "p.json"
    r = preba("profile", "--model", "null", "--partitions", "cpu:1", "--batch-sizes", "1,2,4",
              "--iters", "3", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    prof = Profile.load(out)
    pp = prof[cpu_partitions(1)[0].profile_key]
    assert pp.sizes == [1, 2, 4] and all(b.samples == 3 for b in pp.batches)
    assert pp.batch_knee in (1, 2, 4)
    d = json.loads(out.read_text())
    assert "knee_method" in d and "Batch_knee" in r.stdout


def test_mig_plan_cli_from_profile_file_and_builtin(tmp_path):
    Profile("m", {"mig:1g.10gb": synthetic_profile("mig:1g.10gb", 2, 1.0),
                  "mig:3g.40gb": synthetic_profile("mig:3g.40gb", 2, 0.3)}).save(tmp_path / "p.json")
    r = preba("mig", "plan", "--model", "m", "--slo-ms", "20", "--rate", "3000", "--profile",
              str(tmp_path / "p.json"), "--json", str(tmp_path / "plan.json"))
    assert r.returncode == 0, r.stderr
    assert "nvidia-smi mig -i 0 -cgi" in r.stdout and "preba never runs these" in r.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["capacity_ips"] >= 3000
    r = preba("mig", "plan", "--model", "resnet50", "--slo-ms", "30", "--rate", "10000",
              "--profile", "toolchain-h100")
    assert r.returncode == 0 and "TOOLCHAIN.md" in r.stdout and "not MIG" in r.stdout
    r = preba("mig", "plan", "--slo-ms", "30", "--rate", "10")
    assert r.returncode == 2 and "--profile" in r.stderr


@pytest.mark.skipif(has_gpu(), reason="a GPU is visible")
def test_asking_for_a_gpu_without_one_is_a_clear_error():
    r = preba("bench", "--images", str(IMAGES / "testorig.jpg"), "--rate", "1",
              "--partitions", "gpu")
    assert r.returncode == 2
    assert "no NVIDIA GPU visible" in r.stderr and "--partitions cpu:N" in r.stderr
    r = preba("bench", "--images", str(IMAGES / "testorig.jpg"), "--rate", "1",
              "--partitions", "cpu:1", "--preprocess", "fpga-model")
    assert r.returncode == 2 and "--fpga-cycles" in r.stderr
