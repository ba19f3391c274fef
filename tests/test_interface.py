"""The model contract: inputs, output layout, fitting, state, and the engine's numba path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wms.errors import BundleError
from wms.interface import LOG_PITCH_EPS, ModelInterface, OutputLayout, log_pitch
from wms.synth import kernels as K
from wms.synth.testing import known_model


def _interface(**kw) -> ModelInterface:
    args = dict(
        control_names=("a", "b"),
        control_ranges=[[-1.0, 1.0], [0.0, 2.0]],
        control_defaults=[0.0, 1.0],
        fmin=46.0,
        f0_range=(80.0, 800.0),
        f0_default=220.0,
        include_voicedness=True,
        outputs=OutputLayout.spectrum_bins(80, 2),
        sample_rate=16000,
        hop_size=256,
    )
    return ModelInterface(**{**args, **kw})


def test_log_pitch():
    f0 = np.array([10.0, 46.0, 47.0, 1600.0])
    np.testing.assert_array_equal(
        log_pitch(f0, 46.0), np.log([1e-4, 1e-4, 1.0001, 1554.0001]).astype(np.float32)
    )
    assert log_pitch(f0, 46.0).dtype == np.float32
    assert LOG_PITCH_EPS == 1e-4


def test_inputs_are_controls_log_pitch_and_voicedness():
    i = _interface()
    c = np.array([[0.5, 1.5], [-3.0, 9.0]])
    x = i.inputs(c, [220.0, 30.0], [1.0, 0.25])
    assert x.dtype == np.float32 and x.shape == (2, 4) and i.n_inputs == 4
    np.testing.assert_array_equal(x[:, :2], c.astype(np.float32))  # no clamping here
    np.testing.assert_array_equal(x[:, 2], log_pitch(np.array([220.0, 30.0]), 46.0))
    np.testing.assert_array_equal(x[:, 3], [1.0, 0.25])
    assert i.input_names == ["a", "b", "log_pitch", "voicedness"]
    no_v = _interface(include_voicedness=False)
    assert no_v.inputs(c, [220.0, 220.0]).shape == (2, 3)
    assert no_v.input_names == ["a", "b", "log_pitch"]
    np.testing.assert_array_equal(i.clamp_controls(c), [[0.5, 1.5], [-1.0, 2.0]])
    np.testing.assert_array_equal(i.clamp_f0([50.0, 300.0, 900.0]), [80.0, 300.0, 800.0])
    assert i.frame_seconds == 0.016


def test_inputs_reject_bad_shapes():
    i = _interface()
    with pytest.raises(ValueError, match=r"controls have shape \(2, 3\), expected \[T, 2\]"):
        i.inputs(np.zeros((2, 3)), [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="f0 has 3 rows, controls 2"):
        i.inputs(np.zeros((2, 2)), [1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="takes voicedness, but none was given"):
        i.inputs(np.zeros((2, 2)), [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        i.inputs(np.full((2, 2), np.nan), [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 control names but ranges"):
        _interface(control_ranges=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="control names repeat"):
        _interface(control_names=("a", "a"))


def test_spectrum_bin_layout_reads_bins_b_times_h():
    lay = OutputLayout.spectrum_bins(80, 2)
    assert (lay.harmonic_offset, lay.harmonic_stride, lay.n_harmonics) == (2, 2, 39)
    np.testing.assert_array_equal(lay.harmonic_index, 2 * np.arange(1, 40))
    spec = np.zeros((3, 80), np.float32)
    spec[:, 2 * np.arange(1, 40)] = np.log1p(np.arange(1, 40, dtype=np.float32))
    np.testing.assert_allclose(lay.harmonics(spec), np.tile(np.arange(1, 40), (3, 1)), rtol=1e-6)
    assert OutputLayout.spectrum_bins(80, 3).n_harmonics == 26
    assert lay.harmonics(-np.ones(80)).max() == 0.0  # negative outputs play nothing
    with pytest.raises(ValueError, match="holds no harmonic"):
        OutputLayout.spectrum_bins(2, 2)
    with pytest.raises(ValueError, match="outputs have 79 values"):
        lay.harmonics(np.zeros(79))


def test_fit_takes_percentiles_and_medians_of_voiced_frames():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(500, 2))
    f0 = np.exp(rng.uniform(np.log(100), np.log(400), 500))
    voiced = rng.uniform(size=500) > 0.3
    f0_unvoiced = np.where(voiced, f0, 5000.0)  # unvoiced f0 must not count
    i = ModelInterface.fit(
        c,
        f0_unvoiced,
        voiced,
        control_names=("a", "b"),
        fmin=46.0,
        include_voicedness=True,
        outputs=OutputLayout.spectrum_bins(80, 2),
        sample_rate=16000,
        hop_size=256,
    )
    np.testing.assert_array_equal(i.control_ranges, np.percentile(c, [1, 99], axis=0).T)
    np.testing.assert_array_equal(i.control_defaults, np.median(c, axis=0))
    assert i.f0_range == tuple(np.percentile(f0[voiced], [1, 99]))
    assert i.f0_default == np.median(f0[voiced])
    with pytest.raises(ValueError, match="no voiced training frame"):
        ModelInterface.fit(
            c,
            f0,
            np.zeros(500, bool),
            control_names=("a", "b"),
            fmin=46.0,
            include_voicedness=True,
            outputs=OutputLayout.spectrum_bins(80, 2),
            sample_rate=16000,
            hop_size=256,
        )


def test_state_round_trip_and_refusals(tmp_path):
    i = _interface()
    s = i.to_state()
    torch.save({"i": s}, tmp_path / "s.pt")
    again = ModelInterface.from_state(torch.load(tmp_path / "s.pt", weights_only=True)["i"])
    assert again == i
    assert again.outputs == i.outputs
    with pytest.raises(BundleError, match="version 3 is not supported"):
        ModelInterface.from_state({**s, "version": 3})
    # a version-1 record (wms 0.1/0.2: no noise part) reads as harmonics only
    v1 = {k: v for k, v in s.items() if k != "noise_edges"}
    v1["outputs"] = {k: v for k, v in s["outputs"].items() if k != "n_noise"}
    assert ModelInterface.from_state({**v1, "version": 1}) == i
    with pytest.raises(BundleError, match="not a 'wms-interface' record"):
        ModelInterface.from_state([1])
    with pytest.raises(BundleError, match="missing or malformed field .KeyError: 'pitch'"):
        ModelInterface.from_state({k: v for k, v in s.items() if k != "pitch"})
    with pytest.raises(BundleError, match="malformed field .ValueError: inconsistent"):
        ModelInterface.from_state({**s, "control_defaults": [0.0]})


@pytest.mark.parametrize("include_voicedness", [True, False])
def test_engine_kernel_inputs_equal_interface_inputs(include_voicedness):
    """The numba per-step path builds exactly the rows ``interface.inputs`` builds."""
    m = known_model(include_voicedness=include_voicedness)
    i = m.interface
    rng = np.random.default_rng(1)
    nv, sr = 4, 48000
    vf = np.zeros((K.N_FIELDS, nv))
    f_start = rng.uniform(30, 3000, nv)
    f_target = rng.uniform(30, 3000, nv)
    vf[K.LOGF] = np.log2(f_start)
    vf[K.LOGF_TARGET] = np.log2(f_target)
    vf[K.VOICED] = rng.uniform(-0.2, 1.2, nv)
    timbre = np.array([0.3, -0.7, 0.9])
    idx = np.arange(nv, dtype=np.int64)
    x = np.zeros((nv, i.n_inputs), np.float32)
    lo, hi = i.f0_range
    glide = 0.5
    K.begin_step(
        idx,
        nv,
        vf,
        timbre,
        i.include_voicedness,
        i.fmin,
        i.log_pitch_eps,
        lo,
        hi,
        0.0,
        glide,
        sr,
        x,
    )
    f_end = 2.0 ** (np.log2(f_target) + (np.log2(f_start) - np.log2(f_target)) * glide)
    want = m.inputs(np.tile(timbre, (nv, 1)), f_end, vf[K.VOICED])
    np.testing.assert_array_equal(x, want)
    assert math.isclose(vf[K.INC1, 0] * sr, f_end[0], rel_tol=1e-12)
