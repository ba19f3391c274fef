"""The input map: MFCC -> timbre controls, fitted on training frames; its state round trip."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from wms.analysis.inputmap import InputMap, fit_input_map, migrate_v1_state
from wms.config import Config
from wms.errors import BundleError, ConfigError


def _cfg(**features) -> Config:
    """The default config with the standardised MFCC as controls, or these features."""
    return Config().replace(features={"reduction": "none", **features})


def _mfcc_train(n: int = 400, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(3, 0.1, d)[:, None]
    return (rng.standard_normal((n, d)) @ mix + rng.uniform(-50, 50, d)).astype(np.float32)


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return x is None or type(x) in (str, int, float, bool)


def test_standardisation_and_names():
    x = _mfcc_train()
    imap = fit_input_map(x, _cfg())
    z = imap.controls(x)
    assert z.dtype == np.float32 and z.shape == (400, 8)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-7)  # measured 1.4e-8 (float32)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-6)  # measured 1.8e-7
    assert imap.control_names == tuple(f"mfcc{i}" for i in range(8))
    assert imap.n_controls == 8
    from wms.training.train import describe_controls

    assert describe_controls(imap) == (
        "controls: mfcc0..mfcc7, the 8 standardised MFCC; wms info RUN/model.wms says what "
        "each does"
    )
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(
        imap.controls(x, dtype=np.float64), (x64 - x64.mean(0)) / x64.std(0)
    )


def test_constant_coefficient_is_only_centred():
    x = _mfcc_train()
    x[:, 3] = 7.0
    imap = fit_input_map(x, _cfg())
    z = imap.controls(x)
    assert np.all(z[:, 3] == 0.0) and np.all(np.isfinite(z))


def test_pca_reduction_matches_sklearn():
    from sklearn.decomposition import PCA

    x = _mfcc_train()
    imap = fit_input_map(x, _cfg(reduction="pca", reduction_dims=3))
    c = imap.controls(x)
    assert c.shape == (400, 3) and imap.control_names == ("pc0", "pc1", "pc2")
    z = (x - x.mean(0)) / x.std(0)
    ref = PCA(n_components=3).fit(z)
    np.testing.assert_allclose(
        imap.explained_variance_ratio, ref.explained_variance_ratio_, rtol=3e-7
    )  # measured rel 6.7e-8
    # float32 controls: measured max abs 9.5e-7
    np.testing.assert_allclose(np.abs(c), np.abs(ref.transform(z)), rtol=5e-6, atol=5e-6)
    assert np.all(np.diff(c.var(axis=0)) < 0)  # ordered by variance


def test_pca_keeps_the_components_that_explain_the_timbre():
    """``reduction_dims = 0``: every component that explains >= 1 % of the variance."""
    from sklearn.decomposition import PCA

    x = _mfcc_train()
    x64 = x.astype(np.float64)
    ratios = PCA().fit((x64 - x64.mean(0)) / x64.std(0)).explained_variance_ratio_
    keep = int(np.sum(ratios >= 0.01))
    assert 1 < keep < 8, ratios  # the fixture has components on both sides of 1 %
    imap = fit_input_map(x, _cfg(reduction="pca", reduction_dims=0))
    assert imap.n_controls == keep and imap.control_names[-1] == f"pc{keep - 1}"
    np.testing.assert_allclose(imap.explained_variance_ratio, ratios[:keep], rtol=1e-12)
    # a timbre that does not vary at all still gets one control
    flat = fit_input_map(np.tile(x[:1], (3, 1)), _cfg(reduction="pca", reduction_dims=0))
    assert flat.n_controls == 1 and np.all(flat.controls(x[:1]) == 0.0)


def test_input_map_state_round_trip(tmp_path):
    x = _mfcc_train()
    for cfg in (_cfg(), _cfg(reduction="pca", reduction_dims=2)):
        imap = fit_input_map(x, cfg)
        state = imap.to_state()
        assert _plain(state)
        again = InputMap.from_state(state)
        assert again == imap
        np.testing.assert_array_equal(again.controls(x), imap.controls(x))
        torch.save({"input_map": state}, tmp_path / "b.pt")
        loaded = torch.load(tmp_path / "b.pt", weights_only=True)["input_map"]
        assert InputMap.from_state(loaded) == imap
    assert fit_input_map(x, _cfg()) != fit_input_map(x[:200], _cfg())


def test_input_map_state_rejects_bad_states():
    state = fit_input_map(_mfcc_train(), _cfg()).to_state()
    with pytest.raises(BundleError, match="version 4 is not supported"):
        InputMap.from_state({**state, "version": 4})
    with pytest.raises(BundleError, match="version 3 without its timbre source"):
        InputMap.from_state({**state, "version": 3})
    with pytest.raises(BundleError, match="unknown timbre source 'chroma'"):
        InputMap.from_state({**state, "version": 3, "source": "chroma"})
    with pytest.raises(BundleError, match="missing keys mfcc_std"):
        InputMap.from_state({k: v for k, v in state.items() if k != "mfcc_std"})
    with pytest.raises(BundleError, match="mfcc_mean/mfcc_std shapes differ"):
        InputMap.from_state({**state, "mfcc_std": [1.0, 2.0]})
    with pytest.raises(BundleError, match="mfcc_std holds NaN"):
        InputMap.from_state({**state, "mfcc_std": [float("nan")] * 8})
    with pytest.raises(BundleError, match="pca components missing"):
        InputMap.from_state({**state, "reduction": "pca"})
    with pytest.raises(BundleError, match="not a 'wms-input-map'"):
        InputMap.from_state([1, 2])


def test_version_1_state_migrates_to_the_same_mapping():
    """wms 0.1.0 stored the pitch mapping and control ranges in the input map too."""
    x = _mfcc_train()
    imap = fit_input_map(x, _cfg(reduction="pca", reduction_dims=2))
    v1 = {
        **imap.to_state(),
        "version": 1,
        "fmin": 46.0,
        "include_voicedness": True,
        "control_names": ["pc0", "pc1"],
        "control_ranges": [[-1.0, 1.0], [-1.0, 1.0]],
        "control_limits": [[-2.0, 2.0], [-2.0, 2.0]],
        "f0_range": [80.0, 800.0],
    }
    again = InputMap.from_state(migrate_v1_state(v1))
    assert again == imap
    with pytest.raises(BundleError, match="not a version-1 input map"):
        migrate_v1_state(imap.to_state())


def test_input_map_bad_inputs():
    x = _mfcc_train()
    with pytest.raises(ValueError, match=r"mfcc_train has shape \(400, 5\), expected \[n, 8\]"):
        fit_input_map(x[:, :5], _cfg())
    with pytest.raises(ValueError, match="at least 2 training frames"):
        fit_input_map(x[:1], _cfg())
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="mfcc_train holds NaN"):
        fit_input_map(bad, _cfg())
    imap = fit_input_map(x, _cfg())
    with pytest.raises(ValueError, match=r"mfcc has shape \(400, 7\)"):
        imap.controls(x[:, :7])
    with pytest.raises(ValueError, match="mfcc holds NaN"):
        imap.controls(bad)


def test_pacmap_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pacmap", None)  # makes `import pacmap` fail
    with pytest.raises(ConfigError, match="pip install pacmap"):
        fit_input_map(_mfcc_train(), _cfg(reduction="pacmap", reduction_dims=2))


def test_pacmap_maps_new_points_by_neighbours(monkeypatch):
    class FakePaCMAP:  # a deterministic stand-in embedding: the first two coordinates, scaled
        def __init__(self, n_components, random_state):
            self.n = n_components

        def fit_transform(self, z):
            return 10.0 * z[:, : self.n]

    monkeypatch.setitem(sys.modules, "pacmap", types.SimpleNamespace(PaCMAP=FakePaCMAP))
    x = _mfcc_train()
    imap = fit_input_map(x, _cfg(reduction="pacmap", reduction_dims=2))
    assert imap.control_names == ("pacmap0", "pacmap1")
    # reduction_dims = 0 (the default) gives PaCMAP its 3 axes of wms 0.3
    assert fit_input_map(x, _cfg(reduction="pacmap", reduction_dims=0)).n_controls == 3
    z = (x - x.mean(0)) / x.std(0)
    # Training points map onto their own embedding.
    np.testing.assert_allclose(
        imap.controls(x), 10.0 * z[:, :2], rtol=2e-4, atol=2e-4
    )  # measured max abs 4.4e-5
    # A new point: the inverse-distance-weighted mean of its 8 nearest training embeddings.
    new = x[:1] + np.float32(0.5) * x.std(0)
    d = np.linalg.norm(z - (new - x.mean(0)) / x.std(0), axis=1)
    near = np.argsort(d)[:8]
    w = 1 / d[near]
    expected = (w[:, None] * 10.0 * z[near, :2]).sum(0) / w.sum()
    np.testing.assert_allclose(imap.controls(new)[0], expected, rtol=1e-4)
    again = InputMap.from_state(imap.to_state())
    assert again == imap
    np.testing.assert_array_equal(again.controls(x[:50]), imap.controls(x[:50]))


def _envelope_mfcc(level_db: np.ndarray, tilt_db: np.ndarray, cfg: Config) -> np.ndarray:
    """MFCC of mel-band envelopes ``level + tilt * u`` (u from -1/2 at the bottom band to
    +1/2 at the top: ``tilt`` is the top band against the bottom one)."""
    import scipy.fft

    u = np.linspace(-0.5, 0.5, cfg.features.n_mels)
    env = level_db[:, None] + tilt_db[:, None] * u
    return scipy.fft.dct(env, type=2, norm="ortho", axis=1)[:, : cfg.features.n_mfcc]


def test_pca_components_are_signed_by_what_they_do_to_the_envelope():
    """Envelopes whose tilt varies over 40 dB and level over 20 dB: the tilt moves four
    MFCC (1, 3, 5, 7) together and the level one, so after standardisation the first
    principal component is the brightness (4/5 of the variance) and the second the level
    (the even MFCC are constant: only centred, no variance). Raising each does the positive
    of what it does, whatever signs the SVD gave them: the first makes the envelope brighter
    (MFCC 1, a falling cosine over the mel bands, goes down), the second louder (MFCC 0 up)."""
    cfg = _cfg(reduction="pca", reduction_dims=2)
    n = 2000
    for seed in range(8):
        rng = np.random.default_rng(seed)
        x = _envelope_mfcc(rng.uniform(-50, -30, n), rng.uniform(-40, 0, n), cfg)
        assert np.all(np.abs(x[:, [2, 4, 6]]) < 1e-9)  # a ramp has odd coefficients only
        imap = fit_input_map(x, cfg)
        # 5 unit-variance MFCC; the sample correlation of tilt and level mixes them (6e-5)
        np.testing.assert_allclose(imap.explained_variance_ratio, [0.8, 0.2], atol=5e-4)
        bright, level = imap.components * imap.mfcc_std
        # (each holds a little of the other: measured up to 7.6 % of its main loading)
        assert bright[1] < 0 and abs(bright[0]) < 0.1 * abs(bright[1]), (seed, bright)
        assert level[0] > 0 and abs(level[1]) < 0.1 * level[0], (seed, level)
    # a timbre that does not move keeps its largest loading positive
    flat = fit_input_map(np.tile(x[:1], (3, 1)), _cfg(reduction="pca", reduction_dims=0))
    c = flat.components[0]
    assert c[np.argmax(np.abs(c))] > 0
