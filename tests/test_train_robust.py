"""Training on real-recording conditions: silence and noise floors, divergence, step
budgets, reproducibility, and flags that follow a weak model everywhere (issue 9)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FULLBAND_SET, REFERENCE_SET, TINY_TRAIN
from wms.analysis.audio import write_audio
from wms.analysis.basic_waves import basic_waves
from wms.bundle import load_bundle
from wms.cli import main
from wms.evaluation.evaluate import heldout_data, spectral_metrics
from wms.training import train as train_mod

SR = 16000
#: the tiny run without its one-epoch limit: these runs end on their step budgets
BUDGETED = [s for s in TINY_TRAIN if not s.startswith("train.max_epochs")]


def _train(wav: Path, run: Path, cache: Path, *extra: str, settings=BUDGETED) -> int:
    args = ["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in settings:
        args += ["--set", s]
    return main([*args, *extra])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout, sr, bounds",
    # measured, clean / dirty / untrimmed: reference harmonic LSD 7.43 / 7.77 / 8.66 dB,
    # energy -3.3..-3.6 dB, mean spectrum 24-26 dB; fullband (44.1 kHz, 160 harmonics, MFCC
    # of 40 mel bands over its bins) 7.45 / 8.74 / 9.03 dB, energy -4.6..-4.9 dB, mean
    # spectrum 17.0-18.8 dB (with 64 mel bands to Nyquist: 7.28 / 8.48 / 8.60)
    # bounds: dirty - clean, untrimmed - clean, |energy|, margin under the mean spectrum
    [("reference", 16000, (0.75, 2.0, 4.5, 15)), ("fullband", 44100, (1.5, 1.8, 6.0, 7.5))],
)
def test_silence_and_a_noise_floor_train_like_the_same_audio_without_them(
    tmp_path, layout, sr, bounds
):
    """12 s of basic waves, and the same six 2 s chunks with 6 s of digital silence (30 %
    of the result) and 2 s of -60 dBFS white noise between them. Each model is scored on
    the clean audio's frames (harmonic bins): at the reference's (the default) 16 kHz
    analysis and at the fullband preset's."""
    clean = basic_waves(12.0, sample_rate=sr, seed=3)
    noise = np.random.default_rng(0).standard_normal(sr).astype(np.float32) * 1e-3
    parts = []
    for i, chunk in enumerate(np.split(clean, 6)):
        parts += [chunk, np.zeros(2 * sr, np.float32) if i % 2 == 0 else noise]
    dirty = np.concatenate(parts[:-1])
    assert len(dirty) == 20 * sr  # 6 s of digital silence = 30 %
    clean_wav = write_audio(tmp_path / "clean" / "clean.wav", clean, sr)
    dirty_wav = write_audio(tmp_path / "dirty" / "dirty.wav", dirty, sr)
    # the fullband preset's analysis and layout, harmonics only: this measures the harmonic
    # part's robustness (with the noise part, 32 more outputs on a 32-wide model in 300
    # steps: measured 6.45 / 8.83 dB clean / dirty; the flute with pauses, README, is the
    # noise part's real-data check)
    # The standardised MFCC as controls at both layouts, as the bounds were measured: at
    # these 300 steps of a 32-wide model the default's PCA controls (a rotation of the same
    # features) train worse and far more erratically, untrimmed 8.5-14.2 dB over three seeds
    # and two sign conventions against 9.0-9.4 dB (clean 7.2-8.5 against 6.4-7.5); at the
    # default budgets on real pieces the two are equal (docs/DESIGN.md §1.4).
    harmonics_only = (
        ["features.noise_bands=0", "features.reduction=none"] if layout == "fullband" else []
    )
    small = [*(REFERENCE_SET if layout == "reference" else FULLBAND_SET), *harmonics_only] + [
        "model.hidden_size=32",
        "model.encoder_size=32",
        "data.seq_len=16",
        "data.val_block_seconds=1.0",
        "data.gap_frames=8",
    ]
    cache, scores = tmp_path / "cache", {}
    for name, wav, extra in (
        ("clean", clean_wav, ()),
        ("dirty", dirty_wav, ()),
        # without trimming, the loss alone must keep the silent frames harmless
        ("untrimmed", dirty_wav, ("--set", "data.trim_silence_seconds=0")),
    ):
        run = tmp_path / name
        assert _train(wav, run, cache, "--max-steps", "300", *extra, settings=small) == 0
        bundle = load_bundle(run / "model.wms")
        held = heldout_data(bundle, clean_wav, cache_dir=cache, jobs=1, allow_seen=True)
        m, _ = spectral_metrics(bundle, held)
        scores[name] = (
            m["model"]["harm_lsd_db"],
            m["energy_db"],
            m["baseline_mean"]["harm_lsd_db"],
        )
    lsd = {k: v[0] for k, v in scores.items()}
    # at the reference's layout the per-sequence loss of wms 0.1.0 scored 7.15 / 9.90 / 16.13
    # (its untrimmed model lost most of its level)
    assert lsd["dirty"] - lsd["clean"] < bounds[0]
    assert lsd["untrimmed"] - lsd["clean"] < bounds[1]
    for name, (model, energy, mean) in scores.items():
        assert abs(energy) < bounds[2], name  # no model went quiet
        assert model < mean - bounds[3], name


