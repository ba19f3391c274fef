"""Feature stage: N-cycle normalisation, targets, MFCC, unvoiced policy."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from conftest import reference_config
from wms.analysis.features import (
    analyse,
    cutting_f0,
    ncycle_segments,
    periodic_hann,
    spectral_features,
)
from wms.config import Config

SR, HOP, W, N = 16000, 256, 1024, 2
SEG = dict(sample_rate=SR, hop_size=HOP, window_size=W, cycles=N)


def _frames(n: int) -> int:
    return 1 + n // HOP


def _t(seconds: float) -> np.ndarray:
    return np.arange(round(seconds * SR)) / SR


def _saw(f0: float, t: np.ndarray, n_harm: int = 30) -> np.ndarray:
    h = np.arange(1, n_harm + 1)
    return (np.sin(2 * np.pi * f0 * np.outer(t, h) + 0.3 * h) / h).sum(axis=1)


def _mag(seg: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(seg.astype(np.float64) * periodic_hann(W), axis=-1))


# ----------------------------------------------------------------- N-cycle normalisation


@pytest.mark.parametrize("f0", [46.0, 97.3, 440.0, 1234.5, 1600.0])
def test_sine_lands_exactly_on_bin_n(f0):
    t = _t(0.5)
    seg = ncycle_segments(
        0.7 * np.sin(2 * np.pi * f0 * t + 0.4), np.full(_frames(t.size), f0), **SEG
    )
    mag = _mag(seg[8:-8])  # frames whose span lies inside the signal
    assert np.all(mag.argmax(axis=1) == N)
    # A Hann-windowed sine of amplitude A holding exactly N cycles: |X[N]| = A W / 4,
    # |X[N +- 1]| = A W / 8, nothing anywhere else.
    np.testing.assert_allclose(mag[:, N], 0.7 * W / 4, rtol=1e-6)  # measured rel <= 2.3e-7
    np.testing.assert_allclose(mag[:, [N - 1, N + 1]], 0.7 * W / 8, rtol=1e-6)  # <= 3.3e-7
    rest = np.delete(mag, [N - 1, N, N + 1], axis=1)
    level = 20 * np.log10(rest.max() / mag[:, N].min())
    assert level < -90  # spec
    assert level < -130  # regression: measured -137.6 (1600 Hz) ... -143.6 dB (46 Hz)


@pytest.mark.parametrize("cycles", [2, 4])
def test_saw_harmonics_at_multiples_of_n(cycles):
    f0 = 150.0
    t = _t(0.5)
    seg = ncycle_segments(
        0.3 * _saw(f0, t), np.full(_frames(t.size), f0), **{**SEG, "cycles": cycles}
    )
    mag = _mag(seg[8:-8])
    h = np.arange(1, 31)
    ratio = mag[:, cycles * h] / mag[:, [cycles]]
    np.testing.assert_allclose(
        ratio, np.broadcast_to(1 / h, ratio.shape), rtol=1e-4
    )  # measured rel 2.3e-5
    # Bins that neither hold nor neighbour a harmonic are empty (Hann leaks to +-1 only);
    # with N = 2 there are none, with N = 4 every bin 4h + 2.
    far = [k for k in range(cycles, 30 * cycles) if min(k % cycles, -k % cycles) > 1]
    assert bool(far) == (cycles == 4)
    if far:
        assert mag[:, far].max() < 2.5e-7 * mag[:, cycles].min()  # measured 4.9e-8


def test_compressing_frames_are_band_limited():
    """f0 below N * sr / W: the window spans more than W samples; content above its
    Nyquist (in the original signal: sr / 2 * W / L) must be removed, not aliased."""
    f0 = 20.0  # L = 1600 samples > W, window Nyquist 5120 Hz
    t = _t(1.0)
    y = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 7000.0 * t)
    seg = ncycle_segments(y, np.full(_frames(t.size), f0), **SEG)
    mag = _mag(seg[10:-10])
    assert np.all(mag.argmax(axis=1) == N)
    np.testing.assert_allclose(mag[:, N], W / 4, rtol=1e-4)  # measured rel 1.3e-5
    rest = np.delete(mag, [N - 1, N, N + 1], axis=1)
    level = 20 * np.log10(rest.max() / mag[:, N].min())
    assert level < -90  # spec
    assert level < -100  # regression: measured -109.0 dB


def test_raw_frames_are_the_plain_window_and_outside_reads_zero():
    y = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    nf = _frames(y.size)
    f0 = np.full(nf, np.nan)
    f0[5] = 300.0
    seg = ncycle_segments(y, f0, **SEG)
    padded = np.concatenate([np.zeros(W // 2, np.float32), y, np.zeros(W, np.float32)])
    for i in (0, 3, nf - 1):
        np.testing.assert_array_equal(seg[i], padded[i * HOP : i * HOP + W])
    # A stretched frame at the start: positions before sample -1 read exact zeros.
    f0[0] = 300.0
    seg0 = ncycle_segments(y, f0, **SEG)[0]
    pos = (np.arange(W) - W / 2) * N * SR / (300.0 * W)
    assert np.all(seg0[pos < -1.0] == 0.0) and np.any(seg0[pos > 0] != 0.0)


def test_chunking_does_not_change_segments():
    t = _t(1.0)
    y = _saw(220.0, t) + 0.1 * np.random.default_rng(1).standard_normal(t.size)
    f0 = np.random.default_rng(2).uniform(50.0, 1500.0, _frames(t.size))
    f0[::7] = np.nan
    whole = ncycle_segments(y, f0, **SEG)
    chunked = ncycle_segments(y, f0, **SEG, chunk_frames=5)
    np.testing.assert_allclose(chunked, whole, atol=2e-6)


# ----------------------------------------------------------------- analyse


def _cfg(**features) -> Config:
    """The reference's 16 kHz layout (the exact figures below are written for it)."""
    return reference_config(features=features)


