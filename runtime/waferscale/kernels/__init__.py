"""Python handles of the CSL kernels in ``csl/``: compile, lay host data out, run on the
simulator, read results back, and report simulated cycles.

Each handle mirrors its kernel's README (data layout across PEs, params) and is checked
against NumPy in ``simulator_tests/kernels``. ``waferscale bench`` (:mod:`.bench`) measures
them against their physical floors (:mod:`.floors`, docs/kernels.md).
"""

__all__ = ["Allreduce", "Argmax", "Gemv", "RmsNorm", "Rope", "SwiGLU"]


def __getattr__(name: str):
    # Lazy, so that registering `waferscale bench` does not import NumPy and the host API.
    if name == "Gemv":
        from .gemv import Gemv
        return Gemv
    if name == "Rope":
        from .rope import Rope
        return Rope
    if name == "RmsNorm":
        from .rmsnorm import RmsNorm
        return RmsNorm
    if name == "SwiGLU":
        from .swiglu import SwiGLU
        return SwiGLU
    if name == "Argmax":
        from .argmax import Argmax
        return Argmax
    if name == "Allreduce":
        from .allreduce import Allreduce
        return Allreduce
    raise AttributeError(name)
