"""waferscale: open CSL kernels, a CSL front end and fabric simulator, and an LLM decode runtime
for the Cerebras Wafer-Scale Engine.

Subpackages:
    waferscale.lang   the CSL front end (lexer, parser, printer, comptime evaluator, layout)
    waferscale.host   the SDK's host API (SdkRuntime, memcpy layouts, sdk_utils), cslc
    waferscale.sim    the fabric simulator (PE model, fabric core, timing, traces)
    waferscale.model  GGUF models, tokenizer and the NumPy reference decoder

The names most users need are re-exported here lazily: ``waferscale.compile``,
``waferscale.SdkRuntime``, ``waferscale.MemcpyDataType``, ``waferscale.MemcpyOrder``.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


_LAZY = {"compile", "SdkRuntime", "MemcpyDataType", "MemcpyOrder", "Task", "DeviceError",
         "DeadlockError"}


def __getattr__(name: str):
    # Lazy so that `import waferscale` (and the CLI's start-up) stays light.
    if name in _LAZY:
        from waferscale import host
        return getattr(host, name)
    raise AttributeError(f"module 'waferscale' has no attribute {name!r}")
