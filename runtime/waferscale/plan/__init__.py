"""Placement of a Llama model on the wafer: region geometry, the planner, host-side packing."""
