"""Real recorded-instrument test material without a network.

FluidR3_GM (Debian package ``fluid-soundfont-gm``) is a sample-based General
MIDI bank: its notes are recordings of real instruments. This script writes a
short melody per instrument through ``fluidsynth`` and a spoken phrase through
``espeak-ng`` (a formant voice). Install them with::

    apt-get install fluidsynth fluid-soundfont-gm espeak-ng

Usage: ``python benchmarks/real_audio.py OUT_DIR`` -> OUT_DIR/{violin,flute,...}.wav
Used by the benchmarks to check each stage on real sounds; never by the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mido

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
# General MIDI programs (0-based) of sustained, pitched instruments, and the range they play.
INSTRUMENTS = {
    "violin": (40, 55, 79),
    "cello": (42, 36, 60),
    "flute": (73, 60, 84),
    "clarinet": (71, 50, 74),
    "trumpet": (56, 55, 77),
    "choir": (52, 48, 67),
    "piano": (0, 36, 84),
}


def melody_midi(path: Path, program: int, low: int, high: int, seconds: float = 20.0) -> Path:
    """A slow melody stepping through the instrument's range, one note at a time."""
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000))  # 120 bpm: 480 ticks = 0.5 s
    tr.append(mido.Message("program_change", program=program, time=0))
    notes = list(range(low, high + 1, 2)) + list(range(high - 1, low - 1, -3))
    beats = 2  # 1 s per note
    n = int(seconds // (beats * 0.5))
    for i in range(n):
        note = notes[i % len(notes)]
        vel = 60 + (i * 17) % 60
        tr.append(mido.Message("note_on", note=note, velocity=vel, time=0 if i == 0 else 40))
        tr.append(mido.Message("note_off", note=note, velocity=0, time=480 * beats - 40))
    mid.save(str(path))
    return path


def make_real_audio(out_dir: str | Path, sample_rate: int = 44100) -> list[Path]:
    """Write one WAV per instrument (and a voice, when espeak-ng exists); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if shutil.which("fluidsynth") and SOUNDFONT.is_file():
        for name, (program, low, high) in INSTRUMENTS.items():
            mid = melody_midi(out / f"{name}.mid", program, low, high)
            wav = out / f"{name}.wav"
            subprocess.run(
                [
                    "fluidsynth",
                    "-ni",
                    "-g",
                    "0.8",
                    "-r",
                    str(sample_rate),
                    "-F",
                    str(wav),
                    str(SOUNDFONT),
                    str(mid),
                ],
                check=True,
                capture_output=True,
            )
            written.append(wav)
    else:
        print("fluidsynth or FluidR3_GM.sf2 missing: apt-get install fluidsynth fluid-soundfont-gm")
    if shutil.which("espeak-ng"):
        wav = out / "voice.wav"
        text = "Wavetable manifold synthesis plays the timbre of your own recordings. " * 3
        subprocess.run(["espeak-ng", "-s", "120", "-w", str(wav), text], check=True)
        written.append(wav)
    return written


if __name__ == "__main__":
    for p in make_real_audio(sys.argv[1] if len(sys.argv) > 1 else "out/real"):
        print(p)
