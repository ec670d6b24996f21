"""The out-of-context timing wrapper (`preba block-timing`): every input bit of the block is a
register of one shift chain, and every output bit reaches the single output pin through the
XOR tree. Simulated here with Amaranth's simulator; the place-and-route itself needs the fpga
extra and is not part of the test suite."""
from __future__ import annotations

import random

from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.board.block_timing import BLOCKS, BlockHarness, _blocks
from hdl.spec import load_pipeline


class Passthrough(wiring.Component):
    """Two inputs, one output: their XOR, combinationally (so the output's parity is the
    parity of all input bits)."""
    def __init__(self):
        super().__init__({"a": In(5), "b": In(3), "y": Out(5)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a ^ self.b)
        return m


def test_chain_feeds_every_input_bit_and_tree_folds_every_output_bit():
    seed = 1234
    print(f"seed {seed}")
    rng = random.Random(seed)
    blk = Passthrough()
    top = BlockHarness(blk)
    sim = Simulator(top)
    bits = [rng.randrange(2) for _ in range(8)]
    seen = {}

    async def tick(ctx):        # the wrapper's clock is a plain input pin
        ctx.set(top.clk, 1)
        await ctx.delay(1e-6)
        ctx.set(top.clk, 0)
        await ctx.delay(1e-6)

    async def bench(ctx):
        for b in reversed(bits):    # the first bit shifted in ends at the chain's far end
            ctx.set(top.si, b)
            await tick(ctx)
        a, bb = ctx.get(blk.a), ctx.get(blk.b)
        seen["inputs"] = [(a >> i) & 1 for i in range(5)] + [(bb >> i) & 1 for i in range(3)]
        ctx.set(top.si, 0)
        # The output pin shows the parity of the outputs captured on the next edge after
        # the tree's latency: out_reg, then two XOR levels (5 bits -> 2 -> 1).
        for _ in range(3):
            await tick(ctx)
        seen["so"] = ctx.get(top.so)
        seen["y"] = (a ^ bb) & 0x1f

    sim.add_testbench(bench)
    sim.run()
    # Chain order: a[0] is next to the pin and b[2] at the far end.
    assert seen["inputs"] == bits
    parity = bin(seen["y"]).count("1") & 1
    assert seen["so"] == parity


def test_every_block_elaborates_in_the_wrapper():
    spec = load_pipeline("imagenet")
    blocks = _blocks(spec)
    assert set(blocks) == set(BLOCKS)
    for name in ("normalize", "layout", "parser"):
        top = BlockHarness(blocks[name]())
        text = rtlil.convert(top, ports=[top.clk, top.rst, top.si, top.so], name="top")
        assert "in_reg" in text and "xor_reg" in text, name
