"""``wms render`` end to end on a real (random-weight) bundle: every control source."""

import math
import re

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import write_midi
from wms.cli import main
from wms.synth.testing import random_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return random_bundle(tmp_path_factory.mktemp("b") / "model.wms", hidden_size=16)


def wms_render(bundle, out, *args):
    return main(["render", str(bundle), "--out", str(out), *args])


#: Release (0.2 s) + tail (0.05 s) after the source.
AFTER = 0.25


def check_wav(path, sr, frames, subtype="PCM_24"):
    info = sf.info(str(path))
    assert info.samplerate == sr and info.channels == 1 and info.subtype == subtype
    y, _ = sf.read(str(path))
    assert info.frames == frames
    assert 0.01 < np.abs(y).max() < 1.0  # audible and not clipped
    return y


def control_frames(seconds, sr, step_len):
    """Frames of a control-curve render: its time rounds up to whole control steps
    (16 ms: ``step_len`` samples at ``sr``), then the release and the tail."""
    return math.ceil(seconds / 0.016) * step_len + round(AFTER * sr)


def test_fixed_render_prints_a_summary(bundle, tmp_path, capsys):
    out = tmp_path / "fixed.wav"
    assert (
        wms_render(
            bundle,
            out,
            "--seconds",
            "0.5",
            "--f0",
            "330",
            "--control",
            "mfcc1=0.5",
            "--sr",
            "44100",
            "--format",
            "16",
        )
        == 0
    )
    check_wav(out, 44100, control_frames(0.5, 44100, 706), "PCM_16")  # 32 steps: 33617
    msg = capsys.readouterr().out
    assert "44100 Hz" in msg and "peak" in msg and "realtime" in msg


