"""The one exception type of :mod:`waferscale.model`.

Every user mistake or bad input that the model layer can detect (a missing or corrupt model
file, an architecture or quantization type it does not implement, a prompt longer than the
context window, ...) is raised as :class:`ModelError` with a message meant for the user, so the
command line can print it and exit 1 instead of showing a traceback.
"""

from __future__ import annotations


class ModelError(Exception):
    """A model file or a request cannot be served; ``str(err)`` is a complete user message."""
