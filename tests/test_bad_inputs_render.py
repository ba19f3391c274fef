"""Render limits and messages at the edge, and the loudness policy on every control source."""

from __future__ import annotations

import math
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from wms.analysis.audio import write_audio
from wms.analysis.basic_waves import basic_waves
from wms.bundle import load_bundle, save_bundle
from wms.cli import main
from wms.synth.render import PEAK_CEILING_DB, TARGET_RMS_DB, _policy_gain
from wms.synth.testing import random_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("b") / "model.wms", hidden_size=16)


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, err
    return err


def _midi(path: Path, notes, *, gap_ticks: int = 0, truncate: int = 0) -> Path:
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    for i, n in enumerate(notes):
        tr.append(mido.Message("note_on", note=n, velocity=100, time=gap_ticks if i else 0))
        tr.append(mido.Message("note_off", note=n, velocity=0, time=240))
    mid.save(str(path))
    if truncate:
        path.write_bytes(path.read_bytes()[:-truncate])
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "86400"], "--seconds 86400: a 24.0 h render at 48000 Hz needs"),
        (["--seconds", "100000", "--format", "16"], "27.8 h render at 48000 Hz needs 8.9 GiB"),
    ],
)
def test_renders_too_long_for_a_wav_are_refused_before_any_work(
    bundle, tmp_path, capsys, args, message
):
    out = tmp_path / "o.wav"
    _fails(capsys, ["render", str(bundle), "--out", str(out), *args], message)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_controls_and_midi_durations_are_checked_before_any_work(bundle, tmp_path, capsys):
    ctl = tmp_path / "c.csv"
    ctl.write_text("time,f0\n0,220\n1e9,220\n")
    out = tmp_path / "o.wav"
    _fails(capsys, ["render", str(bundle), "--controls", str(ctl), "--out", str(out)], "c.csv")
    mid = _midi(tmp_path / "long.mid", [60, 62], gap_ticks=77 * 3600 * 960)  # 77 hours
    err = _fails(capsys, ["render", str(bundle), "--midi", str(mid), "--out", str(out)], "long.mid")
    assert "77.0 h long" in err and "more than a WAV file holds" in err
    assert not out.exists()


def test_truncated_midi_says_what_is_wrong(bundle, tmp_path, capsys):
    mid = _midi(tmp_path / "cut.mid", [60, 64, 67], truncate=7)
    _fails(
        capsys,
        ["render", str(bundle), "--midi", str(mid), "--out", str(tmp_path / "o.wav")],
        "cut.mid: not a readable standard MIDI file (it ends in the middle of a track",
    )
    txt = tmp_path / "notes.mid"
    txt.write_text("not midi at all")
    err = _fails(
        capsys, ["render", str(bundle), "--midi", str(txt), "--out", str(tmp_path / "o.wav")], ""
    )
    assert "notes.mid: not a readable standard MIDI file (" in err and "()" not in err
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    _fails(
        capsys,
        ["render", str(bundle), "--midi", str(empty), "--out", str(tmp_path / "o.wav")],
        "empty.mid: an empty file (0 bytes), not a standard MIDI file",
    )


def test_a_bend_above_nyquist_warns_once(bundle, tmp_path, capsys):
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("note_on", note=103, velocity=100, time=0))  # 3136 Hz
    for t in (240, 240):  # +2 semitones (the default range) twice: 3520 Hz
        tr.append(mido.Message("pitchwheel", pitch=8191, time=t))
    tr.append(mido.Message("note_off", note=103, velocity=0, time=480))
    path = tmp_path / "bend.mid"
    mid.save(str(path))
    argv = ["render", str(bundle), "--midi", str(path), "--out", str(tmp_path / "o.wav")]
    assert main([*argv, "--sr", "8000", "--set", "synth.pitch_bend_range=12"]) == 0
    err = capsys.readouterr().err
    assert err.count("bend.mid: the pitch bend at 0.250 s takes note 103 to 6272 Hz") == 1, err
    assert main([*argv, "--sr", "16000", "--set", "synth.pitch_bend_range=12"]) == 0
    assert "pitch bend" not in capsys.readouterr().err  # 6272 Hz fits under 8 kHz


def test_a_note_above_nyquist_names_file_note_and_time(bundle, tmp_path, capsys):
    mid = _midi(tmp_path / "high.mid", [60, 127])  # note 127 is 12.5 kHz
    out = tmp_path / "o.wav"
    _fails(
        capsys,
        ["render", str(bundle), "--midi", str(mid), "--out", str(out), "--sr", "16000"],
        "high.mid: note 127 at 0.250 s plays 12544 Hz, at or above half the output rate",
    )
    assert not out.exists()


