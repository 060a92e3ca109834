"""Make this directory importable (``appliance_harness``) and register its fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from appliance_harness import artifact, client, sdk_python, server  # noqa: E402, F401
