"""Bundles of format v1 (wms 0.1.0) keep loading and render sample-identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wms.cli import main

V1 = Path(__file__).parent / "fixtures" / "v1"


@pytest.mark.parametrize(
    "name, args",
    [
        ("fixed_220", ["--f0", "220", "--seconds", "1"]),
        ("controls", ["--controls", str(V1 / "controls.csv"), "--sr", "44100"]),
        ("tour", ["--path", "tour", "--seconds", "2", "--sr", "16000"]),
    ],
)
def test_v1_bundle_renders_sample_identically(tmp_path, name, args):
    out = tmp_path / f"{name}.wav"
    assert (
        main(["render", str(V1 / "model.wms"), "--out", str(out), "--format", "float", *args]) == 0
    )
    got, sr = sf.read(out, dtype="float32")
    want, sr0 = sf.read(V1 / f"{name}.wav", dtype="float32")
    assert sr == sr0
    assert got.shape == want.shape
    assert np.array_equal(got, want)
