"""Partition parsing and discovery (with a fake NVML inventory), and MIG planning."""
from __future__ import annotations

import pytest

from pyhost.mig import (GPU_TYPES, TOOLCHAIN_SOURCE, builtin_profile, creation_order,
                        format_plan, plan, valid_layouts)
from pyhost.partitions import (GpuInfo, MigInstance, PartitionError, cpu_cores,
                               cpu_partitions, nvml_inventory, resolve_partitions)
from pyhost.profile import Profile, synthetic_profile


def fake_gpus(mig: bool):
    if not mig:
        return [GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", False)]
    inst = tuple(MigInstance(0, f"MIG-{i:04d}", p, s, sm, 10000)
                 for i, (p, s, sm) in enumerate([("3g.40gb", 3, 60), ("1g.10gb", 1, 16),
                                                 ("1g.10gb", 1, 16)]))
    return [GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", True, inst),
            GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-bbbb", False)]


def test_cpu_partitions_split_cores():
    parts = cpu_partitions(2, cores=8)
    assert [p.threads for p in parts] == [4, 4]
    assert [p.process for p in parts] == [0, 1]
    assert parts[0].profile_key == "cpu:4t" and parts[0].device == "cpu"
    assert cpu_partitions(4, cores=2)[0].threads == 1  # never zero threads
    parts = resolve_partitions("cpu:3")
    assert len(parts) == 3 and parts[0].threads == max(1, cpu_cores() // 3)


@pytest.mark.parametrize("bad", ["cpu:0", "cpu:x", "tpu", "sm:", "mps:101"])
def test_bad_partition_strings(bad):
    with pytest.raises(PartitionError, match="--partitions"):
        resolve_partitions(bad, inventory=fake_gpus(False))


def test_no_gpu_is_a_clear_error():
    try:
        nvml_inventory()
    except PartitionError as e:
        assert "no NVIDIA GPU visible" in str(e) and "cpu:N" in str(e)
        with pytest.raises(PartitionError, match="no NVIDIA GPU visible"):
            resolve_partitions("gpu")
        assert resolve_partitions("auto")[0].kind == "cpu"  # auto falls back to CPU workers
    else:
        pytest.skip("a GPU is visible here")


def test_mig_partitions_from_inventory():
    parts = resolve_partitions("mig", inventory=fake_gpus(True))
    assert [p.profile_key for p in parts] == ["mig:3g.40gb", "mig:1g.10gb", "mig:1g.10gb"]
    assert dict(parts[1].env) == {"CUDA_VISIBLE_DEVICES": "MIG-0001"}
    assert len({p.process for p in parts}) == 3  # one process per instance


def test_auto_uses_mig_instances_and_whole_gpus():
    parts = resolve_partitions("auto", inventory=fake_gpus(True))
    assert [p.kind for p in parts] == ["mig", "mig", "mig", "gpu"]
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert dict(parts[3].env)["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
    assert resolve_partitions("auto", inventory=fake_gpus(False))[0].kind == "gpu"


def test_mig_without_instances_says_what_to_do():
    with pytest.raises(PartitionError, match="MIG mode is off.*mig plan"):
        resolve_partitions("mig", inventory=fake_gpus(False))
    with pytest.raises(PartitionError, match="SM partitions need a whole GPU"):
        resolve_partitions("mps:50,50", inventory=fake_gpus(True))


def test_mps_partitions():
    parts = resolve_partitions("mps:30,70", inventory=fake_gpus(False))
    assert [dict(p.env)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] for p in parts] == ["30", "70"]
    assert [p.profile_key for p in parts] == ["mps:30", "mps:70"]


# --- MIG planning -------------------------------------------------------------------------------
def test_valid_layouts_follow_placement_rules():
    lays = {tuple(sorted(p.name for p, _ in lay)) for lay in valid_layouts(GPU_TYPES["h100-80gb"])}
    assert ("1g.10gb",) * 7 in lays
    assert ("3g.40gb", "4g.40gb") in lays
    assert ("3g.40gb", "3g.40gb") in lays
    assert ("4g.40gb", "4g.40gb") not in lays              # one 4g placement only
    assert ("1g.10gb",) * 8 not in lays                    # 7 compute slices
    assert ("2g.20gb", "2g.20gb", "2g.20gb", "2g.20gb") not in lays
    for lay in valid_layouts(GPU_TYPES["h100-80gb"]):
        used = 0
        for p, s in lay:
            mask = ((1 << p.mem_slots) - 1) << s
            assert s in p.placements and not used & mask
            used |= mask


def test_creation_order_packs_with_first_fit():
    g = {p.name: p for p in GPU_TYPES["h100-80gb"]}
    # 3g at 4, 2g at 0, 1g at 2 and 3: largest-first first-fit would put 3g at 0 and fail.
    inst = ((g["3g.40gb"], 4), (g["2g.20gb"], 0), (g["1g.10gb"], 2), (g["1g.10gb"], 3))
    order = creation_order(inst)
    used = 0
    for p, _ in order:
        s = next(s for s in p.placements if not used & (((1 << p.mem_slots) - 1) << s))
        used |= ((1 << p.mem_slots) - 1) << s


def test_plan_from_profile_picks_slices_and_prints_commands():
    # 1g: L(b) = 2 + 1 b ms; 7g: L(b) = 2 + 0.25 b ms (4x a 1g slice, not 7x: small slices win)
    prof = Profile("m", {"mig:1g.10gb": synthetic_profile("mig:1g.10gb", 2, 1.0),
                         "mig:7g.80gb": synthetic_profile("mig:7g.80gb", 2, 0.25)})
    p = plan(prof, slo_ms=20, rate_rps=20000)
    # 1g under SLO 20: 2 L(b) <= 20 -> b <= 8 -> 8 / 10 ms = 800 img/s; 7 slices -> 5600/GPU
    assert p.slices["1g.10gb"].batch == 8
    assert p.gpus[0].names() == ["1g.10gb"] * 7
    assert len(p.gpus) == 4  # 20000 / 5600 -> 4 GPUs, the last right-sized
    assert p.gpus[-1].capacity_ips >= 20000 - 3 * 5600
    assert p.capacity_ips >= 20000
    cmds = p.commands()
    assert "nvidia-smi mig -i 0 -cgi 19,19,19,19,19,19,19 -C" in cmds
    assert "preba never runs these" in format_plan(p)


def test_plan_errors():
    with pytest.raises(ValueError, match="no MIG measurements"):
        plan(Profile("m", {"cpu:1t": synthetic_profile("cpu:1t", 1, 1)}), 10, 10)
    with pytest.raises(ValueError, match="meets a 1 ms SLO"):
        plan(Profile("m", {"mig:1g.10gb": synthetic_profile("mig:1g.10gb", 5, 1)}), 1, 10)


def test_builtin_toolchain_profile_is_labelled():
    prof = builtin_profile("resnet50")
    assert prof.source == TOOLCHAIN_SOURCE and "not MIG" in prof.source
    p = plan(prof, 20, 10000)
    assert p.source == TOOLCHAIN_SOURCE
    with pytest.raises(ValueError, match="--profile FILE"):
        builtin_profile("efficientnet-lite0")
