"""bundle.py: round trip in a fresh process, and every kind of bad bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from wms.analysis.basic_waves import basic_waves
from wms.analysis.inputmap import fit_input_map
from wms.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, describe, load_bundle, save_bundle
from wms.config import Config
from wms.errors import BundleError
from wms.interface import ModelInterface, OutputLayout
from wms.synth.network import control_effects
from wms.synth.testing import random_bundle
from wms.training.model import WMSNet

CFG = Config().replace(model={"hidden_size": 16, "encoder_size": 16}, data={"seq_len": 8})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The saved bundle's path and the interface it was saved with."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 300
    mfcc = rng.normal(size=(n, 8)) * [5, 4, 3, 2, 1, 1, 1, 1]
    f0 = rng.uniform(100, 400, n)
    voiced = rng.uniform(0, 1, n)
    imap = fit_input_map(mfcc, CFG)
    controls = imap.controls(mfcc, dtype=np.float64)
    interface = ModelInterface.fit(
        controls,
        f0,
        voiced >= 0.5,
        control_names=imap.control_names,
        fmin=46.0,
        include_voicedness=True,
        outputs=OutputLayout.spectrum_bins(80, 2),
        sample_rate=16000,
        hop_size=256,
    )
    model = WMSNet.from_config(interface.n_inputs, 80, CFG.model)
    history = [
        {"epoch": 0, "step": 5, "train_loss": 1.5, "val_loss": 1.4, "lr": 1e-3, "seconds": 2.0},
        {"epoch": 1, "step": 10, "train_loss": 1.2, "val_loss": 1.1, "lr": 1e-3, "seconds": 4.0},
    ]
    path = tmp_path_factory.mktemp("bundle") / "model.wms"
    save_bundle(
        path,
        model=model,
        config=CFG,
        interface=interface,
        input_map=imap,
        training_map={
            "controls": controls[:50].astype(np.float32),
            "f0": f0[:50],
            "voicedness": voiced[:50],
        },
        data_map={
            "files": [
                {
                    "path": "a.wav",
                    "key": "k",
                    "n_frames": n,
                    "train": [[0, 250]],
                    "val": [[270, 300]],
                }
            ]
        },
        history=history,
        metrics={
            "split": "test",
            "frames": 30,
            "quiet_frames": 2,
            "model": {"sc": 0.3, "lsd_db": 5.0, "harm_sc": 0.25, "harm_lsd_db": 4.5},
            "baseline_mean": {"sc": 0.8, "lsd_db": 9.0, "harm_sc": 0.7, "harm_lsd_db": 8.5},
            "baseline_nearest": {"sc": 0.5, "lsd_db": 7.0, "harm_sc": 0.45, "harm_lsd_db": 6.5},
            "energy_db": -0.4,
            "beats_both_baselines": True,
            "flags": [],
        },
    )
    return SimpleNamespace(path=path, interface=interface)


@pytest.fixture(scope="module")
def bundle_path(saved):
    return saved.path


@pytest.mark.slow
def test_round_trip_in_a_fresh_process(bundle_path, tmp_path):
    b = load_bundle(bundle_path)
    x = np.random.default_rng(1).normal(size=(40, b.model.n_inputs)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, wms\n"
        f"b = wms.load_bundle({str(bundle_path)!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, b.predict(np.load({str(tmp_path / 'x.npy')!r})))\n"
        "print(b.model.training, b.config.model.hidden_size, b.interface.control_names[0], len(b.history))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "16", "pc0", "2"]
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (40, 80) and y.dtype == np.float32
    np.testing.assert_array_equal(y, b.predict(x))
    # predict runs the sequence from a zero state: same as the model stepped by hand
    with torch.no_grad():
        h, steps = None, []
        for t in range(3):
            o, h = b.model.step(torch.from_numpy(x[t : t + 1]), h)
            steps.append(o[0].numpy())
    np.testing.assert_allclose(y[:3], np.stack(steps), atol=3e-7)  # measured 6.0e-8


def test_bundle_restores_everything(saved):
    b = load_bundle(saved.path)
    assert b.config == CFG
    i = b.interface
    assert i.control_names == tuple(f"pc{k}" for k in range(8))  # the default PCA keeps 8
    assert i.input_names[-2:] == ["log_pitch", "voicedness"]
    assert i.control_ranges.shape == (8, 2)
    np.testing.assert_array_equal(i.control_ranges, saved.interface.control_ranges)
    assert b.version == BUNDLE_VERSION == 2
    assert b.training_map["f0"].shape == (50,)
    assert b.data["files"][0]["val"] == [[270, 300]]
    assert b.history[-1]["val_loss"] == 1.1 and b.metrics["model"]["lsd_db"] == 5.0
    text = describe(b)
    assert "test blocks (30 frames, 2 silent ones left out" in text
    # each control with its range, default and what it does (wms.analysis.inputmap)
    for e, (lo, hi), d in zip(
        control_effects(b),
        i.control_ranges,
        i.control_defaults,
        strict=True,
    ):
        assert f"  {e.name:<9} {lo:8.2f} .. {hi:<8.2f} default {d:7.2f}   {e}\n" in text
    assert (
        "harmonic-bin LSD (dB, what the synth plays): model 4.50   mean spectrum 8.50   "
        "nearest frame 6.50" in text
    )
    assert "the model beats both baselines; predicted energy -0.4 dB" in text


def test_inputs_from_audio_uses_the_saved_pipeline(bundle_path):
    b = load_bundle(bundle_path)
    y = basic_waves(1.0, sample_rate=16000, seed=0)
    x, f0, v = b.inputs_from_audio(y, 16000)
    n = 1 + len(y) // 256
    assert x.shape == (n, b.model.n_inputs) and f0.shape == (n,) and v.shape == (n,)
    # a 44.1 kHz copy is resampled to the analysis rate: same frame count, similar pitch
    import soxr

    x44, f044, _ = b.inputs_from_audio(soxr.resample(y, 16000, 44100), 44100)
    assert x44.shape == x.shape
    assert np.max(np.abs(np.log2(f044 / f0))) < 1e-4  # octaves; measured 1.6e-5
    assert b.predict(x).shape == (n, 80)


def test_predict_rejects_wrong_width(bundle_path):
    with pytest.raises(ValueError, match=r"inputs of shape \[T, 10\], got \(5, 3\)"):
        load_bundle(bundle_path).predict(np.zeros((5, 3)))


def _resave_raw(src, dst, **changes):
    """Copy a bundle file with top-level fields of its torch.load dict replaced."""
    obj = torch.load(src, weights_only=True)
    obj.update(changes)
    torch.save(obj, dst)
    return dst


def test_unknown_version_is_refused(bundle_path, tmp_path):
    p = _resave_raw(bundle_path, tmp_path / "v3.wms", version=BUNDLE_VERSION + 1)
    with pytest.raises(
        BundleError,
        match=r"v3.wms: bundle format version 3 is not supported.*reads versions 1, 2 .* newer wms",
    ):
        load_bundle(p)


def test_truncated_bundle_is_refused(bundle_path, tmp_path):
    p = tmp_path / "cut.wms"
    data = bundle_path.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="cut.wms: truncated or corrupt bundle"):
        load_bundle(p)


def test_wav_is_not_a_bundle(tmp_path):
    p = tmp_path / "tone.wav"
    sf.write(p, np.zeros(1600, np.float32), 16000)
    with pytest.raises(BundleError, match=r"tone.wav: not a WMS bundle \(a WAV/RIFF file\)"):
        load_bundle(p)


def test_random_checkpoint_is_not_a_bundle(tmp_path):
    p = tmp_path / "ckpt.pt"
    torch.save(
        {"state_dict": WMSNet(3, 4, encoder_size=4, hidden_size=4).state_dict(), "epoch": 3}, p
    )
    with pytest.raises(
        BundleError, match=f"ckpt.pt: not a WMS bundle .*format = '{BUNDLE_FORMAT}'"
    ):
        load_bundle(p)


def test_pickled_object_is_refused_without_running_it(tmp_path):
    p = tmp_path / "evil.wms"
    # A numpy array needs pickle globals that weights_only loading refuses to import.
    torch.save({"format": BUNDLE_FORMAT, "version": 1, "x": np.zeros(3)}, p)
    with pytest.raises(BundleError, match="evil.wms: not a WMS bundle"):
        load_bundle(p)


def test_missing_file_and_incomplete_bundle(bundle_path, tmp_path):
    with pytest.raises(BundleError, match="nope.wms: no such bundle file"):
        load_bundle(tmp_path / "nope.wms")
    obj = torch.load(bundle_path, weights_only=True)
    del obj["input_map"]
    torch.save(obj, tmp_path / "partial.wms")
    with pytest.raises(BundleError, match="partial.wms: incomplete bundle, missing input_map"):
        load_bundle(tmp_path / "partial.wms")


def test_weights_that_do_not_fit_the_config(bundle_path, tmp_path):
    obj = torch.load(bundle_path, weights_only=True)
    obj["config"]["model"]["hidden_size"] = 32
    torch.save(obj, tmp_path / "mismatch.wms")
    with pytest.raises(BundleError, match="mismatch.wms: the stored weights do not fit"):
        load_bundle(tmp_path / "mismatch.wms")


def test_a_noise_part_stored_before_harmonic_noise_keeps_its_analysis(tmp_path):
    """A bundle (or checkpoint) of the first noise part has no features.harmonic_noise: it
    loads as "kept", the analysis it was trained on (wms evaluate re-analyses it alike)."""
    from wms.config import stored_config

    cfg = Config().replace(model={"hidden_size": 8, "encoder_size": 8})  # the default: noise
    path = random_bundle(tmp_path / "new.wms", config=cfg)
    assert load_bundle(path).config.features.harmonic_noise == "removed"
    obj = torch.load(path, weights_only=True)
    del obj["config"]["features"]["harmonic_noise"]
    torch.save(obj, tmp_path / "old.wms")
    assert load_bundle(tmp_path / "old.wms").config.features.harmonic_noise == "kept"
    # anything not a config passes through, for the checks that follow to name
    assert stored_config([1]) == [1] and stored_config({"features": 3}) == {"features": 3}


def test_a_stored_config_reads_the_keys_it_lacks_as_its_run_had_them(tmp_path):
    """Full band became the default in 0.3.0 and keys were added since 0.1.0; a bundle stores
    its whole config, so a key it lacks is newer than it. Each such key of the sections that
    decide how a bundle analyses and plays reads as the run had it (STORED_DEFAULTS), or kept
    its default ever since; a new key there fails this test until it says which."""
    from wms.config import STORED_DEFAULTS, stored_config

    v1 = torch.load(Path(__file__).parent / "fixtures/v1/model.wms", weights_only=False)["config"]
    missing = {
        (sec, k)
        for sec, kv in Config().to_dict().items()
        for k in kv
        if sec in ("audio", "pitch", "features", "synth") and k not in v1.get(sec, {})
    }
    assert missing - set(STORED_DEFAULTS) == {
        ("features", "timbre"),
        ("features", "envelope_harmonics"),
    }
    assert Config().features.timbre == "mfcc"  # what every run before the key used
    # a 0.2 bundle of harmonics only without phases: cosine tables, no noise part, 16 kHz
    old = stored_config({"features": {"n_bins": 80}, "synth": {}})
    assert old["synth"]["phases"] == "zero" and old["features"]["noise_bands"] == 0
    assert old["audio"]["sample_rate"] == 16000 and old["features"]["n_bins"] == 80
    # a bundle of today's default (Schroeder phases) stored without the key plays cosines
    path = random_bundle(tmp_path / "b.wms", config=Config().replace(model={"hidden_size": 8}))
    assert load_bundle(path).config.synth.phases == "schroeder"
    obj = torch.load(path, weights_only=True)
    del obj["config"]["synth"]["phases"], obj["config"]["synth"]["noise_stages"]
    torch.save(obj, tmp_path / "old.wms")
    old = load_bundle(tmp_path / "old.wms").config.synth
    assert (old.phases, old.noise_stages) == ("zero", 2)  # 0.2's tables and noise filters


def test_save_is_atomic_and_leaves_no_temp_files(bundle_path):
    assert [p.name for p in bundle_path.parent.iterdir()] == ["model.wms"]


def test_info_names_the_preset():
    from wms.bundle import settings_origin
    from wms.config import load_config

    assert settings_origin(Config()) == "preset default"
    assert settings_origin(load_config(None, preset="reference")) == "preset reference"
    assert (
        settings_origin(
            load_config(None, ["model.hidden_size=64", "runtime.threads=1"], preset="reference")
        )
        == "preset reference, changed: model.hidden_size=64"
    )
    assert settings_origin(load_config(None, ["train.lr=0.01"])) == (
        "preset default, changed: train.lr=0.01"
    )
    # a default run of wms 0.3 had the MFCC as its controls: not a change, then
    old = load_config(None, ["features.reduction=none", "features.reduction_dims=3"])
    assert settings_origin(old, "default", "0.3.0") == "preset default"
    assert settings_origin(old, "default") == (
        "preset default, changed: features.reduction='none', features.reduction_dims=3"
    )
    assert settings_origin(Config(), "default", "0.3.0") == (
        "preset default, changed: features.reduction='pca', features.reduction_dims=0"
    )
