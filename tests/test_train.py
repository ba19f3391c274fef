"""train.py: `wms train` end to end (tiny), resume, reproducibility, DDP on 2 CPU processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN, reference_config
from wms.analysis.cache import FeatureCache
from wms.analysis.features import Analysis
from wms.bundle import load_bundle
from wms.cli import main
from wms.training import train as train_mod
from wms.training.data import SequenceSampler, range_mask
from wms.training.train import build_training_data, fit

#: conftest's tiny run with 2 s validation blocks, checkpoints every 3 s, epochs per test.
TINY = [
    *(s for s in TINY_TRAIN if not s.startswith(("data.val_block_seconds", "train.max_epochs"))),
    "data.val_block_seconds=2.0",
    "runtime.checkpoint_minutes=0.05",
]
TINY_CFG = reference_config(  # the fake corpora below hold K = 80 bins
    model={"hidden_size": 16, "encoder_size": 16},
    data={"seq_len": 8, "batch_size": 32, "val_block_seconds": 1.0, "gap_frames": 8},
    train={"max_epochs": 2, "lr": 3e-3},
)


def _fake_corpus(lengths=(400, 300), seed=0):
    """Analysis-like random arrays."""
    rng = np.random.default_rng(seed)
    files = []
    for i, n in enumerate(lengths):
        mfcc = rng.normal(size=(n, 8))
        a = Analysis(
            f0=rng.uniform(100, 400, n),
            voicedness=rng.uniform(0, 1, n),
            mfcc=mfcc,
            target=np.log1p(rng.uniform(0, 3, size=(n, 80))).astype(np.float32),
        )
        files.append(SimpleNamespace(path=Path(f"f{i}.wav"), key=f"key{i}", analysis=a))
    return SimpleNamespace(files=files)


def test_input_map_is_fitted_on_training_frames_only():
    cfg = TINY_CFG.replace(data={"val_fraction": 0.3})
    corpus = _fake_corpus()
    splits = build_training_data(corpus, cfg).splits
    # Shift the held-out (and gap) frames far away: a leaky fit would see them in its mean.
    for f, s in zip(corpus.files, splits, strict=True):
        f.analysis.mfcc[~range_mask(s.n_frames, s.train)] += 100.0
    data = build_training_data(corpus, cfg)
    assert data.splits == splits  # the split depends on lengths and seed only
    train = np.concatenate(
        [
            f.analysis.mfcc[range_mask(s.n_frames, s.train)]
            for f, s in zip(corpus.files, splits, strict=True)
        ]
    )
    np.testing.assert_allclose(data.input_map.mfcc_mean, train.mean(axis=0))
    assert np.abs(data.input_map.mfcc_mean).max() < 1.0
    counts = [data.summary[f"{k}_frames"] for k in ("train", "val", "test", "gap")]
    assert counts == [326, 210, 70, 94]  # 700 frames: 30 % val, 10 % test, seeded


@pytest.mark.slow
def test_training_is_reproducible(tmp_path):
    corpus = _fake_corpus()
    data = build_training_data(corpus, TINY_CFG)
    m1, _ = fit(data, TINY_CFG, tmp_path / "a", progress=False)
    m2, _ = fit(data, TINY_CFG, tmp_path / "b", progress=False)
    assert [h["train_loss"] for h in m1.history] == [h["train_loss"] for h in m2.history]
    assert [h["val_loss"] for h in m1.history] == [h["val_loss"] for h in m2.history]
    for k, v in m1.model.state_dict().items():
        torch.testing.assert_close(v, m2.model.state_dict()[k], rtol=0, atol=0)
    # it trains: measured 1.3044 -> 1.2156 (x 0.932)
    assert m1.history[-1]["train_loss"] < 0.97 * m1.history[0]["train_loss"]


@pytest.mark.slow
def test_training_without_validation_records_epochs_and_schedules_on_train_loss(
    tmp_path, monkeypatch
):
    cfg = TINY_CFG.replace(
        data={"val_fraction": 0.0}, train={"scheduler": "plateau", "plateau_patience": 0}
    )
    data = build_training_data(_fake_corpus(), cfg)
    assert len(data.arrays.val_starts) == 0
    module, _ = fit(data, cfg, tmp_path / "a", progress=False)
    assert [(h["epoch"], h["val_loss"]) for h in module.history] == [(0, None), (1, None)]
    assert module.best is None
    # patience 0, and the training loss improves (measured 1.2914 -> 1.2023): lr unchanged.
    # (the history records each epoch's lr before that epoch's scheduler step)
    assert [h["lr"] for h in module.history] == [3e-3, 3e-3]

    # A flat training loss (value 1, gradient 0): every epoch after the first is
    # non-improving, so the schedule halves the lr after each of them.
    class FlatLoss(train_mod.WMSLoss):
        def forward(self, pred, target):
            return 0.0 * super().forward(pred, target) + 1.0

    monkeypatch.setattr(train_mod, "WMSLoss", FlatLoss)
    module, _ = fit(data, cfg.replace(train={"max_epochs": 3}), tmp_path / "b", progress=False)
    assert [h["train_loss"] for h in module.history] == [1.0, 1.0, 1.0]
    assert [h["lr"] for h in module.history] == [3e-3, 3e-3, 1.5e-3]


@pytest.fixture
def wav(basic_waves_wav):
    """The tiny run's 8 s basic-waves WAV (conftest; read only)."""
    return basic_waves_wav


