"""Suite-wide set-up.

Importing the comptime evaluator raises Python's recursion limit once, at collection time
(the evaluator recurses over ASTs); doing it here keeps hypothesis from warning that the limit
changed inside a test."""

import waferscale.lang.comptime  # noqa: F401
