"""``waferscale calibrate``: the timing model stays calibrated. The MeshGEMV rows (the cases the
model's fitted costs were set from, docs/timing-model.md) must stay within +-25% of the cycles
measured on a real WSE-3; a held-out MeshGEMM row runs and is reported. A change to the cost
table that breaks the calibration fails here."""

from __future__ import annotations

import json

from waferscale.cli import main
from waferscale.kernels import calibrate


def test_meshgemv_rows_match_the_hardware_within_tolerance():
    rows = calibrate.run(only="meshgemv")
    assert len(rows) == len(calibrate.measurements()["meshgemv"]["cases"]) >= 16
    off = [(r.case, round(r.ratio, 3)) for r in rows if abs(r.ratio - 1) > calibrate.TOLERANCE]
    assert not off
    assert not any(r.held_out for r in rows)


def test_a_held_out_meshgemm_row_is_reported():
    case = calibrate.measurements()["meshgemm"]["cases"][0]
    row = calibrate.meshgemm_row(case)
    assert row.held_out and row.measured == case["cycles"] and row.simulated > 0


def test_cli_json_rows(capsys):
    assert main(["calibrate", "--only", "meshgemv", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"case", "simulated", "measured", "ratio", "held_out"} <= set(rows[0])
    for r in rows:
        assert r["ratio"] == round(r["simulated"] / r["measured"], 3)
