"""The netlist pass that moves a block RAM read port's flip-flops into the DP16KD's output
register (hdl/board/bram_outreg.py): what it takes, and every case it must leave alone."""
import copy

from hdl.board.bram_outreg import absorb_output_registers

CLK = 2
CE = 3


def _ebr(do_b):
    conn = {f"DOB{i}": [bit] for i, bit in enumerate(do_b)}
    conn.update({f"DOB{i}": [1000 + i] for i in range(len(do_b), 18)})    # unused outputs
    conn.update({f"DOA{i}": [2000 + i] for i in range(18)})
    conn.update({"CLKA": [CLK], "CLKB": [CLK], "RSTA": ["0"], "RSTB": ["0"],
                 "OCEA": ["1"], "OCEB": ["1"], "CEB": [9]})
    dirs = {p: ("output" if p.startswith("DO") else "input") for p in conn}
    return {"type": "DP16KD", "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
            "port_directions": dirs, "connections": conn}


def _ff(d, q, ce=None, lsr="0", clk=CLK):
    params = {"CEMUX": "CE" if ce is not None else "1 ", "CLKMUX": "CLK", "LSRMUX": "LSR",
              "GSR": "DISABLED", "REGSET": "RESET"}
    conn = {"CLK": [clk], "DI": [d], "Q": [q], "LSR": [lsr],
            "CE": [ce] if ce is not None else ["1"]}
    dirs = {"CLK": "input", "DI": "input", "LSR": "input", "CE": "input", "Q": "output"}
    return {"type": "TRELLIS_FF", "parameters": params, "port_directions": dirs,
            "connections": conn}


def _lut(a, z):
    return {"type": "LUT4", "parameters": {}, "port_directions": {"A": "input", "Z": "output"},
            "connections": {"A": [a], "Z": [z]}}


def _netlist(cells):
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells}}}


def _base(ce=None):
    return {"ram": _ebr([10, 11]), "ff0": _ff(10, 20, ce), "ff1": _ff(11, 21, ce),
            "use": _lut(20, 30)}


def test_absorbs_plain_read_registers():
    n = _netlist(_base())
    stats = absorb_output_registers(n)
    cells = n["modules"]["top"]["cells"]
    assert stats == {"ports": 1, "flip_flops": 2, "ports_left": 0}
    assert "ff0" not in cells and "ff1" not in cells
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["parameters"]["REGMODE_A"] == "NOREG"        # port A drives nothing
    assert ram["connections"]["DOB0"] == [20] and ram["connections"]["DOB1"] == [21]
    assert ram["connections"]["OCEB"] == ["1"]
    assert cells["use"]["connections"]["A"] == [20]           # the user now reads the EBR


def test_shared_enable_becomes_the_output_enable():
    n = _netlist(_base(ce=CE))
    assert absorb_output_registers(n)["flip_flops"] == 2
    assert n["modules"]["top"]["cells"]["ram"]["connections"]["OCEB"] == [CE]


def _left_alone(cells):
    before = copy.deepcopy(cells)
    n = _netlist(cells)
    stats = absorb_output_registers(n)
    assert stats["ports"] == 0 and stats["ports_left"] == 1
    assert n["modules"]["top"]["cells"] == before


def test_leaves_flip_flops_with_different_enables():
    cells = _base()
    cells["ff1"] = _ff(11, 21, ce=CE)
    _left_alone(cells)


def test_leaves_flip_flops_with_a_reset():
    cells = _base()
    cells["ff0"] = _ff(10, 20, lsr=7)
    _left_alone(cells)


def test_leaves_flip_flops_on_another_clock():
    cells = _base()
    cells["ff1"] = _ff(11, 21, clk=5)
    _left_alone(cells)


def test_leaves_outputs_with_logic_or_fanout():
    cells = _base()
    cells["ff1"] = _lut(11, 31)                 # logic straight after the EBR
    _left_alone(cells)
    cells = _base()
    cells["also"] = _lut(10, 32)                # a second user of the same output
    _left_alone(cells)


def test_leaves_a_ram_whose_reset_is_used():
    cells = _base()
    cells["ram"]["connections"]["RSTB"] = [8]
    _left_alone(cells)
