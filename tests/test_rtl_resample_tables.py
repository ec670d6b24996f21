"""The resample units with tables deep enough to be split over two memories (as on the board)
and the schedule in the second bank, straddling the split."""
from __future__ import annotations

import random

import numpy as np
import pytest

import tests.test_rtl_resample_units as units
from hdl.golden.resize import resample_axis
from hdl.resample import build_schedule
from hdl.rtl.hresample import HResample
from hdl.rtl.vresample import VResample


def _offset_loader(offset):
    def load(ctx, unit, sched):
        ctx.set(unit.bank, 1)       # the core sets the bank long before `run`
        for i, row in enumerate(sched.steps):
            ctx.set(unit.tbl_addr, offset + i)
            ctx.set(unit.tbl_data, {name: int(row[name]) for name, _ in units.STEP_FIELDS})
            ctx.set(unit.tbl_we, 1)
            yield
        ctx.set(unit.tbl_we, 0)
    return load


@pytest.mark.parametrize("n_in,n_out", [(40, 7), (7, 40), (64, 64)])
@pytest.mark.parametrize("vertical", [False, True])
@pytest.mark.parametrize("board", [False, True])
def test_split_table_bank1(monkeypatch, n_in, n_out, vertical, board):
    sched = build_schedule(n_in, n_out, 0, n_out)
    # bank 1 straddles the split at 512, or the board's depth (max size 2048: 4096 + 448)
    depth = 2272 if board else 512 - len(sched) // 2
    monkeypatch.setattr(units, "_load_table", _offset_loader(depth))
    rng = random.Random(n_in * 7 + n_out)
    nrng = np.random.default_rng(1)
    if vertical:
        width = 2
        img = nrng.integers(0, 256, (n_in, width, 3), dtype=np.uint8)
        unit = VResample(depth=depth, width_limit=4, banks=2)
        extra = {"width": width, "bank": 1}
        want = resample_axis(img, 0, n_out, 0, n_out).reshape(-1, 3)
        n = n_out * width
    else:
        img = nrng.integers(0, 256, (2, n_in, 3), dtype=np.uint8)
        unit = HResample(depth=depth, banks=2)
        extra = {"bank": 1}
        want = resample_axis(img, 1, n_out, 0, n_out).reshape(-1, 3)
        n = 2 * n_out
    pixels = [tuple(int(v) for v in p) for p in img.reshape(-1, 3)]
    got = units.simulate(unit, sched, pixels, n, extra, rng, stall=0.3)
    assert np.array_equal(np.array(got, np.uint8), want)
