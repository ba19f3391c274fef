"""metrics.py: the held-out report scores sounding frames only, the baselines, the flags."""

from __future__ import annotations

import numpy as np
import pytest

from wms.bundle import migrate_v1_metrics
from wms.evaluation.metrics import (
    baseline_predictions,
    describe_heldout,
    heldout_report,
    relative_floor,
    sounding,
)

HARMONICS = np.arange(2, 80, 2)


def _spectra(rng, n, level=2.0):
    return np.log1p(rng.uniform(0.5, 1.5, size=(n, 80)) * level).astype(np.float32)


def test_silent_frames_are_left_out_of_every_score():
    rng = np.random.default_rng(0)
    # 10 sounding frames, then 5 near-silent ones (about 86 dB down: a noise floor)
    target = np.concatenate([_spectra(rng, 10), np.full((5, 80), 1e-4, np.float32)])
    model = target.copy()
    model[10:] = 3.0  # wrong only where the audio is (near) silent
    floor = relative_floor(target, -60.0)
    assert sounding(target, floor).tolist() == [True] * 10 + [False] * 5
    preds = {"model": model, "baseline_mean": model, "baseline_nearest": target}
    m = heldout_report(preds, target, harmonic_index=HARMONICS, split="test", energy_floor=floor)
    assert (m["frames"], m["quiet_frames"]) == (10, 5)
    assert m["model"] == {"sc": 0.0, "lsd_db": 0.0, "harm_sc": 0.0, "harm_lsd_db": 0.0}
    assert m["energy_db"] == 0.0
    # Scoring every frame with any energy would charge the model for the silence.
    every = heldout_report(preds, target, harmonic_index=HARMONICS, split="test")
    assert every["frames"] == 15 and every["model"]["lsd_db"] > 20


def test_the_mean_baseline_averages_sounding_training_frames():
    rng = np.random.default_rng(1)
    loud = np.full((6, 80), np.log1p(2.0), np.float32)
    train_t = np.concatenate([loud, np.zeros((6, 80), np.float32)])
    train_x = rng.normal(size=(12, 3))
    query = train_x[[7, 2]] + 1e-3
    b = baseline_predictions(train_x, train_t, query, energy_floor=relative_floor(train_t, -60.0))
    np.testing.assert_array_equal(b["baseline_mean"], loud[:2])  # not half as loud
    np.testing.assert_array_equal(b["baseline_nearest"], train_t[[7, 2]])  # all frames
    b0 = baseline_predictions(train_x, train_t, query)  # floor 0: silence counts as 0 energy
    np.testing.assert_array_equal(b0["baseline_mean"], loud[:2])


def test_a_dead_model_is_flagged_and_told_why():
    rng = np.random.default_rng(2)
    target = _spectra(rng, 20)
    preds = {
        "model": np.full_like(target, 1e-6),
        "baseline_mean": np.repeat(target.mean(0, keepdims=True), 20, 0),
        "baseline_nearest": target[::-1].copy(),
    }
    m = heldout_report(preds, target, harmonic_index=HARMONICS, split="test")
    assert m["beats_both_baselines"] is False
    assert [f["flag"] for f in m["flags"]] == ["dead", "loses_to_mean"]
    q = np.expm1(target[:, HARMONICS].astype(np.float64))
    expected = 10 * np.log10(q.size * np.expm1(1e-6) ** 2 / np.sum(q * q))
    assert m["energy_db"] == pytest.approx(expected, rel=1e-6)  # about -127 dB
    lines = describe_heldout(m)
    assert lines[0] == "test blocks (20 frames, never used for a choice)"
    assert "the model does NOT beat both baselines" in lines[-3]
    assert lines[-2].startswith("WARNING: the model's predictions are ")
    assert "train again with a lower train.lr" in lines[-2]


def test_flat_metrics_of_older_bundles_keep_their_figures():
    flat = {
        "lsd_db": 5.0,
        "sc": 0.3,
        "lsd_db_mean_baseline": 9.0,
        "sc_mean_baseline": 0.9,
        "lsd_db_nn_baseline": 7.0,
        "sc_nn_baseline": 0.6,
        "n_frames": 30,
    }
    assert migrate_v1_metrics(flat) == {
        "split": "validation",
        "frames": 30,
        "model": {"lsd_db": 5.0, "sc": 0.3},
        "baseline_mean": {"lsd_db": 9.0, "sc": 0.9},
        "baseline_nearest": {"lsd_db": 7.0, "sc": 0.6},
    }
    assert migrate_v1_metrics({"lsd_db": "5 dB"}) == {}
    assert describe_heldout(migrate_v1_metrics(flat))[1] == (
        "  all-bin LSD (dB): model 5.00   mean spectrum 9.00   nearest frame 7.00"
    )


