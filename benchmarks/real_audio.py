"""Real recorded-instrument material without a network, with what real recordings hold.

FluidR3_GM (Debian package ``fluid-soundfont-gm``) is a sample-based General MIDI bank:
its notes are recordings of real instruments. This script plays seeded melodies through
``fluidsynth`` (reverb on, chorus off) and speech and sung vowels through ``espeak-ng``,
into one folder per piece::

    flute_pauses/    60 s, phrases with 1-4 s pauses: digital silence until 34 s, then
                     reverb tails over a -60 dBFS noise floor
    violin_vibrato/  60 s legato, 5.5 Hz +-30 cent vibrato (pitch-bend LFO)
    cello_low/       60 s: contrabass E1-E2 (41-82 Hz, partly below 46 Hz), then cello
    piccolo_high/    40 s, G5-A7 (784-3520 Hz): half the notes above 1.6 kHz
    multi/           clarinet, trumpet and oboe, 20 s each: one folder, three files
    voice/           44 s espeak-ng: spoken sentences and long sung vowels, pauses between
    choir/           40 s choir aahs, a few short breaths

Usage::

    apt-get install fluidsynth fluid-soundfont-gm espeak-ng
    python benchmarks/real_audio.py OUT [--rate 44100] [--only NAME ...]

Every random choice comes from a seeded generator: the same command writes the same
files. Mono 24-bit WAV at ``--rate`` (44.1 kHz by default). Used by the benchmarks
(``bench_real.py``) and for listening; never by the tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RATE = 44100  # fluidsynth renders here; other rates are resampled (soxr, VHQ)
TICKS_PER_BEAT = 480  # at 120 bpm one tick is 1/960 s
TICK = 0.5 / TICKS_PER_BEAT
PIECES = (
    "flute_pauses",
    "violin_vibrato",
    "cello_low",
    "piccolo_high",
    "multi",
    "voice",
    "choir",
)


def write_midi(path: Path, events: list[tuple[float, mido.Message]]) -> None:
    """``(seconds, message)`` events in any order -> a one-track MIDI file (note-offs
    before note-ons at equal times, so legato overlaps are explicit)."""
    order = {"program_change": 0, "control_change": 1, "note_off": 2, "pitchwheel": 3}
    events = sorted(events, key=lambda e: (round(e[0] / TICK), order.get(e[1].type, 4)))
    mid = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    last = 0
    for t, msg in events:
        tick = round(t / TICK)
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=round(1.5 / TICK)))
    mid.save(str(path))


def fluidsynth(events) -> np.ndarray:
    """MIDI events -> mono float64 at :data:`RATE` through FluidR3_GM."""
    with tempfile.TemporaryDirectory() as d:
        mid, wav = Path(d) / "x.mid", Path(d) / "x.wav"
        write_midi(mid, events)
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(RATE), "-F", str(wav)]
        cmd += ["-o", "synth.reverb.active=1", "-o", "synth.chorus.active=0"]
        subprocess.run([*cmd, str(SOUNDFONT), str(mid)], check=True, capture_output=True)
        y, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    assert sr == RATE
    return y.mean(axis=1)


def notes(items, program: int, *, channel: int = 0):
    """``(start_s, duration_s, midi_note, velocity)`` items -> events, reverb send 40."""
    ev = [
        (0.0, mido.Message("program_change", channel=channel, program=program)),
        (0.0, mido.Message("control_change", channel=channel, control=91, value=40)),
    ]
    for start, dur, note, vel in items:
        ev.append((start, mido.Message("note_on", channel=channel, note=note, velocity=vel)))
        ev.append((start + dur, mido.Message("note_off", channel=channel, note=note, velocity=0)))
    return ev


def vibrato(t0: float, t1: float, *, rate=5.5, cents=30.0, bend_range=200.0, channel=0):
    """A sine pitch-bend LFO (``rate`` Hz, +-``cents``), one event every 10 ms."""
    return [
        (
            t,
            mido.Message(
                "pitchwheel",
                channel=channel,
                pitch=round(cents * np.sin(2 * np.pi * rate * (t - t0)) / bend_range * 8191),
            ),
        )
        for t in np.arange(t0, t1, 0.01)
    ]


def peak(y: np.ndarray, db: float = -3.0) -> np.ndarray:
    return y * (10 ** (db / 20) / max(float(np.max(np.abs(y))), 1e-12))


def length(y: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def melody(rng, until: float, durations, pick) -> list[tuple]:
    """Notes one after another from 0.3 s to ``until``: durations drawn from
    ``durations``, pitch ``pick(rng)``, velocity 70-114, 90 % legato."""
    out, t = [], 0.3
    while t < until:
        d = float(rng.choice(durations))
        out.append((t, 0.9 * d, int(pick(rng)), int(rng.integers(70, 115))))
        t += d
    return out


# --------------------------------------------------------------------------- pieces


def flute_pauses(rng) -> dict[str, np.ndarray]:
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84]
    items, phrases, t = [], [], 0.5
    while t < 56:
        start, idx = t, int(rng.integers(2, len(scale) - 6))
        for _ in range(int(rng.integers(3, 7))):
            d = float(rng.choice([0.35, 0.5, 0.75, 1.0, 1.25]))
            idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
            items.append((t, 0.95 * d, scale[idx], int(rng.integers(70, 110))))
            t += d
        phrases.append((start, t))
        t += float(rng.uniform(1.0, 4.0))
    y = length(peak(fluidsynth(notes(items, 73))), 60.0)
    time = np.arange(len(y)) / RATE
    gate = np.ones_like(y)
    gate[time < phrases[0][0] - 0.01] = 0.0
    for (_, stop), (nxt, _) in zip(phrases, phrases[1:] + [(60.0, 60.0)], strict=True):
        if stop < 34.0:  # gate the pause to digital silence, 0.15 s after the phrase
            gate[(time > stop + 0.15) & (time < nxt - 0.01)] = 0.0
    noise = rng.standard_normal(len(y)) * 10 ** (-60 / 20)
    return {"flute_pauses.wav": y * gate + np.where(time >= 34.0, noise, 0.0)}


def violin_vibrato(rng) -> dict[str, np.ndarray]:
    scale = [55, 57, 59, 60, 62, 64, 66, 67, 69, 71, 72, 74, 76, 78, 79, 81, 83, 84, 86, 88]
    items, t, idx = [], 0.3, 6
    while t < 58.5:
        d = float(rng.choice([0.6, 0.9, 1.2, 1.8, 2.4]))
        idx = int(np.clip(idx + rng.integers(-3, 4), 0, len(scale) - 1))
        items.append((t, d + 0.03, scale[idx], int(rng.integers(70, 115))))  # legato
        t += d
    y = fluidsynth(notes(items, 40) + vibrato(0.3, t))
    return {"violin_vibrato.wav": length(peak(y), 60.0)}


def cello_low(rng) -> dict[str, np.ndarray]:
    bass = [28, 29, 31, 33, 35, 36, 38, 40]  # E1 (41.2 Hz) .. E2
    cello = [36, 38, 40, 41, 43, 45, 47, 48, 50, 52, 53, 55]
    items_b, t = [], 0.3
    for i in range(100):
        if t >= 29:
            break
        d = float(rng.choice([1.0, 1.5, 2.0]))
        note = bass[i] if i < len(bass) else int(rng.choice(bass))  # every low note once
        items_b.append((t, 0.92 * d, note, int(rng.integers(80, 120))))
        t += d
    items_c = [
        (s + 30.0, d, n, v)
        for s, d, n, v in melody(rng, 29, [0.75, 1.0, 1.5, 2.0], lambda r: r.choice(cello))
    ]
    y = fluidsynth(notes(items_b, 43) + notes(items_c, 42, channel=1))
    return {"cello_low.wav": length(peak(y), 60.0)}


def piccolo_high(rng) -> dict[str, np.ndarray]:
    low, high = [79, 81, 83, 84, 86, 88, 89], [91, 93, 95, 96, 98, 100, 101, 103, 105]
    items = melody(
        rng, 39, [0.5, 0.75, 1.0, 1.5], lambda r: r.choice(high if r.random() < 0.55 else low)
    )
    return {"piccolo_high.wav": length(peak(fluidsynth(notes(items, 72))), 40.0)}


def multi(rng) -> dict[str, np.ndarray]:
    out = {}
    for name, program, lo, hi in (
        ("clarinet", 71, 50, 79),
        ("trumpet", 56, 55, 79),
        ("oboe", 68, 58, 88),
    ):
        items = melody(rng, 19, [0.5, 0.75, 1.0, 1.5], lambda r, a=lo, b=hi: r.integers(a, b + 1))
        out[f"{name}.wav"] = length(peak(fluidsynth(notes(items, program))), 20.0)
    return out


VOICE_LINES = [
    ("en", 140, 40, "Wavetable synthesis plays the timbre of your own recordings."),
    ("en", 60, 70, "laaaa  laaaa  laaaa  looooo"),
    ("en+f3", 130, 55, "The quick brown fox jumps over the lazy dog, twice."),
    ("en", 50, 20, "maaaa  meeee  moooo  naaaa"),
    ("en+m3", 150, 50, "Breath, bow and consonants live above eight kilohertz."),
    ("en+f2", 55, 85, "aaaah  ooooh  eeeeh  aaaah"),
    ("en", 120, 30, "She sells sea shells by the sea shore in the summer."),
    ("en+f4", 60, 60, "doooo  reeee  miiii  faaaa  soooo"),
]


def voice(rng) -> dict[str, np.ndarray]:
    chunks = []
    with tempfile.TemporaryDirectory() as d:
        for i, (v, speed, pitch, text) in enumerate(VOICE_LINES):
            wav = Path(d) / f"{i}.wav"
            cmd = ["espeak-ng", "-v", v, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
            subprocess.run(cmd, check=True, capture_output=True)
            y, sr = sf.read(str(wav), dtype="float64")
            chunks += [
                soxr.resample(y, sr, RATE, quality="VHQ"),
                np.zeros(int(rng.uniform(0.8, 2.0) * RATE)),
            ]
    y = peak(np.concatenate(chunks))
    return {"voice.wav": length(y, min(len(y) / RATE, 45.0))}


def choir(rng) -> dict[str, np.ndarray]:
    items, t = [], 0.3
    while t < 39:
        d = float(rng.choice([1.0, 1.5, 2.0, 3.0]))
        items.append((t, 0.9 * d, int(rng.integers(48, 73)), int(rng.integers(70, 115))))
        t += d + (float(rng.uniform(0.3, 1.0)) if rng.random() < 0.25 else 0.0)  # a breath
    return {"choir.wav": length(peak(fluidsynth(notes(items, 52))), 40.0)}


def make_real_audio(out_dir: str | Path, *, rate: int = RATE, only=None) -> list[Path]:
    """Write each piece's folder under ``out_dir`` at ``rate``; returns the WAV paths."""
    missing = [
        what
        for what, ok in (
            ("fluidsynth", shutil.which("fluidsynth")),
            ("fluid-soundfont-gm", SOUNDFONT.is_file()),
            ("espeak-ng", shutil.which("espeak-ng")),
        )
        if not ok
    ]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: apt-get install fluidsynth fluid-soundfont-gm espeak-ng"
        )
    out, written = Path(out_dir), []
    for k, name in enumerate(PIECES):
        if only and name not in only:
            continue
        files = globals()[name](np.random.default_rng(1000 + k))
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for fname, y in files.items():
            if rate != RATE:
                y = soxr.resample(y, RATE, rate, quality="VHQ")
            sf.write(str(folder / fname), np.clip(y, -1, 1), rate, subtype="PCM_24")
            written.append(folder / fname)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="out/real")
    ap.add_argument("--rate", type=int, default=RATE)
    ap.add_argument("--only", nargs="*", choices=PIECES)
    a = ap.parse_args()
    for p in make_real_audio(a.out, rate=a.rate, only=a.only):
        print(p)
