"""Bundles of format v1 (wms 0.1.0) keep loading and render sample-identically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wms.bundle import describe, load_bundle
from wms.cli import main
from wms.export import export
from wms.interface import OutputLayout

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
    # --normalize none: the engine's own level, as 0.1.0 wrote it (0.2 adds a loudness policy)
    argv = ["render", str(V1 / "model.wms"), "--out", str(out), "--format", "float"]
    assert main([*argv, "--normalize", "none", *args]) == 0
    got, sr = sf.read(out, dtype="float32")
    want, sr0 = sf.read(V1 / f"{name}.wav", dtype="float32")
    assert sr == sr0
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_v1_bundle_is_migrated_in_memory():
    b = load_bundle(V1 / "model.wms")
    assert b.version == 1 and b.wms_version == "0.1.0"
    i = b.interface
    assert i.control_names == tuple(f"mfcc{k}" for k in range(8))
    assert i.n_inputs == 10 and i.outputs == OutputLayout.spectrum_bins(80, 2)
    # wms 0.1.0's synth defaults: the training map's control medians and median voiced f0
    tm = b.training_map
    np.testing.assert_array_equal(i.control_defaults, np.median(tm["controls"], axis=0))
    voiced = tm["f0"][tm["voicedness"] >= b.config.pitch.voicing_threshold]
    assert i.f0_default == float(np.median(voiced.astype(np.float64)))
    assert "version 1, written by wms 0.1.0" in describe(b)


def test_v1_rtneural_export_reproduces_the_0_1_0_test_vectors(tmp_path):
    b = load_bundle(V1 / "model.wms")
    export(b, "rtneural", tmp_path, n_steps=64)
    old = json.loads((V1 / "rtneural_wms_test_vectors.json").read_text())
    new = json.loads((tmp_path / "wms_test_vectors.json").read_text())
    for key in ("inputs", "pre_activation", "outputs", "final_state"):
        assert new[key] == old[key], key  # the same float32 values, written the same way
    assert (tmp_path / "wms_model.json").read_text() == (V1 / "rtneural_wms_model.json").read_text()

    def code(text: str) -> list[str]:  # comments may grow (build notes); the code may not
        return [x for x in text.splitlines() if not x.lstrip().startswith("//")]

    header = (tmp_path / "wms_model.h").read_text()
    assert code(header) == code((V1 / "rtneural_wms_model.h").read_text())