def test_energy_parts_split_highs_and_the_noise_between_harmonics():
    from wms.evaluation.metrics import energy_parts

    sr, n = 44100, 44100
    t = np.arange(n) / sr
    f0 = np.full(100, 220.0)
    tone = sum(np.sin(2 * np.pi * 220.0 * h * t) / h for h in range(1, 11))
    e = energy_parts(tone, sr, f0, 0.01)
    # the harmonics are all of it but the Hann side lobes beyond +-2 bins: measured 5.5e-4,
    # the floor of the noise share
    assert e["inharmonic"] / e["voiced"] < 1e-3
    assert e["high"] < 1e-12 * e["total"] and e["voiced"] == pytest.approx(e["total"])
    two = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 10000 * t)
    e = energy_parts(two, sr, np.zeros(100), 0.01)
    assert e["high"] / e["total"] == pytest.approx(0.5, abs=1e-3)
    assert e["voiced"] == 0.0 == e["inharmonic"]  # unvoiced frames have no noise share
    noise = np.random.default_rng(0).standard_normal(n)
    e = energy_parts(noise, sr, f0, 0.01)
    # white noise: all but the +-2 bins (of 21.5 Hz) around each multiple of 220 Hz
    # (expected 0.6085, measured 0.6049)
    assert e["inharmonic"] / e["voiced"] == pytest.approx(1 - 4 * 21.533 / 220, abs=0.01)
    assert energy_parts(noise[:16000], 16000, f0, 0.01)["high"] == 0.0  # 8 kHz is Nyquist


def test_a_noise_part_is_scored_apart_from_the_bins():
    """The last n_noise columns: every bin figure is the bins' alone (also which frames are
    quiet), and each predictor gets the noise bands' own LSD; the mean baseline averages
    the noise columns over the sounding frames even where low-rate bins are masked."""
    from wms.evaluation.metrics import log_spectral_distance

    rng = np.random.default_rng(3)
    target = np.concatenate([_spectra(rng, 12), np.zeros((3, 80), np.float32)])
    preds = {k: _spectra(rng, 15) for k in ("model", "baseline_mean", "baseline_nearest")}
    nz = {k: np.log1p(rng.uniform(0, 5, (15, 6))).astype(np.float32) for k in (*preds, "t")}
    nz["t"][12:] = 9.0  # loud noise where the bins are silent: still a quiet frame
    bins = heldout_report(preds, target, harmonic_index=HARMONICS, split="test", energy_floor=1.0)
    both = heldout_report(
        {k: np.concatenate([v, nz[k]], axis=1) for k, v in preds.items()},
        np.concatenate([target, nz["t"]], axis=1),
        harmonic_index=HARMONICS, split="test", energy_floor=1.0, n_noise=6,
    )  # fmt: skip
    assert both["quiet_frames"] == bins["quiet_frames"] == 3
    for k in preds:
        noise = both[k].pop("noise_lsd_db")
        assert both[k] == bins[k]
        assert noise == round(float(log_spectral_distance(nz[k][:12], nz["t"][:12])), 4)
    assert "  noise-band LSD (dB): model" in "\n".join(describe_heldout({**both, **{
        k: {**both[k], "noise_lsd_db": 1.0} for k in preds}}))  # fmt: skip
    # the mean baseline: a masked low-rate bin does not mask the noise columns
    train_t = np.concatenate([target[:12], nz["t"][:12]], axis=1)
    b = baseline_predictions(
        rng.normal(size=(12, 3)), train_t, rng.normal(size=(2, 3)),
        train_bands=np.full(12, 40), n_noise=6,
    )  # fmt: skip
    np.testing.assert_allclose(b["baseline_mean"][0, 80:], nz["t"][:12].mean(0), rtol=1e-6)
    np.testing.assert_allclose(b["baseline_mean"][0, :40], target[:12, :40].mean(0), rtol=1e-6)
