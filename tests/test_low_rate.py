"""Files recorded below the analysis rate: their bins above their own Nyquist are masked out
of the loss and the figures, not learnt as silence (docs/DESIGN.md §6.3, issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REFERENCE_SET, TINY_TRAIN, fullband_config, reference_config
from wms.analysis.audio import resample, write_audio
from wms.analysis.basic_waves import basic_waves
from wms.analysis.features import bins_below, recorded_noise_bands
from wms.bundle import load_bundle
from wms.cli import main
from wms.evaluation.metrics import baseline_predictions, heldout_report
from wms.noise import band_edges
from wms.training import train as train_mod
from wms.training.losses import WMSLoss

SR = 16000


def test_bins_below_follow_the_cutting_f0():
    cfg = reference_config()  # 16 kHz, W = n_fft = 1024, N = 2, K = 80: bin k is k * f0 / 2
    f0 = np.array([220.0, 220.0, 500.0, 100.0])
    v = np.array([1.0, 0.0, 1.0, 1.0])
    # 220 Hz: 110 Hz per bin, bins 0..36 below 4 kHz; the unvoiced frame holds 220 Hz;
    # 500 Hz: 250 Hz per bin, 4000 / 250 = 16 exactly, so bin 16 (at 4 kHz) is out;
    # 100 Hz: 50 Hz per bin, 80 of 80 bins
    assert bins_below(f0, v, cfg, nyquist=4000.0).tolist() == [37, 37, 16, 80]
    raw = reference_config(features={"unvoiced": "raw"})
    # a raw frame's bins are 16000 / 1024 = 15.625 Hz apart: 2000 / 15.625 = 128 > K
    assert bins_below(f0, v, raw, nyquist=2000.0).tolist() == [19, 80, 8, 40]


def test_the_loss_ignores_masked_bins_and_equals_the_unmasked_loss_with_all_bins():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 6, 20, generator=g)
    target = torch.rand(4, 6, 20, generator=g)
    bands = torch.randint(5, 21, (4, 6), generator=g)
    for name in ("spectral", "log_spectral", "mse", "weighted_mse"):
        loss = WMSLoss(name, n_bins=20, cycles=2, smoothness_weight=0.1)
        full = torch.full((4, 6), 20)
        assert loss(pred, target, full).item() == pytest.approx(loss(pred, target).item(), 1e-6)
        base = loss(pred, target, bands).item()
        above = torch.arange(20) >= bands.unsqueeze(-1)
        p2, t2 = pred.clone(), target.clone()
        p2[above] = 9.0  # anything above the band
        t2[above] = 0.0
        assert loss(p2, t2, bands).item() == pytest.approx(base, rel=1e-6), name
        p3 = pred.clone()
        p3[~above] += 0.5
        assert abs(loss(p3, target, bands).item() - base) > 1e-3, name


def test_figures_ignore_masked_bins():
    rng = np.random.default_rng(1)
    target = rng.uniform(0.5, 3.0, (50, 20)).astype(np.float32)
    preds = {k: target + rng.normal(0, 0.2, target.shape) for k in ("model", "baseline_mean")}
    preds["baseline_nearest"] = target + 0.3
    bands = rng.integers(6, 21, 50)
    h = np.arange(2, 20, 2)
    m = heldout_report(preds, target, harmonic_index=h, split="test", bands=bands)
    above = np.arange(20)[None, :] >= bands[:, None]
    changed = {k: np.where(above, 0.0, v) for k, v in preds.items()}
    m2 = heldout_report(changed, target, harmonic_index=h, split="test", bands=bands)
    assert m2["model"] == m["model"] and m2["baseline_nearest"] == m["baseline_nearest"]
    assert m["masked_bins"] == pytest.approx(above.mean(), abs=1e-4)
    assert heldout_report(preds, target, harmonic_index=h, split="test")["model"] != m["model"]


def test_a_low_rate_file_counts_the_noise_bands_it_holds_whole():
    edges = band_edges(44100, 32)  # Slaney mel: ... 6076, 6912, 7863 ... 19383, 22050 Hz
    # 16 kHz: trusted to 0.9 * 8000 = 7200 Hz, so bands 0..22 (the last ends at 6912 Hz)
    assert recorded_noise_bands(edges, file_rate=16000) == 23
    assert edges[23] <= 7200 < edges[24]
    assert [recorded_noise_bands(edges, file_rate=r) for r in (8000, 22050, 44100)] == [17, 25, 31]


def test_the_loss_ignores_masked_noise_bands():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(3, 5, 26, generator=g)  # 20 bins, then 6 noise bands
    target = torch.rand(3, 5, 26, generator=g)
    bands = torch.full((3, 5), 20)
    noise_bands = torch.randint(1, 7, (3, 5), generator=g)
    for name in ("spectral", "log_spectral", "mse"):
        loss = WMSLoss(name, n_bins=20, cycles=2, n_noise=6)
        full = loss(pred, target, bands, torch.full((3, 5), 6)).item()
        assert full == pytest.approx(loss(pred, target).item(), rel=1e-6), name
        base = loss(pred, target, bands, noise_bands).item()
        above = torch.arange(6) >= noise_bands.unsqueeze(-1)
        p2 = pred.clone()
        p2[..., 20:][above] = 9.0  # anything in a band the file does not hold
        assert loss(p2, target, bands, noise_bands).item() == pytest.approx(base, rel=1e-6)
        p3 = pred.clone()
        p3[..., 20:][~above] += 0.5
        assert abs(loss(p3, target, bands, noise_bands).item() - base) > 1e-3, name


def test_figures_and_the_mean_baseline_ignore_masked_noise_bands():
    rng = np.random.default_rng(4)
    target = rng.uniform(0.5, 3.0, (40, 26)).astype(np.float32)
    preds = {k: target + rng.normal(0, 0.2, target.shape) for k in ("model", "baseline_mean")}
    preds["baseline_nearest"] = target + 0.3
    nb = rng.integers(1, 7, 40)
    kw = dict(harmonic_index=np.arange(2, 20, 2), split="test", n_noise=6)
    m = heldout_report(preds, target, noise_bands=nb, **kw)
    above = np.arange(6)[None, :] >= nb[:, None]
    changed = {k: v.copy() for k, v in preds.items()}
    for v in changed.values():
        v[:, 20:][above] = 0.0
    assert heldout_report(changed, target, noise_bands=nb, **kw) == m
    assert heldout_report(changed, target, **kw)["model"] != m["model"]
    # the mean baseline averages each noise band over the training frames that hold it
    b = baseline_predictions(
        rng.normal(size=(40, 3)), target, rng.normal(size=(2, 3)), n_noise=6, train_noise_bands=nb
    )["baseline_mean"][0]
    for j in range(6):
        np.testing.assert_allclose(b[20 + j], target[nb > j, 20 + j].mean(), rtol=1e-6)
    np.testing.assert_allclose(b[:20], target[:, :20].mean(0), rtol=1e-6)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """One folder: 8 s of basic waves at 16 kHz and 8 s more recorded at 8 kHz."""
    d = tmp_path_factory.mktemp("mixed")
    write_audio(d / "full.wav", basic_waves(8.0, sample_rate=SR, seed=1), SR)
    low = resample(basic_waves(8.0, sample_rate=SR, seed=2), SR, 8000)
    write_audio(d / "low.wav", low, 8000)
    return d


def _high_share_db(run: Path, audio: Path, band_hz: float) -> float:
    """The share of the predicted energy above ``band_hz`` over the low-rate file's voiced
    frames (the model's own inputs for them), in dB."""
    from wms.analysis.prepare import prepare

    b = load_bundle(run / "model.wms")
    corpus = prepare(audio, b.config, cache_dir=run.parent / "cache", jobs=1, progress=False)
    a = corpus.files[0].analysis
    x = b.interface.inputs(b.input_map.controls(a.mfcc), a.f0, a.voicedness)
    voiced = np.asarray(a.voicedness) > 0.5
    power = np.expm1(np.maximum(b.predict(x), 0.0))[voiced] ** 2
    keep = bins_below(a.f0, a.voicedness, b.config, nyquist=band_hz)[voiced]
    above = np.arange(power.shape[1])[None, :] >= keep[:, None]
    return float(10 * np.log10((power * above).sum() / power.sum()))


@pytest.mark.slow
def test_a_low_rate_file_learns_its_highs_from_the_others(mixed, tmp_path, capsys, monkeypatch):
    def train(run: Path) -> int:
        args = ["train", str(mixed), "--out", str(run), "--cache-dir", str(tmp_path / "cache")]
        args += ["--jobs", "1", "--max-steps", "600"]
        for s in TINY_TRAIN:
            if not s.startswith("train.max_epochs"):
                args += ["--set", s]
        for s in [*REFERENCE_SET, "model.hidden_size=32", "model.encoder_size=32"]:
            args += ["--set", s]
        return main(args)

    assert train(tmp_path / "masked") == 0
    out = capsys.readouterr().out
    assert (
        "1 file(s) recorded below the corpus's highest rate (16 kHz): low.wav (8 kHz: above 3.6 kHz)"
        in out
    )
    assert "masked out of the loss and the metrics" in out
    # analysed at 16 kHz here; at 44.1 kHz prepare also says what no file holds
    b = load_bundle(tmp_path / "masked" / "model.wms")
    assert [f["sample_rate"] for f in b.data["files"]] == [16000, 8000]
    assert 0.05 < b.metrics["masked_bins"] < 0.5
    # wms evaluate's figures on the test blocks mask the same bins as training's own report
    from wms.evaluation.evaluate import heldout_data, spectral_metrics

    held = heldout_data(b, None, cache_dir=tmp_path / "cache", jobs=1)
    m, _ = spectral_metrics(b, held)
    assert m["masked_bins"] == b.metrics["masked_bins"]
    for k in ("model", "baseline_mean"):  # the mean from the training map's float16 targets
        assert m[k]["harm_lsd_db"] == pytest.approx(b.metrics[k]["harm_lsd_db"], rel=1e-3), k
    masked = _high_share_db(tmp_path / "masked", mixed / "low.wav", 3600.0)

    # the same run learning the low-rate file's empty highs as silence
    monkeypatch.setattr(train_mod, "low_rate_bands", lambda a, r, c: [None] * len(a))
    assert train(tmp_path / "silence") == 0
    silence = _high_share_db(tmp_path / "silence", mixed / "low.wav", 3600.0)
    # measured: -30.0 dB of the energy above 3.6 kHz against -34.5 dB learnt as silence
    # (the 16 kHz file's targets hold -17.9 dB there; this model is tiny)
    assert masked > silence + 2.0, (masked, silence)


def test_training_data_masks_a_low_rate_files_noise_bands(mixed, tmp_path):
    from wms.analysis.prepare import prepare
    from wms.training.data import SequenceDataset

    data = {"seq_len": 8, "val_block_seconds": 1.0, "gap_frames": 8}
    cfg = reference_config(features={"noise_bands": 8}, data=data)
    corpus = prepare(mixed, cfg, cache_dir=tmp_path / "cache", jobs=1, progress=False)
    data = train_mod.build_training_data(corpus, cfg)
    a, low = data.arrays, recorded_noise_bands(band_edges(16000, 8), file_rate=8000)
    assert low == 5  # 8 kHz: to 3.6 kHz of the 8 bands to 8 kHz
    rows = [slice(a.offsets[i], a.offsets[i + 1]) for i in range(2)]
    assert (a.noise_bands[rows[0]] == 8).all() and (a.noise_bands[rows[1]] == low).all()
    assert (a.bands[rows[0]] == 80).all() and a.bands[rows[1]].min() < 80  # high notes
    assert data.summary["masked_noise_bands"] == pytest.approx(
        (a.offsets[2] - a.offsets[1]) * 3 / 8 / a.offsets[2], abs=1e-4
    )
    x, y, bands, noise_bands = SequenceDataset(a, a.train_starts)[np.arange(4)]
    assert noise_bands.shape == bands.shape == x.shape[:2]


def test_evaluate_masks_the_noise_bands_training_masked(mixed, tmp_path):
    from wms.evaluation.evaluate import heldout_data, spectral_metrics

    run, cache = tmp_path / "run", ["--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]
    args = ["train", str(mixed), "--out", str(run), *cache, "--max-steps", "30"]
    for s in [*TINY_TRAIN, *REFERENCE_SET, "features.noise_bands=8"]:
        args += ["--set", s]
    assert main(args) == 0
    b = load_bundle(run / "model.wms")
    # 3 of the 8 bands (above 3.6 kHz) are masked in the low-rate file's half of the test frames
    assert b.metrics["masked_noise_bands"] == 0.1875
    m, _ = spectral_metrics(b, heldout_data(b, None, cache_dir=tmp_path / "cache", jobs=1))
    assert m["masked_noise_bands"] == 0.1875
    for k in ("model", "baseline_mean", "baseline_nearest"):  # float16 training map: 1e-3
        assert m[k]["noise_lsd_db"] == pytest.approx(b.metrics[k]["noise_lsd_db"], rel=1e-3), k


def test_prepare_says_what_no_file_holds(mixed, tmp_path, capsys):
    from wms.analysis.prepare import format_summary, prepare

    cfg = fullband_config()
    corpus = prepare(mixed, cfg, cache_dir=tmp_path / "cache", jobs=1, progress=False)
    out = format_summary(corpus.summary)
    assert (
        "1 file(s) recorded below the corpus's highest rate (16 kHz): low.wav (8 kHz: above 3.6 kHz)"
        in out
    )
    assert (
        "no file is recorded at the analysis rate (44.1 kHz), the highest at 16 kHz: nothing "
        "above 8 kHz is in the corpus, so the model learns silence there (or analyse at that "
        "rate: --set audio.sample_rate=16000)"
    ) in out
