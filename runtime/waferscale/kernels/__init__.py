"""Python handles of the CSL kernels in ``csl/``: compile, lay host data out, run on the
simulator, read results back, and report simulated cycles.

Each handle mirrors its kernel's README (data layout across PEs, params) and is checked
against NumPy in ``simulator_tests/kernels``. ``waferscale bench`` (:mod:`.bench`) measures
them against their physical floors (:mod:`.floors`, docs/kernels.md).
"""

import importlib

# Handle class -> module of this package defining it.
_HANDLES = {"Allreduce": "allreduce", "Argmax": "argmax", "Broadcast": "broadcast",
            "DecodeAttention": "attention", "Gemm": "gemm", "Gemv": "gemv",
            "GemvChain": "gemv_chain", "MeshGemm": "meshgemm", "MeshGemv": "meshgemv",
            "RmsNorm": "rmsnorm", "Rope": "rope", "SwiGLU": "swiglu"}

__all__ = sorted(_HANDLES)


def __getattr__(name: str):
    # Lazy, so that registering `waferscale bench` does not import NumPy and the host API.
    if name in _HANDLES:
        return getattr(importlib.import_module(f".{_HANDLES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
