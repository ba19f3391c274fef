"""``wms render`` end to end on a real (random-weight) bundle: every control source."""

import math
import re

import mido
import numpy as np
import pytest
import soundfile as sf

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