def test_controls_file_midi_audio_and_paths(bundle, tmp_path):
    c = tmp_path / "c.csv"
    c.write_text("time,f0,mfcc0\n0,220,-1\n0.5,440,1\n")
    assert wms_render(bundle, tmp_path / "c.wav", "--controls", str(c), "--format", "float") == 0
    check_wav(tmp_path / "c.wav", 48000, control_frames(0.5, 48000, 768), "FLOAT")  # 36576

    m = tmp_path / "m.mid"
    write_midi(
        m,
        [
            (0, mido.Message("note_on", note=60, velocity=100)),
            (0, mido.Message("note_on", note=64, velocity=100)),
            (240, mido.Message("note_off", note=60)),
            (240, mido.Message("note_off", note=64)),
        ],
    )
    assert (
        wms_render(
            bundle,
            tmp_path / "m.wav",
            "--midi",
            str(m),
            "--sr",
            "16000",
            "--set",
            "synth.midi_cc={1 = 'mfcc0'}",
        )
        == 0
    )
    check_wav(tmp_path / "m.wav", 16000, round((0.25 + AFTER) * 16000))  # MIDI: not rounded

    t = np.arange(16000) / 16000
    sf.write(tmp_path / "in.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 16000)
    assert wms_render(bundle, tmp_path / "a.wav", "--audio", str(tmp_path / "in.wav")) == 0
    check_wav(tmp_path / "a.wav", 48000, control_frames(1.0, 48000, 768))  # 63 steps: 60384

    for path in ("lorenz", "tour"):
        assert (
            wms_render(
                bundle, tmp_path / f"{path}.wav", "--path", path, "--seconds", "1", "--sr", "96000"
            )
            == 0
        )
        check_wav(tmp_path / f"{path}.wav", 96000, control_frames(1.0, 96000, 1536))  # 120768


@pytest.mark.parametrize(
    "args, match",
    [
        (["--sr", "7000"], "output sample rate 7000 is not supported"),
        (["--f0", "0"], r"--f0 0.0 Hz is out of range"),
        (["--control", "colour=1"], r"unknown control 'colour'; valid names are .*mfcc0"),
        (
            ["--set", "model.hidden_size=8"],
            r"--set: only synth.\* settings can change here, not \[model\]",
        ),
        (["--set", "synth.voices=0"], r"--set: synth.voices = 0 must be in \[1, 256\]"),
        (["--path", "tour", "--midi", "x.mid"], "choose one control source"),
        (["--midi", "missing.mid"], "missing.mid: MIDI file not found"),
        (["--midi", "x.mid", "--f0", "200"], "--f0 applies to fixed renders"),
        (["--audio", "x.wav", "--control", "mfcc0=1"], "--control applies to fixed renders"),
        (["--controls", "missing.csv"], "missing.csv: controls file not found"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(bundle, tmp_path, capsys, args, match):
    assert wms_render(bundle, tmp_path / "x.wav", *args) == 2
    assert re.search(match, capsys.readouterr().err)


def test_missing_or_corrupt_bundle(tmp_path, capsys):
    assert wms_render(tmp_path / "none.wms", tmp_path / "x.wav") == 2
    assert "no such bundle file" in capsys.readouterr().err
    bad = tmp_path / "bad.wms"
    bad.write_bytes(b"not a bundle at all")
    assert wms_render(bad, tmp_path / "x.wav") == 2
    assert "bad.wms: not a WMS bundle (not a zip archive)" in capsys.readouterr().err


def test_what_wms_info_says_a_control_does_is_what_the_render_plays(tmp_path):
    """control_effects runs the model at both ends of each control's range and reads the
    powers the engine plays; a render at the default pitch, measured by FFT over the same
    groups of harmonics (the noise in their frequencies included), moves by the same dB.
    The model: a default (full band + noise) random network whose encoder and output
    weights are scaled up, so that its 8 controls move the groups by up to 23 dB."""
    import dataclasses

    from wms.bundle import load_bundle
    from wms.config import Config
    from wms.synth import controls as C
    from wms.synth.network import SynthModel, control_effects
    from wms.synth.render import render
    from wms.synth.testing import random_bundle

    cfg = Config().replace(model={"hidden_size": 32, "encoder_size": 32})
    b = load_bundle(random_bundle(tmp_path / "r.wms", config=cfg))
    with torch.no_grad():
        b.model.input_encoder[0].weight *= 8.0
        b.model.dense_layers[2].weight *= 12.0
    model, i = SynthModel.from_bundle(b), b.interface
    f0, sr = float(i.f0_default), b.config.synth.sample_rate
    flat = dataclasses.replace(b.config.synth, attack=0.0, decay=0.0, sustain=1.0)
    effects = control_effects(b)
    errors, moved = [], []
    for k, e in enumerate(effects):
        powers = []
        for value in i.control_ranges[k]:
            curves = C.fixed_curves({"f0": f0, e.name: value}, 1.0)
            step = b.config.synth.control_interval
            src = C.curves_trajectory(curves, model, sample_rate=sr, step_seconds=step)
            y, _ = render(model, src, sample_rate=sr, config=flat)
            y = y[int(0.4 * sr) : int(0.9 * sr)].astype(np.float64)
            spec = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
            hz = np.fft.rfftfreq(y.size, 1 / sr)
            top = [(c + 0.5) * f0 for _, c in e.bands[:2]] + [sr / 2]
            groups = zip(e.bands, top, strict=True)
            powers.append([spec[(hz >= (a - 0.5) * f0) & (hz < t)].sum() for (a, _), t in groups])
        measured = 10 * np.log10(np.divide(powers[1], powers[0]))
        errors.append(np.max(np.abs(measured - e.change_db)))
        moved.append(np.max(np.abs(measured)))
    assert max(moved) > 15.0 and len({e.label for e in effects}) >= 4, effects
    # measured: at most 1.5 dB apart (1.2 dB on the trained flute and voice of README)
    assert max(errors) < 2.0, errors


def test_control_effect_kinds_labels_and_text():
    from wms.synth.network import ControlEffect, _kind

    bands = ((1, 5), (6, 29), (30, 160))
    assert _kind((0.1, -0.4, 0.2), 0.3) == "none"
    assert _kind((-12.0, -9.0, -7.0), -10.0) == "level"  # below the level floor: quiet
    assert _kind((1.0, 2.0, 3.0), 9.0) == "noise"
    assert _kind((-3.0, 1.0, 12.0), 2.0) == "brightness"
    assert _kind((-3.0, 11.0, -10.0), None) == "mids"
    e = ControlEffect("pc1", "brightness", (-3.4, 1.2, 12.0), bands, 2.0, 0.284)
    assert (e.label, str(e)) == (
        "brighter",
        "brighter: harmonics 1-5 -3 dB, 6-29 +1 dB, 30-160 +12 dB, noise +2 dB "
        "(28 % of the timbre variance)",
    )
    labels = [
        ControlEffect("x", kind, change, bands, noise).label
        for kind, change, noise in (
            ("level", (-12.0, -9.0, -7.0), -10.0),
            ("noise", (1.0, 2.0, 3.0), -9.0),
            ("brightness", (3.0, 1.0, -12.0), None),
            ("mids", (-3.0, -11.0, -1.0), None),
            ("none", (0.0, 0.0, 0.0), None),
        )
    ]
    assert labels == ["quieter", "cleaner", "darker", "mids down", "no effect"]
    assert str(ControlEffect("mfcc3", "none")) == "no effect across its range"
    pacmap = ControlEffect("pacmap1", "learnt")
    assert (pacmap.label, str(pacmap)) == ("learnt map", "axis 1 of the learnt timbre map (PaCMAP)")
    one = ControlEffect("pc0", "brightness", (0.0, 0.0, 4.0), ((1, 1), (1, 1), (1, 1)))
    assert str(one) == "brighter: harmonics 1 +0 dB, 1 +0 dB, 1 +4 dB"
