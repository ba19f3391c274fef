"""Nothing lost: no command writes over one of its inputs, a used run folder is refused,
WMS's own audio is never taken for training material, and links are reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_TRAIN
from wms import __version__
from wms.analysis.audio import find_audio_files, write_audio
from wms.analysis.basic_waves import basic_waves
from wms.cli import main
from wms.synth.testing import random_bundle


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, err
    return err


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("b") / "model.wms", hidden_size=16)


@pytest.fixture
def recording(tmp_path) -> Path:
    return write_audio(tmp_path / "in.wav", basic_waves(2.0, sample_rate=16000, seed=1), 16000)


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_render_never_writes_over_its_input_audio(bundle, recording, capsys, spelling):
    before = recording.read_bytes()
    out = {
        "same": recording,
        "dot": recording.parent / "." / "sub" / ".." / recording.name,
        "symlink": recording.parent / "link.wav",
        "hardlink": recording.parent / "hard.wav",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(recording)
    if spelling == "hardlink":
        out.hardlink_to(recording)
    (recording.parent / "sub").mkdir(exist_ok=True)
    argv = ["render", str(bundle), "--audio", str(recording), "--out", str(out)]
    _fails(capsys, argv, f"would replace the input {recording}")
    assert recording.read_bytes() == before


def test_render_never_writes_over_its_bundle_or_controls(bundle, tmp_path, capsys):
    ctl = tmp_path / "c.wav"  # a controls file that happens to end in .wav
    ctl.write_text("time,f0\n0,220\n1,220\n")
    _fails(
        capsys,
        ["render", str(bundle), "--controls", str(ctl), "--out", str(ctl)],
        "would replace the input",
    )
    assert ctl.read_text().startswith("time,f0")
    size = bundle.stat().st_size
    _fails(capsys, ["render", str(bundle), "--out", str(bundle)], "would replace the input")
    assert bundle.stat().st_size == size
    mid = tmp_path / "song.wav"  # a MIDI file that happens to end in .wav
    mid.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
    before = mid.read_bytes()
    _fails(
        capsys,
        ["render", str(bundle), "--midi", str(mid), "--out", str(mid)],
        f"would replace the input {mid}",
    )
    assert mid.read_bytes() == before


def test_renders_and_exports_are_tagged_and_never_ingested(bundle, tmp_path, capsys):
    audio = tmp_path / "audio"
    write_audio(audio / "take.wav", basic_waves(3.0, sample_rate=16000, seed=2), 16000)
    assert main(["render", str(bundle), "--out", str(audio / "r.wav"), "--seconds", "0.5"]) == 0
    assert main(["export", str(bundle), "--format", "wavetable", "--out", str(audio)]) == 0
    scan = find_audio_files(audio)
    assert scan.files == [audio / "take.wav"]
    reasons = dict(scan.skipped)
    assert (
        reasons[audio / "r.wav"]
        == f"written by wms {__version__} render, not a recording; not used"
    )
    assert f"wms {__version__} wavetable" in reasons[audio / "wms_wavetable.wav"]
    # prepare lists them as skipped, with the reason, and goes on with the recording
    capsys.readouterr()
    assert main(["prepare", str(audio), "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert (
        f"r.wav: written by wms {__version__} render" in out and "files: 1 used, 2 skipped" in out
    )


def test_symlink_loops_and_broken_links_are_reported(tmp_path):
    write_audio(tmp_path / "a" / "x.wav", np.zeros(2048), 16000)
    os.symlink("..", tmp_path / "a" / "back")
    os.symlink(tmp_path / "missing.wav", tmp_path / "broken.wav")
    os.symlink(tmp_path / "a", tmp_path / "alias")  # a second way into a: searched once
    scan = find_audio_files(tmp_path)
    assert scan.files == [tmp_path / "a" / "x.wav"]
    reasons = {p.name: r for p, r in scan.skipped}
    assert reasons["broken.wav"] == "broken symbolic link"
    assert reasons["back"].startswith("symbolic link loop (points back to")
    assert reasons["alias"] == f"another link to {tmp_path / 'a'}, already searched"


def test_evaluate_and_export_never_write_over_inputs(bundle, tmp_path, capsys):
    audio = tmp_path / "audio"
    take = write_audio(audio / "original.wav", basic_waves(3.0, sample_rate=16000, seed=4), 16000)
    before = take.read_bytes()
    _fails(
        capsys,
        ["evaluate", str(bundle), str(audio), "--out", str(audio)],
        f"original.wav: writing it would replace the input {take}",
    )
    assert take.read_bytes() == before
    exported = tmp_path / "x"
    exported.mkdir()
    (exported / "wms_step.onnx").symlink_to(bundle)
    size = bundle.stat().st_size
    _fails(
        capsys,
        ["export", str(bundle), "--format", "onnx", "--out", str(exported)],
        f"would replace the input {bundle}",
    )
    assert bundle.stat().st_size == size


def _train(audio, run, cache, *extra):
    args = ["train", str(audio), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in TINY_TRAIN:
        args += ["--set", s]
    return main([*args, *extra])


@pytest.mark.slow
def test_a_used_run_folder_is_refused_and_force_deletes_only_what_training_wrote(tmp_path, capsys):
    wav = write_audio(tmp_path / "w.wav", basic_waves(8.0, sample_rate=16000, seed=0), 16000)
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    assert _train(wav, run, cache) == 0
    bundle = (run / "model.wms").read_bytes()
    capsys.readouterr()
    err = _fails(capsys, [*_args(wav, run, cache)], "already holds a training run")
    assert "--resume" in err and "--force" in err
    assert (run / "model.wms").read_bytes() == bundle  # untouched
    # inside folders training created: a user's file and the run's own input audio
    (run / "logs" / "mine.txt").write_text("kept")
    take = write_audio(
        run / "logs" / "take.wav", basic_waves(8.0, sample_rate=16000, seed=1), 16000
    )
    (run / "arrays").mkdir()  # recorded as training's, though no array was ever written
    (run / "arrays" / "mydata.txt").write_text("kept")
    (run / "arrays" / "rank0").mkdir()  # what a killed run leaves: its memory-mapped arrays
    (run / "arrays" / "rank0" / "inputs.npy").write_bytes(b"\x93NUMPY")
    old_events = sorted((run / "logs").glob("tensorboard/version_*/events.*"))
    assert old_events and (run / "checkpoints" / "last.ckpt").is_file()
    assert _train(take, run, cache, "--force") == 0
    assert (run / "notes.txt").read_text() == "my notes"  # the user's files stay
    assert (run / "logs" / "mine.txt").read_text() == "kept"
    assert (run / "arrays" / "mydata.txt").read_text() == "kept"
    assert not (run / "arrays" / "rank0").exists()  # training's own, gone
    assert sf.info(str(take)).frames == 8 * 16000  # the input it trained on
    assert not any(p.exists() for p in old_events)  # the earlier run's logs are gone
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".wms-run.json", "arrays", "checkpoints", "config.toml", "logs", "loss_curves.png",
         "model.wms", "notes.txt"]
    )  # fmt: skip


def _args(wav, run, cache):
    args = ["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in TINY_TRAIN:
        args += ["--set", s]
    return args


def test_train_never_writes_over_its_inputs(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    wav = write_audio(run / "model.wms.wav", np.zeros(16000), 16000)
    cfg = run / "config.toml"
    cfg.write_text("[train]\nlr = 0.001\n")
    _fails(
        capsys,
        ["train", str(wav), "--out", str(run), "--config", str(cfg)],
        f"config.toml: writing it would replace the input {cfg}",
    )
    assert cfg.read_text() == "[train]\nlr = 0.001\n"
    _fails(
        capsys,
        ["train", str(wav), "--out", str(tmp_path / "c" / "r"), "--cache-dir", str(tmp_path / "c")],
        "--out lies inside the feature cache",
    )
    assert sf.info(str(wav)).frames == 16000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--devices", "0"], "runtime.devices = 0: give a count of at least 1"),
        (["--devices", "0,1"], "selects GPUs by index, but training runs on the CPU"),
        (["--set", "runtime.accelerator=gpu"], "this machine has no CUDA GPU"),
        (["--max-minutes", "nan"], "--max-minutes = nan must be a positive number"),
        (["--max-minutes", "inf"], "--max-minutes: runtime.max_minutes = inf must be a finite"),
    ],
)
def test_hardware_this_machine_lacks_is_refused_before_any_work(tmp_path, capsys, extra, message):
    assert not torch.cuda.is_available()  # CI's machine: 2 cores, no GPU
    wav = write_audio(tmp_path / "w.wav", basic_waves(2.0, sample_rate=16000, seed=0), 16000)
    cache = tmp_path / "cache"
    argv = ["train", str(wav), "--out", str(tmp_path / "run"), "--cache-dir", str(cache), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not cache.exists()