def test_a_silent_audio_input_warns(bundle, tmp_path, capsys):
    silent = write_audio(tmp_path / "s.wav", np.zeros(16000), 16000)
    out = tmp_path / "o.wav"
    assert main(["render", str(bundle), "--audio", str(silent), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "s.wav is silent (peak below audio.silence_db = -60 dBFS)" in captured.err
    assert ", silent, peak" in captured.out  # and the summary says so
    assert np.max(np.abs(sf.read(out)[0])) == 0.0  # silence is not amplified


def _sounding_rms_db(y: np.ndarray, sr: int) -> float:
    lb = round(0.02 * sr)
    ms = np.square(y[: len(y) // lb * lb].reshape(-1, lb).astype(np.float64)).mean(axis=1)
    return 10 * math.log10(ms[ms >= ms.max() * 1e-6].mean())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    (d / "c.csv").write_text("time,f0,mfcc0\n0,110,-1\n0.6,330,1\n")
    rec = basic_waves(1.0, sample_rate=16000, seed=3) * 0.05  # a quiet recording
    return {
        "fixed": ["--f0", "220", "--seconds", "0.6"],
        "controls": ["--controls", str(d / "c.csv")],
        "midi": ["--midi", str(_midi(d / "m.mid", [57, 64]))],
        "audio": ["--audio", str(write_audio(d / "a.wav", rec, 16000))],
        "lorenz": ["--path", "lorenz", "--seconds", "0.6"],
        "tour": ["--path", "tour", "--seconds", "0.6"],
    }


@pytest.mark.parametrize("kind", ["fixed", "controls", "midi", "audio", "lorenz", "tour"])
def test_every_source_comes_out_at_the_loudness_target(bundle, sources, tmp_path, kind):
    out = tmp_path / "o.wav"
    assert (
        main(["render", str(bundle), "--out", str(out), "--format", "float", *sources[kind]]) == 0
    )
    y, sr = sf.read(out, dtype="float32")
    rms = _sounding_rms_db(y, sr)
    peak = 20 * math.log10(np.max(np.abs(y)))
    # -20 dBFS RMS unless the -1 dBFS peak ceiling holds it lower
    assert peak <= PEAK_CEILING_DB + 1e-4
    assert abs(rms - TARGET_RMS_DB) < 0.05 or abs(peak - PEAK_CEILING_DB) < 1e-3, (rms, peak)
    for policy, extra in (("peak", []), ("none", []), ("loudness", ["--gain", "-6"])):
        o2 = tmp_path / f"{policy}.wav"
        argv = ["render", str(bundle), "--out", str(o2), "--format", "float", *sources[kind]]
        assert main([*argv, "--normalize", policy, *extra]) == 0
        z, _ = sf.read(o2, dtype="float32")
        if policy == "peak":
            assert 20 * math.log10(np.max(np.abs(z))) == pytest.approx(PEAK_CEILING_DB, abs=1e-4)
        elif policy == "loudness":  # --gain adds to the policy's gain
            np.testing.assert_allclose(z, y * np.float32(10 ** (-6 / 20)), rtol=1e-5, atol=1e-7)
        else:
            # the engine's own level: a fixed scale of the normalised render
            g = np.max(np.abs(y)) / np.max(np.abs(z))
            np.testing.assert_allclose(z * np.float32(g), y, rtol=1e-5, atol=1e-6)


def test_a_near_silent_model_is_not_amplified_into_a_buzz(bundle, tmp_path, capsys):
    b = load_bundle(bundle)
    with torch.no_grad():
        b.model.dense_layers[2].bias.fill_(-30.0)  # softplus(-30) ~ 1e-13: a dead model
    dead = save_bundle(
        tmp_path / "dead.wms",
        model=b.model,
        config=b.config,
        interface=b.interface,
        input_map=b.input_map,
        training_map=b.training_map,
        data_map=b.data,
        history=b.history,
        metrics=b.metrics,
    )
    # give the interface a level floor (random_bundle's zero targets leave it at 0)
    import dataclasses

    b2 = load_bundle(dead)
    floored = dataclasses.replace(b2.interface, level_floor=0.01)
    save_bundle(
        dead,
        model=b2.model,
        config=b2.config,
        interface=floored,
        input_map=b2.input_map,
        training_map=b2.training_map,
        data_map=b2.data,
        history=b2.history,
        metrics=b2.metrics,
    )
    out = tmp_path / "o.wav"
    assert main(["render", str(dead), "--out", str(out), "--f0", "220", "--seconds", "0.5"]) == 0
    y, _ = sf.read(out, dtype="float32")
    assert np.max(np.abs(y)) < 1e-6  # near-silence stays near-silent
    assert "the render is silent" in capsys.readouterr().err


def test_policy_gain_by_hand():
    ms = [1e-2, 1e-2, 1e-12]  # two sounding blocks at -20 dBFS RMS, one near-silent
    assert _policy_gain(ms, 0.2, "loudness") == (pytest.approx(1.0), pytest.approx(-20.0))
    g, rms = _policy_gain([1e-4, 1e-4], 0.02, "loudness")  # -40 dBFS -> +20 dB
    assert g == pytest.approx(10.0) and rms == pytest.approx(-40.0)
    g, _ = _policy_gain([1e-4], 0.5, "loudness")  # +20 dB would clip: held at the ceiling
    assert g == pytest.approx(10 ** (-1 / 20) / 0.5)
    assert _policy_gain([1e-9], 1e-4, "loudness")[0] == 1.0  # -90 dBFS: never amplified
    assert _policy_gain([1e-4], 0.02, "none")[0] == 1.0
    assert _policy_gain([], 0.0, "loudness") == (1.0, None)


@pytest.mark.parametrize("gain", ["nan", "inf", "400", "-1e9", "1e9"])
def test_a_gain_out_of_range_is_refused_before_any_work(bundle, tmp_path, capsys, gain):
    out = tmp_path / "g.wav"
    argv = ["render", str(bundle), "--out", str(out), "--seconds", "0.5", f"--gain={gain}"]
    _fails(capsys, argv, "must be a number from -120 to 40")
    assert not out.exists()


def test_a_gain_that_clips_says_so(bundle, tmp_path, capsys):
    out = tmp_path / "g.wav"
    argv = ["render", str(bundle), "--out", str(out), "--seconds", "0.5", "--gain", "30"]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "peak 0.0 dBFS" in cap.out
    assert "takes the peak to +29.0 dBFS: every sample above 0 dBFS is clipped" in cap.err
    assert np.max(np.abs(sf.read(str(out))[0])) <= 1.0


def test_pitches_outside_the_trained_range_warn(bundle, tmp_path, capsys):
    lo, hi = load_bundle(bundle).interface.f0_range  # random_bundle: f0 from 80 to 800 Hz
    out = str(tmp_path / "o.wav")
    assert main(["render", str(bundle), "--out", out, "--f0", "220", "--seconds", "0.3"]) == 0
    assert "outside the pitch range" not in capsys.readouterr().err
    assert main(["render", str(bundle), "--out", out, "--f0", "3000", "--seconds", "0.3"]) == 0
    err = capsys.readouterr().err
    assert (
        f"100 % of the voiced steps (3000-3000 Hz) lie outside the pitch range the model was "
        f"trained on, {lo:.0f}-{hi:.0f} Hz"
    ) in err
    mid = _midi(tmp_path / "two.mid", [60, 108])  # 262 Hz and 4186 Hz
    assert main(["render", str(bundle), "--midi", str(mid), "--out", out]) == 0
    assert "50 % of the notes (4186-4186 Hz) lie outside" in capsys.readouterr().err


def test_controls_asked_outside_their_training_ranges_warn(bundle, tmp_path, capsys):
    i = load_bundle(bundle).interface
    name, (lo, hi) = i.control_names[1], i.control_ranges[1]
    out = str(tmp_path / "o.wav")
    args = ["render", str(bundle), "--out", out, "--f0", "220", "--seconds", "0.3"]
    assert main([*args, "--control", f"{name}={(lo + hi) / 2}"]) == 0
    assert "range" not in capsys.readouterr().err
    assert main([*args, "--control", f"{name}=50"]) == 0
    assert (
        f"{name} reaches 50 (range {lo:.3g}..{hi:.3g}): clamped to its range "
        '(synth.out_of_range = "clamp"; "extrapolate" plays it, a guess)'
    ) in capsys.readouterr().err
    assert main([*args, "--control", f"{name}=-50", "--set", "synth.out_of_range=extrapolate"]) == 0
    err = capsys.readouterr().err
    assert f"{name} reaches -50 (range" in err and "played as given (synth.out_of_range" in err