def _train(wav, run, cache, *extra):
    args = ["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in TINY:
        args += ["--set", s]
    return main(args + list(extra))


@pytest.mark.slow
def test_wms_train_writes_a_bundle_a_fresh_process_loads_and_resume_continues(
    wav, tmp_path, capsys
):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _train(wav, run, cache, "--set", "train.max_epochs=2") == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "test blocks" in out and "nearest frame" in out
    for name in (
        "model.wms",
        "config.toml",
        "loss_curves.png",
        "checkpoints/last.ckpt",
        "logs/csv/version_0/metrics.csv",
    ):
        assert (run / name).is_file(), name
    b = load_bundle(run / "model.wms")
    first = b.history
    # the default controls: the principal components above 1 % of the timbre variance
    names, ev = b.interface.control_names, b.input_map.explained_variance_ratio
    assert names == tuple(f"pc{k}" for k in range(len(ev))) and ev[-1] >= 0.01
    assert (
        f"controls: pc0..pc{len(ev) - 1}, {len(ev)} principal components of the standardised "
        f"MFCC ({100 * ev.sum():.1f} % of their variance); wms info RUN/model.wms says what "
        "each does\n" in out
    )
    # the training map holds training frames only, with their own f0
    (f,) = b.data["files"]
    frames = b.training_map["frames"][:, 1]
    assert range_mask(f["n_frames"], f["train"])[frames].all()
    assert len(frames) == sum(e - s for s, e in f["train"])
    cfg = b.config.features
    cached = FeatureCache(cache).load(f["key"], n_mfcc=cfg.n_mfcc, n_bins=cfg.n_bins)
    np.testing.assert_array_equal(b.training_map["f0"], cached.analysis.f0[frames])
    assert [h["epoch"] for h in first] == [0, 1]

    code = (
        "import numpy as np, soundfile as sf, wms\n"
        f"b = wms.load_bundle({str(run / 'model.wms')!r})\n"
        f"y, sr = sf.read({str(wav)!r}, dtype='float32')\n"
        "x, f0, v = b.inputs_from_audio(y[:8000], sr)\n"
        "p = b.predict(x)\n"
        "print(p.shape[0] == x.shape[0] == len(f0), p.shape[1], bool(np.isfinite(p).all()))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["True", "353", "True"]  # the default: 321 bins, 32 bands

    # Resume: two more epochs continue the same run (history, step count, optimizer state).
    ckpt = run / "checkpoints" / "last.ckpt"
    assert _train(wav, run, cache, "--resume", str(ckpt), "--set", "train.max_epochs=4") == 0
    resumed = load_bundle(run / "model.wms").history
    assert [h["epoch"] for h in resumed] == [0, 1, 2, 3]
    assert resumed[:2] == first
    steps = [h["step"] for h in resumed]
    assert steps[2] - steps[1] == steps[1] - steps[0] == steps[3] - steps[2] > 0
    assert resumed[2]["seconds"] > resumed[1]["seconds"]
    assert (run / "logs" / "csv" / "version_1" / "metrics.csv").is_file()


@pytest.mark.slow
def test_resume_refuses_a_changed_model(wav, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _train(wav, run, cache, "--set", "train.max_epochs=1") == 0
    capsys.readouterr()
    code = _train(
        wav,
        run,
        cache,
        "--resume",
        str(run / "checkpoints" / "last.ckpt"),
        "--set",
        "model.hidden_size=32",
    )
    assert code == 2
    assert "cannot change model.hidden_size of a run in progress" in capsys.readouterr().err
    assert main(["train", str(wav), "--out", str(run), "--resume", str(run / "nope.ckpt")]) == 2
    assert "nope.ckpt: no such checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_one_epoch(wav, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = [
        sys.executable,
        "-m",
        "wms.cli",
        "train",
        str(wav),
        "--out",
        str(run),
        "--cache-dir",
        str(cache),
    ]
    args += [
        "--jobs",
        "1",
        "--devices",
        "2",
        "--set",
        "runtime.accelerator=cpu",
        "--set",
        "train.max_epochs=1",
    ]
    for s in TINY:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("bundle: ") == 1  # only rank 0 finishes the run
    b = load_bundle(run / "model.wms")
    n_train = sum(max(0, e - s - 8 + 1) for s, e in b.data["files"][0]["train"])
    assert b.history[-1]["step"] == len(
        SequenceSampler(n_train, batch_size=64, shuffle=True, world_size=2)
    )
    assert not list(run.glob(".*.tmp"))


def test_weighted_loss_uses_the_harmonic_spacing_in_bins():
    """With n_fft = 2 W harmonics sit every 2N bins; the loss must weight by harmonic."""
    from wms.config import load_config
    from wms.training.losses import lowfreq_weights
    from wms.training.train import WMSModule

    cfg = load_config(None, ["features.n_fft=2048", "train.loss=weighted_mse"], preset="reference")
    assert cfg.features.bins_per_harmonic == 4
    module = WMSModule(10, 80, cfg.to_dict(), {}, {}, [])
    torch.testing.assert_close(module.loss_fn.weights, lowfreq_weights(80, cycles=4))
    assert not torch.equal(module.loss_fn.weights, lowfreq_weights(80, cycles=2))


def test_no_test_frame_is_touched_before_the_end(tmp_path):
    """Training and validation read the test blocks nowhere: changing every test frame
    changes only the final held-out figures, never a loss, a weight or the input map."""
    corpus = _fake_corpus((900, 700))
    cfg = TINY_CFG.replace(data={"test_fraction": 0.2})
    data = build_training_data(corpus, cfg)
    assert data.summary["test_frames"] > 0
    m1, _ = fit(data, cfg, tmp_path / "a", progress=False)
    for f, s in zip(corpus.files, data.splits, strict=True):
        test = range_mask(s.n_frames, s.test)
        f.analysis.target[test] = 9.0  # far from anything trained on
        f.analysis.mfcc[test] += 50.0
    changed = build_training_data(corpus, cfg)
    assert changed.splits == data.splits
    np.testing.assert_array_equal(changed.input_map.mfcc_mean, data.input_map.mfcc_mean)
    m2, _ = fit(changed, cfg, tmp_path / "b", progress=False)
    assert [(h["train_loss"], h["val_loss"]) for h in m1.history] == [
        (h["train_loss"], h["val_loss"]) for h in m2.history
    ]
    for k, v in m1.model.state_dict().items():
        torch.testing.assert_close(v, m2.model.state_dict()[k], rtol=0, atol=0)
    before = train_mod.heldout_metrics(m1.model, data)
    after = train_mod.heldout_metrics(m2.model, changed)
    assert before["split"] == after["split"] == "test"
    assert after["model"]["lsd_db"] != before["model"]["lsd_db"]  # the end does read them
