"""The synthetic basic-waves set: band limiting, phase continuity, determinism, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import get_window

from wms.analysis.basic_waves import (
    AMPLITUDE,
    CROSSFADE_SECONDS,
    SHAPES,
    basic_waves,
    basic_waves_with_labels,
    harmonic_series,
)
from wms.cli import main
from wms.errors import ConfigError

SR = 16000


def _segment(bw, shape: str, min_len: int = 4000):
    """(start, stop) of the first segment of ``shape`` past its crossfade, >= min_len long."""
    ends = np.append(bw.segment_starts[1:], bw.y.shape[0])
    fade = round(CROSSFADE_SECONDS * bw.sample_rate) + 8
    for a, b in zip(bw.segment_starts, ends, strict=True):
        if SHAPES[bw.shape[a]] == shape and b - a - fade >= min_len:
            return a + fade, b
    raise AssertionError(f"no {shape} segment of {min_len} samples")


def _spectrum_db(x: np.ndarray, sample_rate: int):
    # Kaiser beta 20: sidelobes below -150 dB, so what shows is in the signal.
    w = get_window(("kaiser", 20.0), x.shape[0])
    power = np.abs(np.fft.rfft(x.astype(np.float64) * w)) ** 2
    return np.fft.rfftfreq(x.shape[0], 1 / sample_rate), 10 * np.log10(power / power.max() + 1e-300)


def test_duration_exact_and_labels_aligned():
    for seconds in (0.05, 1.2345, 3.0):
        bw = basic_waves_with_labels(seconds, sample_rate=SR, seed=1)
        n = round(seconds * SR)
        assert bw.y.shape == bw.f0.shape == bw.shape.shape == (n,)
        assert bw.y.dtype == np.float32
        assert np.abs(bw.y).max() <= AMPLITUDE + 1e-6
    assert basic_waves(1.0, sample_rate=22050).shape == (22050,)
    assert basic_waves(0.5).shape == (22050,)  # 44.1 kHz, the default analysis rate


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = basic_waves(2.0, seed=5)
    np.testing.assert_array_equal(a, basic_waves(2.0, seed=5))
    assert not np.allclose(a, basic_waves(2.0, seed=6))


def test_all_shapes_pitch_range_and_segment_lengths():
    bw = basic_waves_with_labels(10.0, sample_rate=SR, seed=0)
    assert set(np.unique(bw.shape)) == set(range(len(SHAPES)))
    assert 55.0 <= bw.f0.min() and bw.f0.max() <= 1568.0
    lengths = np.diff(bw.segment_starts)  # all but the (truncated) last one
    assert lengths.min() >= 0.1 * SR and lengths.max() <= 1.0 * SR
    # Labels are constant inside a segment and the shape changes at every boundary.
    for a in bw.segment_starts[1:]:
        assert bw.shape[a] != bw.shape[a - 1]
        assert bw.f0[a] != bw.f0[a - 1]


def test_phase_continuous_sine_is_exact():
    """Sine segments equal 0.5 sin(2 pi * running phase of the f0 labels) across all jumps."""
    bw = basic_waves_with_labels(6.0, sample_rate=SR, seed=2)
    phase = np.concatenate([[0.0], np.cumsum(bw.f0)[:-1] / SR])
    ref = AMPLITUDE * np.sin(2 * np.pi * phase)
    fade = round(CROSSFADE_SECONDS * SR)
    ends = np.append(bw.segment_starts[1:], bw.y.shape[0])
    n_checked = 0
    for a, b in zip(bw.segment_starts, ends, strict=True):
        if SHAPES[bw.shape[a]] == "sine":
            s = a + fade if a > 0 else a
            np.testing.assert_allclose(bw.y[s:b], ref[s:b], atol=5e-7)  # measured 1.6e-7
            n_checked += 1
    assert n_checked == 3  # seed 2: three sine segments


def test_high_square_has_only_odd_harmonics_below_nyquist():
    f0 = 1479.0  # harmonics 1, 3, 5 fit below 8 kHz; 7 would alias to 5647 Hz
    bw = basic_waves_with_labels(3.0, sample_rate=SR, seed=0, f0_range=(f0, f0))
    a, b = _segment(bw, "square")
    freqs, db = _spectrum_db(bw.y[a:b], SR)
    near = np.zeros(freqs.shape, bool)
    for h in (1, 3, 5):
        near |= np.abs(freqs - h * f0) < 30
    assert db[~near].max() < -60  # spec: nothing at even harmonics, aliases or elsewhere
    assert db[~near].max() < -120  # regression: measured -130.5 dB
    # Odd harmonics in the 1/h ratio of a square wave.
    # (power summed over each main lobe: independent of where the bins fall)
    peaks = [10 * np.log10(np.sum(10 ** (db[np.abs(freqs - h * f0) < 30] / 10))) for h in (1, 3, 5)]
    np.testing.assert_allclose(
        np.array(peaks) - peaks[0], 20 * np.log10([1, 1 / 3, 1 / 5]), atol=2e-4
    )  # measured 4.1e-5 dB


@pytest.mark.parametrize("shape", SHAPES)
def test_low_pitch_shapes_have_no_inharmonic_energy(shape):
    f0 = 61.7  # ~129 harmonics up to Nyquist: the table reads are the hard case
    bw = basic_waves_with_labels(4.0, sample_rate=SR, seed=1, f0_range=(f0, f0))
    a, b = _segment(bw, shape)
    freqs, db = _spectrum_db(bw.y[a:b], SR)
    dist = np.abs(freqs / f0 - np.round(freqs / f0)) * f0  # Hz to the nearest harmonic
    assert db[dist > 12].max() < -60  # spec
    assert db[dist > 12].max() < -95  # regression: measured saw -101.9 ... triangle -141.8 dB


def test_harmonic_series_matches_the_ideal_shapes():
    phi = np.arange(512) / 512
    n_h = 4000  # ideal shapes converge slowly: compare away from their corners
    synth = {
        s: np.sin(2 * np.pi * np.outer(phi, np.arange(n_h + 1))) @ harmonic_series(s, n_h)
        for s in SHAPES
    }
    np.testing.assert_allclose(synth["sine"], np.sin(2 * np.pi * phi), atol=1e-12)
    tri = np.where(phi < 0.25, 4 * phi, np.where(phi < 0.75, 2 - 4 * phi, 4 * phi - 4))
    # (atol: the truncation error of the 4000-harmonic series, measured)
    np.testing.assert_allclose(synth["triangle"], tri, atol=2e-4)  # measured 1.01e-4
    inner = (np.abs(phi - 0.5) > 0.02) & (phi > 0.02)
    np.testing.assert_allclose(synth["square"][inner], np.sign(0.5 - phi)[inner], atol=0.02)
    saw = np.where(phi < 0.5, 2 * phi, 2 * phi - 2)
    np.testing.assert_allclose(synth["saw"][inner], saw[inner], atol=3e-3)  # measured 1.12e-3


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="seconds = 0"):
        basic_waves(0)
    with pytest.raises(ConfigError, match="seconds = nan"):
        basic_waves(float("nan"))
    with pytest.raises(ConfigError, match="sample_rate = -1"):
        basic_waves(1.0, sample_rate=-1)
    with pytest.raises(ConfigError, match="f0_range"):
        basic_waves_with_labels(1.0, sample_rate=2000, f0_range=(55.0, 1568.0))
    with pytest.raises(ConfigError, match="unknown basic-wave shape 'pulse'"):
        harmonic_series("pulse", 3)


def test_cli_writes_the_wav(tmp_path, capsys):
    out = tmp_path / "sub" / "bw.wav"
    assert (
        main(["basic-waves", str(out), "--seconds", "1.5", "--seed", "2", "--sample-rate", "8000"])
        == 0
    )
    data, sr = sf.read(out, dtype="float32")
    assert sr == 8000 and data.shape == (12000,)
    np.testing.assert_allclose(
        data, basic_waves(1.5, sample_rate=8000, seed=2), atol=1 / 32768 + 1e-6
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "1.50 s at 8000 Hz" in printed


def test_cli_reports_bad_seconds(tmp_path, capsys):
    assert main(["basic-waves", str(tmp_path / "x.wav"), "--seconds", "-1"]) == 2
    assert "seconds = -1" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_sixty_seconds_generate():
    bw = basic_waves_with_labels(60.0, sample_rate=SR, seed=0)
    assert bw.y.shape == (60 * SR,)
    assert np.all(np.isfinite(bw.y))