def test_timbre_change_shows_at_exactly_the_right_frame():
    """Sine -> saw at sample B. At f0 = 250 Hz a window spans L = 128 samples (±64).
    Frame 50 (centre 12800) ends 64 samples before B = 12928 and frame 51 (centre 13056)
    starts 64 after it, so frame 50 must still be pure sine and frame 51 pure saw."""
    f0, b = 250.0, 50 * HOP + 128
    t = _t(1.0)
    sine, saw = 0.5 * np.sin(2 * np.pi * f0 * t + 0.3), 0.2 * _saw(f0, t)
    y = np.where(np.arange(t.size) < b, sine, saw)
    nf = _frames(t.size)
    f0s, v = np.full(nf, f0), np.ones(nf)
    cfg = _cfg()
    mix, a_sine, a_saw = (analyse(x, f0s, v, cfg) for x in (y, sine, saw))
    for a in (mix, a_sine, a_saw):
        assert a.f0.shape == a.voicedness.shape == (nf,)
        assert a.mfcc.shape == (nf, 8) and a.target.shape == (nf, 80)
        assert {x.dtype for x in (a.f0, a.voicedness, a.mfcc, a.target)} == {np.dtype(np.float32)}
    # (measured: target 2.8e-5 / 1.2e-5, mfcc identical / 7.9e-4)
    np.testing.assert_allclose(mix.target[5:51], a_sine.target[5:51], atol=1e-4)
    np.testing.assert_allclose(mix.target[51:-5], a_saw.target[51:-5], atol=1e-4)
    np.testing.assert_array_equal(mix.mfcc[5:51], a_sine.mfcc[5:51])
    np.testing.assert_allclose(mix.mfcc[51:-5], a_saw.mfcc[51:-5], atol=4e-3)
    # and the two really differ (the check above could not pass by accident)
    assert np.abs(a_sine.target[50] - a_saw.target[50]).max() > 1.0
    assert np.abs(a_sine.mfcc[50] - a_saw.mfcc[50]).max() > 10.0


def test_results_do_not_depend_on_threads():
    t = _t(6.0)  # 376 frames -> several chunks
    y = 0.3 * np.sin(2 * np.pi * 330.0 * t) + 0.05 * np.random.default_rng(5).standard_normal(
        t.size
    )
    nf = _frames(t.size)
    f0, v = np.random.default_rng(6).uniform(60.0, 1500.0, nf), np.ones(nf)
    one = analyse(y, f0, v, _cfg(), threads=1)
    two = analyse(y, f0, v, _cfg(), threads=3)
    np.testing.assert_array_equal(one.target, two.target)
    np.testing.assert_array_equal(one.mfcc, two.mfcc)
    segs = ncycle_segments(y, f0, **SEG, chunk_frames=64, threads=1)
    np.testing.assert_array_equal(segs, ncycle_segments(y, f0, **SEG, chunk_frames=64, threads=2))


def test_target_and_mfcc_definitions():
    t = _t(0.3)
    y = 0.3 * _saw(180.0, t)
    nf = _frames(t.size)
    cfg = _cfg(mel_fmin=50.0, mel_fmax=6000.0, n_mels=32, n_mfcc=10)
    a = analyse(y, np.full(nf, 180.0), np.ones(nf), cfg)
    seg = ncycle_segments(y, np.full(nf, 180.0), **SEG)
    x = np.fft.rfft(seg.astype(np.float64) * periodic_hann(W), n=1024, axis=1)
    np.testing.assert_allclose(a.target, np.log1p(np.abs(x[:, :80])), rtol=1e-5, atol=1e-5)
    # MFCC == librosa's pipeline on the same power spectrum (dB without top_db clipping).
    mel = librosa.feature.melspectrogram(
        S=np.abs(x.T) ** 2, sr=SR, n_mels=32, fmin=50.0, fmax=6000.0
    )
    ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=10).T
    np.testing.assert_allclose(a.mfcc, ref, rtol=1e-5, atol=2e-4)  # measured abs 4.8e-5


