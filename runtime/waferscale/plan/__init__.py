"""Placement of a Llama model on the wafer: region geometry (:mod:`.geometry`), the planner
(:mod:`.planner`: ``plan_model``, ``Plan``, ``model_cycles``, ``PlanError``), its command
``waferscale plan`` (:mod:`.cli`) and heatmap (:mod:`.heatmap`), host-side packing.

Nothing is imported here, so that ``import waferscale.plan.geometry`` stays light."""
