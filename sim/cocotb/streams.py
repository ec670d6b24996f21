"""Valid/ready stream drivers for cocotb 2 testbenches, shaped like cocotbext-axi's
``AxiStreamSource`` / ``AxiStreamSink`` but for Amaranth ``lib.stream`` ports, whose Verilog
names are ``<prefix>__payload``, ``<prefix>__valid`` and ``<prefix>__ready``.

Payloads are plain Python ints (the whole ``payload`` vector, bit 0 = LSB), so the drivers work
for any width and layout; pack and unpack fields in the testbench.

Timing: each cycle a driver writes its outputs just after the rising edge, then samples the
handshake in ``ReadOnly``, when every combinational path (a ``ready`` that depends on ``valid``,
say) has settled to what the DUT will see at the next edge; a handshake sampled there is a
transfer at that edge. This does not depend on when the simulator applies writes or on what a
read right at the edge returns.

Protocol kept by :class:`StreamSource`: once ``valid`` is high it stays high, with the payload
unchanged, until the transfer (pauses only delay the start of a beat). :class:`StreamMonitor`
checks the same rules on a DUT's output.

Typical use::

    rng = random.Random(seed)
    src = StreamSource(dut, "i", dut.clk, random_pauses(rng, 0.3), reset=dut.rst)
    snk = StreamSink(dut, "o", dut.clk, random_pauses(rng, 0.3), reset=dut.rst)
    for word in words:
        src.send_nowait(word)
    got = [await snk.recv() for _ in words]
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator

import cocotb
from cocotb.handle import SimHandleBase
from cocotb.queue import Queue
from cocotb.triggers import Event, ReadOnly, RisingEdge

__all__ = ["random_pauses", "StreamSource", "StreamSink", "StreamMonitor"]

PauseGenerator = Iterator[bool]


def random_pauses(rng: random.Random, p: float) -> PauseGenerator:
    """An endless pause generator: each cycle pauses with probability ``p``."""
    while True:
        yield rng.random() < p


class _StreamPort:
    """The three signals of one stream port, plus reset and pause bookkeeping."""

    def __init__(self, dut: SimHandleBase, prefix: str, clk: SimHandleBase,
                 pause_generator: PauseGenerator | None, reset: SimHandleBase | None,
                 reset_active_high: bool):
        self.prefix = prefix
        self.clk = clk
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.width = len(self.payload)
        self.reset = reset
        self.reset_active_high = reset_active_high
        self._pause_generator = pause_generator

    def set_pause_generator(self, generator: PauseGenerator | None) -> None:
        self._pause_generator = generator

    def clear_pause_generator(self) -> None:
        self._pause_generator = None

    def _paused(self) -> bool:
        """Advances the pause generator by one cycle (it is called exactly once per cycle)."""
        return self._pause_generator is not None and next(self._pause_generator)

    def _in_reset(self) -> bool:
        if self.reset is None:
            return False
        return bool(self.reset.value) == self.reset_active_high


class StreamSource(_StreamPort):
    """Drives ``<prefix>__payload`` / ``__valid`` from a queue of ints; reads ``__ready``.

    ``pause_generator`` yields one bool per clock; True keeps ``valid`` low that cycle if no
    beat is on the bus yet. ``reset`` (optional, active high unless ``reset_active_high`` is
    False) holds ``valid`` low while asserted; a pending beat is presented after reset.
    """

    def __init__(self, dut: SimHandleBase, prefix: str, clk: SimHandleBase,
                 pause_generator: PauseGenerator | None = None, *,
                 reset: SimHandleBase | None = None, reset_active_high: bool = True):
        super().__init__(dut, prefix, clk, pause_generator, reset, reset_active_high)
        self.queue: deque[int] = deque()
        self.sent = 0  #: beats transferred so far
        self._current: int | None = None
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        self.payload.value = 0
        self._task = cocotb.start_soon(self._run())

    async def send(self, payload: int) -> None:
        """Queue one beat (the queue is unbounded, so this never blocks)."""
        self.send_nowait(payload)

    def send_nowait(self, payload: int) -> None:
        payload = int(payload)
        if not 0 <= payload < (1 << self.width):
            raise ValueError(f"{self.prefix}: payload {payload:#x} does not fit "
                             f"{self.width} unsigned bits")
        self.queue.append(payload)
        self._idle.clear()

    def count(self) -> int:
        """Beats queued and not yet on the bus."""
        return len(self.queue)

    def empty(self) -> bool:
        return not self.queue

    def idle(self) -> bool:
        """Nothing queued and nothing waiting on the bus."""
        return not self.queue and self._current is None

    async def wait(self) -> None:
        """Until every queued beat has been transferred."""
        await self._idle.wait()

    async def _run(self) -> None:
        fired = False
        while True:
            await RisingEdge(self.clk)
            if fired:
                self._current = None
                self.sent += 1
            paused = self._paused()
            if self._in_reset():
                self.valid.value = 0
            elif self._current is not None:
                self.valid.value = 1  # re-assert after a reset; otherwise unchanged
            elif self.queue and not paused:
                self._current = self.queue.popleft()
                self.payload.value = self._current
                self.valid.value = 1
            else:
                self.valid.value = 0
            if self.idle():
                self._idle.set()
            presenting = self._current is not None and not self._in_reset()
            await ReadOnly()
            fired = presenting and bool(self.ready.value)


class StreamSink(_StreamPort):
    """Drives ``<prefix>__ready``; every transferred payload (an int) goes to ``queue``.

    ``pause_generator`` yields one bool per clock; True keeps ``ready`` low that cycle.
    ``reset`` (optional) holds ``ready`` low while asserted.
    """

    def __init__(self, dut: SimHandleBase, prefix: str, clk: SimHandleBase,
                 pause_generator: PauseGenerator | None = None, *,
                 reset: SimHandleBase | None = None, reset_active_high: bool = True):
        super().__init__(dut, prefix, clk, pause_generator, reset, reset_active_high)
        self.queue: Queue[int] = Queue()
        self.received = 0  #: beats transferred so far
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def recv(self) -> int:
        """The next received payload, waiting for it if need be."""
        return await self.queue.get()

    def recv_nowait(self) -> int:
        """The next received payload; raises ``cocotb.queue.QueueEmpty`` if there is none."""
        return self.queue.get_nowait()

    def count(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    async def _run(self) -> None:
        fired, beat = False, 0
        while True:
            await RisingEdge(self.clk)
            if fired:
                self.received += 1
                self.queue.put_nowait(beat)
            ready = not self._paused() and not self._in_reset()
            self.ready.value = int(ready)
            await ReadOnly()
            fired = ready and bool(self.valid.value)
            if fired:
                beat = int(self.payload.value)


class StreamMonitor:
    """Checks a stream port's protocol every cycle and records its transfers.

    Outside reset: ``valid`` is never X/Z, and once ``valid`` is high without ``ready``, the
    next cycle still has ``valid`` high and the same payload. A violation raises
    ``AssertionError`` in the monitor's task, which fails the running test. ``transfers``
    lists ``(cycle, payload)``, cycles counted from the monitor's start.
    """

    def __init__(self, dut: SimHandleBase, prefix: str, clk: SimHandleBase, *,
                 reset: SimHandleBase | None = None, reset_active_high: bool = True):
        self.port = _StreamPort(dut, prefix, clk, None, reset, reset_active_high)
        self.transfers: list[tuple[int, int]] = []
        self.cycle = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        port, held = self.port, None  # held: payload of a beat that was stalled last cycle
        while True:
            await RisingEdge(port.clk)
            self.cycle += 1
            await ReadOnly()
            if port._in_reset():
                held = None
                continue
            valid, ready = bool(port.valid.value), bool(port.ready.value)
            payload = int(port.payload.value) if valid else None
            if held is not None:
                assert valid, f"{port.prefix}: valid dropped before the transfer"
                assert payload == held, (f"{port.prefix}: payload changed while stalled: "
                                         f"{held:#x} -> {payload:#x}")
            if valid and ready:
                self.transfers.append((self.cycle, payload))
            held = payload if valid and not ready else None
