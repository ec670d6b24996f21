"""Static timing from nextpnr's SDF (``hdl.board.sdf_sta``), which the board report uses to
count failing endpoints per block: checked against nextpnr's own post-route Fmax on a routed
design (fixture made by ``tests/data/sdf/make_fixture.py``), and on a hand-written SDF whose
arrival times are known."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hdl.board.sdf_sta import analyze, main

DATA = Path(__file__).parent / "data" / "sdf"


def test_worst_path_matches_nextpnr_post_route_fmax():
    sdf = gzip.decompress((DATA / "two_blocks.sdf.gz").read_bytes()).decode()
    fmax_nextpnr = float((DATA / "two_blocks.fmax").read_text())
    t = analyze(sdf, period_ns=10.0)
    assert t.fmax_mhz() == pytest.approx(fmax_nextpnr, abs=0.01)
    # 48 shift-chain bits (the first is fed by the pin, so untimed) + 24 sum bits + hit + out
    assert len(t.endpoints) == 73
    w = t.worst
    assert w.start.startswith("acc.") and w.instance.startswith("cmp.")
    assert w.slack_ps == pytest.approx(10_000 - 1e6 / fmax_nextpnr, abs=2)
    # At a period just under the worst path, exactly that endpoint fails.
    t2 = analyze(sdf, period_ns=1e3 / fmax_nextpnr - 0.01)
    assert [e.instance for e in t2.failing] == [w.instance]
    assert t2.by_route() == [{"from": "acc", "to": "cmp", "failing": 1,
                              "worst_ns": pytest.approx(-0.01, abs=0.002)}]


HAND = r"""(DELAYFILE (SDFVERSION "3.0") (DIVIDER /) (TIMESCALE 1ps)
  (CELL (CELLTYPE "top") (INSTANCE )
    (DELAY (ABSOLUTE
      (INTERCONNECT gclk/CLKO u\$a.r0/CLK (0:0:0) (0:0:0))
      (INTERCONNECT u\$a.r0/Q u\$a.lut/A (100:150:200) (100:150:200))
      (INTERCONNECT u\$a.r1/Q u\$a.lut/B (300:400:500) (300:400:500))
      (INTERCONNECT u\$a.lut/F v.r2/M (50:60:70) (50:60:70))
      (INTERCONNECT pin/O v.r3/M (9000:9000:9000) (9000:9000:9000))
  )))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE u\$a.r0)
    (DELAY (ABSOLUTE (IOPATH CLK Q (400:450:500) (400:450:500)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE u\$a.r1)
    (DELAY (ABSOLUTE (IOPATH CLK Q (400:450:600) (400:450:600)))))
  (CELL (CELLTYPE "TRELLIS_COMB") (INSTANCE u\$a.lut)
    (DELAY (ABSOLUTE (IOPATH A F (200:220:240) (200:220:240))
                     (IOPATH B F (100:110:120) (100:110:120)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE v.r2)
    (DELAY (ABSOLUTE (IOPATH CLK Q (400:450:500) (400:450:500))))
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (30:40:50) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE v.r3)
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:0) (0:0:0))))
)
"""


def test_hand_written_sdf_arrival_is_the_max_over_paths():
    t = analyze(HAND, period_ns=1.0)
    # via r0: 500 + 200 + 240 + 70 = 1010; via r1: 600 + 500 + 120 + 70 = 1290 (the max)
    assert len(t.endpoints) == 1          # r3 is fed from a pin only: not timed
    e = t.endpoints[0]
    assert (e.instance, e.pin, e.start) == ("v.r2", "M", "u$a.r1")
    assert e.arrival_ps == 1290 and e.setup_ps == 50
    assert e.slack_ps == 1000 - 50 - 1290
    assert t.fmax_mhz() == pytest.approx(1e6 / 1340)
    assert t.by_module() == [{"module": "v", "failing": 1, "worst_ns": -0.34,
                              "total_ns": -0.34}]
    assert t.by_module(key="start")[0]["module"] == "u$a"
    assert analyze(HAND, period_ns=1.34).failing == []


def test_cli_names_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no such SDF file"):
        main([str(tmp_path / "nope.sdf")])


def test_clock_label_names_the_pll_net_sync_whatever_sink_nextpnr_named_it_after():
    from hdl.board.report import _clock_label
    assert _clock_label("$glbnet$board.core.clk") == "sync"
    assert _clock_label("$glbnet$board.core.cfg_skid.clk") == "sync"
    assert _clock_label("clk25_0__io") == "clk25_0__io"
