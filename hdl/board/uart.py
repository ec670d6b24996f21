"""8N1 UART receiver and transmitter, one bit per ``divisor`` clock cycles.

On the board ``divisor = round(f_clk / baud)`` (100 MHz / 3 Mbaud -> 33); the simulated board
runs at a few clocks per bit so a frame crosses the link in microseconds of simulated time. Both
sides sample with the same divisor, so the receiver tolerates the usual few percent of baud
mismatch (it samples in the middle of each bit).
"""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "MIN_DIVISOR"]

#: The receiver needs a half-bit wait that is at least a couple of cycles.
MIN_DIVISOR = 4


def _check_divisor(divisor: int) -> int:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor {divisor!r} must be an integer >= {MIN_DIVISOR} "
                         "(clock cycles per bit)")
    return divisor


class UartRx(wiring.Component):
    """Receiver: ``rx`` pin in; each received byte is a one-cycle beat on ``o`` (no backpressure:
    whoever listens must take it, or count an overrun). ``frame_error`` pulses when a byte's stop
    bit is low (wrong baud rate, a break, or line noise); that byte is dropped."""

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8, always_ready=True)),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d + 1))
        bit = Signal(range(8))
        shreg = Signal(8)
        m.d.sync += [self.o.valid.eq(0), self.frame_error.eq(0)]
        m.d.comb += self.o.payload.eq(shreg)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):            # middle of the start bit: still low?
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"       # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(rx << 7 | shreg >> 1), timer.eq(d - 1)]
                    m.d.sync += bit.eq(bit + 1)
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += self.o.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):            # wait for the line to return high
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Transmitter: bytes from ``i`` out of the ``tx`` pin (idle high), back to back."""

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        shreg = Signal(10, init=0x3FF)     # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))
        m.d.comb += self.tx.eq(shreg[0])
        with m.If(bits == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(1 << 9 | self.i.payload << 1), bits.eq(10),
                             timer.eq(d - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(1 << 9 | shreg >> 1), bits.eq(bits - 1), timer.eq(d - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
