"""waferscale: open CSL kernels, a CSL front end and fabric simulator, and an LLM decode runtime
for the Cerebras Wafer-Scale Engine.

Subpackages:
    waferscale.lang   the CSL front end (lexer, parser, printer, comptime evaluator, layout)
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
