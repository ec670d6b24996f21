"""preba host library: preprocess images (``Accelerator``) and serve a model on GPU partitions
with per-partition dynamic batching (``InferenceServer``).

Heavy dependencies (torch, the model library) load only where they are used: the serving process
routes requests without importing torch.
"""
from __future__ import annotations

from .accelerator import Accelerator, PreprocessError, Result

__all__ = ["Accelerator", "PreprocessError", "Result", "InferenceServer", "Prediction",
           "ServerError", "Overloaded", "DeadlineExceeded", "WorkerFailed", "ServerClosed",
           "Profile", "Partition", "resolve_partitions", "make_policy", "resolve_model"]

_LAZY = {
    "InferenceServer": "server", "Prediction": "server", "ServerError": "server",
    "Overloaded": "server", "DeadlineExceeded": "server", "WorkerFailed": "server",
    "ServerClosed": "server", "Profile": "profile", "Partition": "partitions",
    "resolve_partitions": "partitions", "make_policy": "batching", "resolve_model": "models",
}


def __getattr__(name: str):
    # Lazy so that `import pyhost.cli` for hardware commands does not load the serving stack.
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'pyhost' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f".{mod}", __name__), name)
