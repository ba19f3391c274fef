"""Shared fixtures: the tiny runs' training audio and one tiny trained run per session.

``tiny_run`` trains a real bundle with ``wms train`` (hidden 16, 8 s of basic
waves at 16 kHz, the reference's analysis, 1 epoch) once per session; tests that
only read the bundle reuse it.
Tests must not modify the files it returns (copy them first; ``tiny_cache`` is a
per-test copy of its feature cache).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from wms.config import PRESETS, preset_sections

#: The reference's analysis and tables (16 kHz, hop 256, W = n_fft = 1024, K = 80 bins,
#: 46-1600 Hz, 40 mel bands up to Nyquist, harmonics only, cosine tables) as
#: src/wms/presets/reference.toml states them, on WMS's training defaults: tests of that
#: layout and its exact figures.
REFERENCE_ANALYSIS = preset_sections("reference")
#: the same as ``--set`` arguments
REFERENCE_SET = [f"{sec}.{k}={v}" for sec, kv in REFERENCE_ANALYSIS.items() for k, v in kv.items()]


def reference_config(**sections):
    """``Config()`` with the reference's analysis, then ``sections`` (as ``Config.replace``)."""
    from wms.config import Config

    merged = {k: dict(v) for k, v in REFERENCE_ANALYSIS.items()}
    for sec, kv in sections.items():
        merged.setdefault(sec, {}).update(kv)
    return Config().replace(**merged)


def _preset_set(name: str) -> list[str]:
    return [f"{sec}.{k}={v}" for sec, kv in PRESETS[name].items() for k, v in kv.items()]


#: ``--preset fullband`` (44.1 kHz, 321 bins, 30-4200 Hz) as ``--set`` arguments
FULLBAND_SET = _preset_set("fullband")


def fullband_config(**sections):
    """``--preset fullband``'s config, then ``sections`` (as ``Config.replace``)."""
    from wms.config import load_config

    return load_config(None, preset="fullband").replace(**sections)


#: ``--set`` overrides of the tiny training config (seconds on 1 core).
TINY_TRAIN = [
    "model.hidden_size=16",
    "model.encoder_size=16",
    "data.seq_len=8",
    "data.batch_size=64",
    "data.val_block_seconds=1.0",
    "data.gap_frames=8",
    "train.lr=0.003",
    "train.max_epochs=1",
]


def write_midi(path, events, tempo=500000):
    """A one-track MIDI file; events: (tick, message) at 480 ticks per beat."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    last = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        tr.append(msg.copy(time=tick - last))
        last = tick
    mid.save(path)


@dataclass(frozen=True)
class TinyRun:
    """A trained tiny run: the training audio, its feature cache, the run folder and bundle."""

    wav: Path
    cache: Path
    run: Path
    bundle: Path


@pytest.fixture(scope="session")
def basic_waves_wav(tmp_path_factory) -> Path:
    """8 s of basic waves at 16 kHz (seed 0): the training audio of the tiny runs (read only)."""
    from wms.analysis.audio import write_audio
    from wms.analysis.basic_waves import basic_waves

    d = tmp_path_factory.mktemp("audio")
    return write_audio(d / "waves.wav", basic_waves(8.0, sample_rate=16000, seed=0), 16000)


@pytest.fixture(scope="session")
def tiny_run(basic_waves_wav, tmp_path_factory) -> TinyRun:
    from wms.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    wav = basic_waves_wav
    cache, run = root / "cache", root / "run"
    args = ["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--jobs", "1"]
    for s in [*TINY_TRAIN, *REFERENCE_SET]:
        args += ["--set", s]
    assert main(args) == 0, "tiny training run failed"
    return TinyRun(wav=wav, cache=cache, run=run, bundle=run / "model.wms")


@pytest.fixture
def tiny_cache(tiny_run, tmp_path) -> Path:
    """A per-test copy of ``tiny_run.cache``: evaluating may write to a cache (new analyses,
    the content-hash memo), and the shared one must stay as training left it."""
    return Path(shutil.copytree(tiny_run.cache, tmp_path / "tiny_cache"))
