"""Run ``preba serve`` in a subprocess on free loopback ports and wait until it is ready.

>>> with ServeProcess(["--partitions", "cpu:1"]) as srv:
...     client = tritonclient.http.InferenceServerClient(srv.http_url)
...     ...
...     assert srv.terminate() == 0          # SIGTERM: drain, exit 0

Used by the tests and ``make demo``. The server's stderr goes to a log file (``log_path``) whose
tail is shown when it fails to start.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .app import READY_PREFIX

__all__ = ["ServeProcess", "ServeFailed"]

REPO = Path(__file__).resolve().parents[2]
_READY = re.compile(r"http=http://(?P<http>\S+) grpc=(?P<grpc>\S+) metrics=(?P<metrics>\S+)")


class ServeFailed(RuntimeError):
    pass


class ServeProcess:
    def __init__(self, args: list[str], *, host: str = "127.0.0.1",
                 startup_timeout_s: float = 300.0, log_path: str | os.PathLike | None = None,
                 env: dict | None = None):
        self.args = ["--host", host, "--port", "0", "--grpc-port", "0", *args]
        self.startup_timeout_s = startup_timeout_s
        self._own_log = log_path is None
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="preba-serve-", suffix=".log")[1])
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.http_url = self.grpc_url = self.metrics_url = ""
        self.ready_line = ""
        self.stdout_lines: list[str] = []
        self._lines: queue.Queue = queue.Queue()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "ServeProcess":
        cmd = [sys.executable, "-m", "pyhost.cli", "serve", *self.args]
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, env=env, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise ServeFailed(f"preba serve not ready after {self.startup_timeout_s:.0f} s\n"
                                  f"{self.log_tail()}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                raise ServeFailed(f"preba serve exited with status {rc} before it was ready\n"
                                  f"{self.log_tail()}")
            if line.startswith(READY_PREFIX):
                m = _READY.search(line)
                if not m:
                    raise ServeFailed(f"cannot parse the ready line: {line!r}")
                self.ready_line = line
                self.http_url, self.grpc_url = m.group("http"), m.group("grpc")
                self.metrics_url = m.group("metrics")
                return self

    def _pump(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the exit status (SIGKILL after ``timeout_s``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServeFailed(f"preba serve did not exit within {timeout_s:.0f} s of SIGTERM\n"
                              f"{self.log_tail()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()[-lines:]
        return "server log (stderr):\n  " + "\n  ".join(text) if text else "(no server log)"

    def close(self) -> None:
        try:
            if self.running:
                try:
                    self.terminate(30)
                except ServeFailed:
                    pass
        finally:
            if getattr(self, "_log", None):
                self._log.close()
            if self._own_log:
                try:
                    self.log_path.unlink()
                except OSError:
                    pass

    def __enter__(self) -> "ServeProcess":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()


# --- what the library says, for checking what the endpoint says ----------------------------------
def reference_predictions(images: list[bytes], model: str = "efficientnet-lite0", topk: int = 5,
                          preprocess: str = "pillow") -> list[tuple[tuple[int, ...],
                                                                    tuple[float, ...]]]:
    """Top-k (classes, scores) of each image from a direct model call in this process: the
    model's pipeline on the ``preprocess`` backend, then the worker's forward pass. Imports
    torch."""
    import torch

    from ..accelerator import Accelerator
    from ..models import build_module, resolve_model
    from ..worker import forward_topk

    info = resolve_model(model)
    acc = Accelerator(info.pipeline, preprocess)
    module = build_module(info.ref).to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for data in images:
            t = torch.from_numpy(acc.preprocess(data))[None]
            c, s = forward_topk(module, t, topk, torch.float32, True)
            out.append((tuple(int(v) for v in c[0]), tuple(float(v) for v in s[0])))
    return out


def same_prediction(classes, scores, ref_classes, ref_scores, tol: float = 2e-3) -> bool:
    """Equal top-k up to float noise: scores within ``tol``, and classes equal wherever the
    reference's scores are not tied within ``tol`` (batched and single runs round differently,
    which may swap two classes of nearly equal score)."""
    classes, scores = [int(c) for c in classes], [float(s) for s in scores]
    if len(classes) != len(ref_classes):
        return False
    if any(abs(a - b) > tol for a, b in zip(scores, ref_scores)):
        return False
    for i, (c, rc) in enumerate(zip(classes, ref_classes)):
        if c == rc:
            continue
        near = [j for j, s in enumerate(ref_scores) if abs(s - ref_scores[i]) <= tol]
        if not any(ref_classes[j] == c for j in near):
            return False
    return True