def test_mel_settings_are_honoured():
    t = _t(0.3)
    y = 0.3 * _saw(300.0, t)
    nf = _frames(t.size)
    f0, v = np.full(nf, 300.0), np.ones(nf)
    base = analyse(y, f0, v, _cfg()).mfcc
    for change in ({"n_mels": 64}, {"mel_fmax": 4000.0}, {"mel_fmin": 300.0}):
        other = analyse(y, f0, v, _cfg(**change)).mfcc
        assert np.abs(other - base).max() > 1.0, change


def test_n_fft_larger_than_window_zero_pads():
    seg = np.random.default_rng(0).standard_normal((3, W)).astype(np.float32)
    target, _ = spectral_features(
        seg, sample_rate=SR, n_fft=2048, n_bins=100, n_mfcc=8, n_mels=40, mel_fmin=0.0, mel_fmax=0.0
    )
    ref = np.log1p(np.abs(np.fft.rfft(seg * periodic_hann(W), n=2048)[:, :100]))
    np.testing.assert_allclose(target, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- unvoiced policy


def test_cutting_f0_hold_and_raw():
    f0 = np.array([100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 160.0])
    v = np.array([0.1, 0.2, 0.9, 0.3, 0.4, 0.8, 0.0])
    held = cutting_f0(f0, v, policy="hold", voicing_threshold=0.5)
    np.testing.assert_array_equal(held, [120, 120, 120, 120, 120, 150, 150])
    raw = cutting_f0(f0, v, policy="raw", voicing_threshold=0.5)
    np.testing.assert_array_equal(raw, [np.nan, np.nan, 120, np.nan, np.nan, 150, np.nan])
    none_voiced = cutting_f0(f0, np.zeros(7), policy="hold", voicing_threshold=0.5)
    np.testing.assert_array_equal(none_voiced, f0)
    with pytest.raises(ValueError, match="unvoiced = 'drop'"):
        cutting_f0(f0, v, policy="drop", voicing_threshold=0.5)


def test_analyse_applies_the_unvoiced_policy():
    t = _t(0.5)
    y = 0.3 * _saw(200.0, t) + 0.01 * np.random.default_rng(3).standard_normal(t.size)
    nf = _frames(t.size)
    f0 = np.random.default_rng(4).uniform(150.0, 250.0, nf)
    v = np.ones(nf)
    v[10:20] = 0.0
    hold = analyse(y, f0, v, _cfg(unvoiced="hold"))
    # hold == every frame voiced, cut with frame 9's f0 over the unvoiced run
    f0_held = f0.copy()
    f0_held[10:20] = f0[9]
    ref = analyse(y, f0_held, np.ones(nf), _cfg())
    np.testing.assert_array_equal(hold.target, ref.target)
    np.testing.assert_array_equal(hold.f0, f0.astype(np.float32))  # the tracker's f0 is kept
    np.testing.assert_array_equal(hold.voicedness, v.astype(np.float32))
    raw = analyse(y, f0, v, _cfg(unvoiced="raw"))
    np.testing.assert_array_equal(raw.target[:10], hold.target[:10])
    padded = np.concatenate([np.zeros(W // 2), y, np.zeros(W)]).astype(np.float32)
    plain = np.stack([padded[i * HOP : i * HOP + W] for i in range(10, 20)])
    np.testing.assert_allclose(
        raw.target[10:20], np.log1p(_mag(plain)[:, :80]), rtol=1e-5, atol=1e-5
    )
    assert raw.target.shape == hold.target.shape == (nf, 80)


# ----------------------------------------------------------------- bad input


def test_bad_inputs_raise_named_errors():
    y = np.zeros(2560, np.float32)
    nf = _frames(y.size)
    cfg = _cfg()
    ok_f0, ok_v = np.full(nf, 100.0), np.ones(nf)
    with pytest.raises(ValueError, match=r"analyse: f0 has shape \(5,\) but y \(2560 samples"):
        analyse(y, np.full(5, 100.0), ok_v, cfg)
    with pytest.raises(ValueError, match="analyse: voicedness has shape"):
        analyse(y, ok_f0, np.ones(nf + 1), cfg)
    bad = y.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite samples .first at sample 7"):
        analyse(bad, ok_f0, ok_v, cfg)
    with pytest.raises(ValueError, match="mono signal"):
        analyse(np.zeros((2, 2560)), ok_f0, ok_v, cfg)
    with pytest.raises(ValueError, match="y is empty"):
        ncycle_segments(np.zeros(0), np.zeros(1), **SEG)
    f0 = ok_f0.copy()
    f0[3] = np.nan
    with pytest.raises(ValueError, match=r"f0\[3\] = nan Hz"):
        analyse(y, f0, ok_v, cfg)
    f0[3] = -5.0
    with pytest.raises(ValueError, match=r"ncycle_segments: f0\[3\] = -5.0"):
        ncycle_segments(y, f0, **SEG)
    with pytest.raises(ValueError, match="hop_size = 0"):
        ncycle_segments(y, ok_f0, sample_rate=SR, hop_size=0, window_size=W, cycles=N)
    v = ok_v.copy()
    v[1] = np.inf
    with pytest.raises(ValueError, match=r"voicedness\[1\] = inf"):
        analyse(y, ok_f0, v, cfg)
