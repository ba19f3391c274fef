"""`wms demo`: the whole pipeline on basic waves, on a step budget, ending with a verdict."""

from __future__ import annotations

import json

import pytest

from wms.bundle import load_bundle
from wms.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end_twice_and_says_whether_the_model_beats_the_baselines(
    tmp_path, capsys
):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--seconds", "24", "--max-steps", "40"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    m = load_bundle(out / "run" / "model.wms").metrics
    assert m["split"] == "test" and m["model"]["harm_lsd_db"] > 0
    assert load_bundle(out / "run" / "model.wms").history[-1]["step"] == 40  # steps, not minutes
    verdict = "beats" if m["beats_both_baselines"] else "does NOT beat"
    assert f"verdict: the model {verdict} both baselines: harmonic-bin LSD " in text
    assert f"{m['model']['harm_lsd_db']:.2f} dB against" in text
    for name in ("fixed_220hz.wav", "lorenz.wav", "tour.wav", "report/report.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report" / "metrics.json").read_text())["split"] == "test"
    # a second demo into the same folder replaces its own outputs
    assert main(argv) == 0
    assert "verdict: the model" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--out", str(out), "--max-minutes", "2", "--max-steps", "x"])
    assert main(["demo", "--out", str(out), "--max-steps", "0"]) == 2
    assert "--max-steps = 0 must be at least 1" in capsys.readouterr().err
