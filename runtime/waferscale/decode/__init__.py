"""The decode path on the wafer: the wafer-numerics NumPy reference (``numerics``)."""