class _NaNAfter(train_mod.WMSLoss):
    """The real loss, until training step 5: then NaN (what a too-high lr produces)."""

    calls = 0

    def forward(self, pred, target):
        loss = super().forward(pred, target)
        if self.training:
            type(self).calls += 1
            if type(self).calls > 5:
                return loss * float("nan")
        return loss


def test_a_diverging_run_stops_with_advice_writes_no_bundle_and_keeps_its_checkpoint(
    basic_waves_wav, tmp_path, monkeypatch, capsys
):
    run, cache = tmp_path / "run", tmp_path / "cache"
    real = train_mod.WMSLoss
    monkeypatch.setattr(train_mod, "WMSLoss", _NaNAfter)
    _NaNAfter.calls = 0
    assert _train(basic_waves_wav, run, cache, "--max-steps", "20") == 2
    err = capsys.readouterr().err
    assert "wms train: error: training diverged: the loss became nan at step 5 (learning " in err
    assert "of train.lr = 0.003). Usually the learning rate is too high" in err
    assert "(try --set train.lr=0.00075)" in err and "No bundle was written" in err
    assert not (run / "model.wms").exists() and not list(run.glob(".model.wms*"))

    # A good run, then a resumed one that diverges: its checkpoint and bundle stay as they were.
    monkeypatch.setattr(train_mod, "WMSLoss", real)
    assert _train(basic_waves_wav, run, cache, "--force", "--max-steps", "8") == 0
    ckpt, bundle = run / "checkpoints" / "last.ckpt", run / "model.wms"
    before = (_digest(ckpt), _digest(bundle))
    monkeypatch.setattr(train_mod, "WMSLoss", _NaNAfter)
    _NaNAfter.calls = 0
    capsys.readouterr()
    assert _train(basic_waves_wav, run, cache, "--resume", str(ckpt), "--max-steps", "30") == 2
    err = capsys.readouterr().err
    assert f"the last good checkpoint is {ckpt}" in err and "at step 13" in err
    assert (_digest(ckpt), _digest(bundle)) == before


def test_the_step_budget_is_exact_and_progress_suits_a_log_file(basic_waves_wav, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _train(basic_waves_wav, run, cache, "--max-steps", "25") == 0
    out, err = capsys.readouterr()
    assert "ends after 25 steps" in out
    assert load_bundle(run / "model.wms").history[-1]["step"] == 25
    # stderr is not a terminal here: plain lines, no bar redraws, no Lightning banners
    # (those go to the run's log file) and no warnings that are not the user's to act on
    assert "\r" not in err and "GPU available" not in out + err and "Tip" not in out + err
    assert "Warning" not in err and "deprecated" not in err
    assert "GPU available: False" in (run / "logs" / "lightning.log").read_text()
    lines = [x for x in err.splitlines() if x.startswith("training: ")]
    assert lines[-1].startswith("training: 25/25 steps, ")
    assert "left, loss " in lines[-1]


def test_the_default_run_is_bit_for_bit_reproducible(basic_waves_wav, tmp_path):
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        assert _train(basic_waves_wav, tmp_path / name, cache, "--max-steps", "30") == 0
    a, b = (load_bundle(tmp_path / n / "model.wms") for n in ("a", "b"))
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)
    assert a.metrics == b.metrics
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_a_weak_model_is_flagged_in_training_info_and_render(basic_waves_wav, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _train(basic_waves_wav, run, cache, "--max-steps", "3") == 0  # far too short
    out = capsys.readouterr().out
    flags = load_bundle(run / "model.wms").metrics["flags"]
    assert flags and all(f"WARNING: {f['message']}. {f['advice']}" in out for f in flags)
    assert main(["info", str(run / "model.wms")]) == 0
    assert f"WARNING: {flags[0]['message']}" in capsys.readouterr().out
    wav = tmp_path / "r.wav"
    assert main(["render", str(run / "model.wms"), "--out", str(wav), "--seconds", "0.5"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'model.wms'}: {flags[0]['message']}. {flags[0]['advice']}" in err


def test_the_preset_a_run_started_from_is_recorded_and_shown(basic_waves_wav, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _train(basic_waves_wav, run, cache, "--preset", "reference", "--max-steps", "2") == 0
    b = load_bundle(run / "model.wms")
    assert b.data["preset"] == "reference"
    assert (b.config.train.loss, b.config.train.scheduler) == ("spectral", "plateau")
    assert b.config.model.hidden_size == 16  # --set wins over the preset
    assert (run / "config.toml").read_text().startswith("# wms train --preset reference")
    capsys.readouterr()
    assert main(["info", str(run / "model.wms")]) == 0
    assert "settings: preset reference, changed: data.seq_len=8," in capsys.readouterr().out
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert _train(basic_waves_wav, run, cache, "--resume", ckpt, "--preset", "default") == 2
    assert "--preset starts a new run" in capsys.readouterr().err
