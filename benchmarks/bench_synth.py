"""Synthesis quality and speed figures vs the issue-4 targets.

    .venv/bin/python benchmarks/bench_synth.py [--bundle model.wms] [--quick]

Without ``--bundle`` the model is a seeded random-weight network of the reference size
(hidden 256, 8 MFCC controls) inside a real bundle; quality figures that must not depend
on the model (pitch, aliasing, clicks) also run on known spectra (a 39-harmonic sawtooth).
Everything runs on one core (torch and BLAS limited to one thread). The machine may be
shared: speed figures are the best of a few repetitions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from wms.analysis.audio import resample
from wms.analysis.pitch import estimate_pitch
from wms.bundle import load_bundle
from wms.config import SynthConfig, load_config
from wms.synth import measure as M
from wms.synth.controls import Curves, Trajectory, audio_trajectory, curves_trajectory
from wms.synth.engine import SynthEngine
from wms.synth.network import SynthModel
from wms.synth.render import render
from wms.synth.testing import random_bundle, saw_amplitudes, spectrum_from_harmonics

SR = 48000
SAW = spectrum_from_harmonics(saw_amplitudes())
SINE = spectrum_from_harmonics(np.r_[1.0, np.zeros(38)])
FLAT = SynthConfig(attack=0.0, decay=0.0, sustain=1.0, release=0.01)
ROWS = []
NO_RELEASE = SynthConfig(release=0.0)


def report(name: str, value: float, target: str, ok: bool, unit: str = "") -> None:
    ROWS.append((name, f"{value:.4g}{unit}", target, "ok" if ok else "MISS"))
    print(
        f"{name:<48} {value:>12.4g}{unit:<4} target {target:<10} {'ok' if ok else 'MISS'}",
        flush=True,
    )


def play(model, spectra, f0, seconds):
    e = SynthEngine(model, sample_rate=SR, config=FLAT)
    e.note_on(f0, spectra=np.atleast_2d(spectra))
    n = int(seconds * SR)
    return np.concatenate([e.process(min(8192, n - s)).copy() for s in range(0, n, 8192)])


def steady(model, f0, seconds, timbre=None):
    """Render steady controls for ``seconds`` (attack 10 ms, decay 50 ms), release cut off."""
    curves = Curves(duration=seconds)
    if timbre is not None:
        curves.points = {
            n: (np.zeros(1), np.array([v]))
            for n, v in zip(model.control_names, timbre, strict=True)
        }
    tr = curves_trajectory(curves, model, sample_rate=SR, step_seconds=768 / SR, f0=f0)
    return render(model, tr, sample_rate=SR, config=SynthConfig(attack=0.01, decay=0.05))[0][
        : int(seconds * SR)
    ]


def quality(model, quick: bool) -> None:
    f0s = [30.0, 97.3, 440.3, 1000.0, 2500.5, 3999.7] if not quick else [30.0, 3999.7]
    worst_c = max(
        abs(M.cents(M.measure_f0(steady(model, f, 1.2)[int(0.2 * SR) :], sample_rate=SR, f0=f), f))
        for f in f0s
    )
    report("pitch error, model, 30-4000 Hz (cents)", worst_c, "<= 1", worst_c <= 1)

    ripple = 0.0
    for f in (200.0, 1000.0):
        env = M.rms_envelope_db(
            steady(model, f, 1.5)[int(0.3 * SR) : int(1.4 * SR)], sample_rate=SR, f0=f
        )
        ripple = max(ripple, env.max() - env.min())
    report("10 ms RMS ripple, steady controls (dB)", ripple, "<= 0.1", ripple <= 0.1)

    # clicks: known spectra, and the model between the two ends of the control ranges
    rows = np.concatenate([np.repeat(SAW[None], 3, 0), np.repeat(SINE[None], 3, 0)] * 15)
    ratio = 0.0
    for f in (110.0, 440.0, 1000.0):
        y = play(model, rows, f, 1.4)[2000:]
        ref = max(M.max_second_difference(play(model, s, f, 0.3)[2000:]) for s in (SAW, SINE))
        ratio = max(ratio, M.max_second_difference(y) / ref)
    report("click ratio, saw<->sine every 50 ms", ratio, "<= 1.5", ratio <= 1.5)
    lo, hi = model.control_ranges[:, 0], model.control_ranges[:, 1]
    step = 768 / SR
    n = 90
    tr = Trajectory(
        np.array([lo if (k // 3) % 2 else hi for k in range(n)]),
        np.full(n, 220.0),
        np.ones(n),
        np.ones(n),
        step,
    )
    tr.validate(model, SR)
    y = render(model, tr, sample_rate=SR, config=FLAT)[0][
        int(0.2 * SR) : int((n * step - 0.02) * SR)
    ]
    ref = max(
        M.max_second_difference(steady(model, 220.0, 1.0, t)[int(0.2 * SR) : int(0.95 * SR)])
        for t in (lo, hi)
    )
    r2 = M.max_second_difference(y) / ref
    report("click ratio, model controls lo<->hi every 50 ms", r2, "<= 1.5", r2 <= 1.5)

    worst = max(
        M.inharmonic_level_db(play(model, SAW, f, 1.0)[2400:], sample_rate=SR, f0=f) for f in f0s
    )
    report("inharmonic level, steady saw (dB)", worst, "<= -70", worst <= -70)
    worst_m = max(
        M.inharmonic_level_db(steady(model, f, 1.2)[int(0.2 * SR) :], sample_rate=SR, f0=f)
        for f in f0s
    )
    report("inharmonic level, steady model (dB)", worst_m, "<= -70", worst_m <= -70)
    # sweep 100 Hz -> 4 kHz in 3 s
    t = (np.arange(int(3.0 / step)) + 1) * step
    f0 = 100 * 40 ** (t / 3.0)
    tr = Trajectory(np.zeros((t.size, model.n_timbre)), f0, np.ones(t.size), np.ones(t.size), step)
    tr.spectra = np.repeat(SAW[None], t.size + 1, 0)
    e = SynthEngine(model, sample_rate=SR, config=FLAT, source=tr)
    y = np.concatenate([e.process(768).copy() for _ in range(t.size)])
    prev = np.r_[f0[0], f0[:-1]]
    a = (np.arange(768) + 1) / 768
    track = (prev[:, None] + (f0 - prev)[:, None] * a).ravel()
    sw = M.sweep_inharmonic_db(y[3072:], track[3072:], sample_rate=SR)
    report("inharmonic level, saw sweep 100-4000 Hz (dB)", sw, "<= -70", sw <= -70)


def best_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def streaming_rate(model, voices: int, block: int, seconds: float) -> float:
    """x realtime of ``process(block)`` with ``voices`` notes held (a semitone apart from
    110 Hz), after one warm-up block."""
    e = SynthEngine(model, sample_rate=SR, config=SynthConfig(voices=voices), max_block=block)
    for i in range(voices):
        e.note_on(110.0 * 2 ** (i / 12))
    n = int(seconds * SR) // block
    e.process(block)
    t0 = time.perf_counter()
    for _ in range(n):
        e.process(block)
    return n * block / SR / (time.perf_counter() - t0)


def speed(model, quick: bool) -> None:
    seconds = 5.0 if quick else 20.0
    reps = 2 if quick else 3
    tr = curves_trajectory(
        Curves(duration=seconds), model, sample_rate=SR, step_seconds=768 / SR, f0=220.0
    )
    cfg = SynthConfig(release=0.0)
    render(model, tr, sample_rate=SR, config=cfg)  # warm-up (numba cache load)
    wall = best_time(lambda: render(model, tr, sample_rate=SR, config=cfg), reps)
    rt = (seconds + 0.05) / wall
    report("1 voice offline render (x realtime)", rt, ">= 300", rt >= 300)

    rt = max(streaming_rate(model, 1, 256, seconds) for _ in range(reps))
    report("1 voice process(256) streaming (x realtime)", rt, ">= 100", rt >= 100)
    rt = max(streaming_rate(model, 16, 256, seconds) for _ in range(reps))
    report("16 voices process(256) streaming (x realtime)", rt, ">= 20", rt >= 20)


def additive(amps: np.ndarray, f0: np.ndarray, step: int, sr: int) -> np.ndarray:
    """Plain numpy additive synthesis of harmonic amplitudes ``amps[n_steps, H]``: a
    continuous phase, each harmonic's amplitude ramped linearly over the step, harmonics
    at or above Nyquist left out (what the wavetable engine plays, without its tables)."""
    n, H = amps.shape
    h = np.arange(1, H + 1)
    ramp = np.arange(step) / step
    out = np.empty(n * step)
    phase, prev = 0.0, amps[0]
    for k in range(n):
        ph = phase + (f0[k] / sr) * np.arange(1, step + 1)
        c = np.cos((2 * np.pi) * np.outer(ph, h))  # [step, H]
        keep = h * f0[k] < sr / 2
        a0, a1 = prev * keep, amps[k] * keep
        out[k * step : (k + 1) * step] = c @ a0 + ramp * (c @ (a1 - a0))
        phase, prev = ph[-1] % 1.0, amps[k]
    return out


def table_and_additive_times(
    model: SynthModel, seconds: float, reps: int, config: SynthConfig, step: int = 768
) -> tuple[float, float]:
    """Best wall seconds of one 110 Hz voice through ``render`` and of :func:`additive` of
    the same harmonics, both from controls (the model's pass included)."""
    tr = curves_trajectory(
        Curves(duration=seconds), model, sample_rate=SR, step_seconds=step / SR, f0=110.0
    )
    render(model, tr, sample_rate=SR, config=config)  # warm-up
    t_table = best_time(lambda: render(model, tr, sample_rate=SR, config=config), reps)

    def add():
        tr.precompute(model, tr.n_steps)
        amps = model.interface.harmonics(tr.spectra)
        return additive(amps, np.asarray(tr.f0, float), step, SR)

    add()
    return t_table, best_time(add, reps)


def versus_additive(path: Path, quick: bool) -> None:
    """One voice through ``render`` against additive synthesis of the same harmonics, both
    from controls (the model's pass included), in the same run: at the model's own
    harmonic count and at 128 harmonics (a random model with K = 257 bins)."""
    seconds = 5.0 if quick else 10.0
    reps = 2 if quick else 3
    cases = [("39", path)]
    big = Path(path).with_name("h128.wms")
    cfg = load_config(None, preset="reference").replace(features={"n_bins": 257})
    cases.append(("128", random_bundle(big, hidden_size=256, config=cfg)))
    for label, p in cases:
        model = SynthModel.from_bundle(load_bundle(p))
        t_table, t_add = table_and_additive_times(model, seconds, reps, NO_RELEASE)
        ratio = t_add / t_table
        need = 3.0 if label == "39" else 8.0
        report(
            f"{label} harmonics, 1 voice: wavetable {seconds / t_table:.0f}x vs additive "
            f"{seconds / t_add:.0f}x realtime (ratio)",
            ratio,
            f">= {need:g}",
            ratio >= need,
        )


def long_render(path: Path, quick: bool) -> None:
    """Peak memory of ``wms render`` for a long fixed note and a long lorenz path at 48 kHz,
    each in its own process (``ru_maxrss`` of that child), against a 60 s render of the same
    source. The samples stream to disk in blocks; what grows with length is the per-step
    control trajectory and the model's outputs for it (16 ms steps, K values each)."""
    seconds = 600 if quick else 3600
    out = Path(path).with_name("long.wav")
    code = (
        "import resource, sys\n"
        "from wms.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    for source in (["--f0", "220"], ["--path", "lorenz"]):
        peaks = []
        for secs in (60, seconds):
            argv = ["render", str(path), "--out", str(out), *source]
            argv += ["--seconds", str(secs), "--sr", str(SR)]
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
            dt = time.perf_counter() - t
            if p.returncode != 0:
                raise SystemExit(f"render failed: {p.stderr[-2000:]}")
            peaks.append(int(p.stderr.rsplit("MAXRSS", 1)[1]) / 1024)  # KiB -> MiB
            print(
                f"  wms render {' '.join(source)} --seconds {secs}: {dt:.1f} s, peak {peaks[-1]:.0f} MiB"
            )
        out.unlink(missing_ok=True)
        label = f"{seconds // 60} min {' '.join(source)} at 48 kHz, peak RSS (MiB)"
        report(label, peaks[1], "<= 1024", peaks[1] <= 1024)
        growth = (peaks[1] - peaks[0]) / ((seconds - 60) / 3600)
        report("  growth over a 60 s render (MiB per hour)", growth, "<= 200", growth <= 200)


def transfer(bundle, model: SynthModel) -> None:
    """Timbre transfer of a synthetic melody (saw-like, vibrato, a glide, a silent gap)."""
    sr_in = 16000
    t = np.arange(int(3.0 * sr_in)) / sr_in
    f = np.where(t < 1.0, 220.0, np.where(t < 1.5, 220 * 2 ** ((t - 1.0) * 2 * 7 / 12), 330.0))
    f = f * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / sr_in
    y = sum(np.sin(h * ph) / h for h in range(1, 12)) * 0.3
    y[(t > 2.2) & (t < 2.5)] = 0.0
    y = y.astype(np.float32)
    tr = audio_trajectory(
        bundle, y, audio_rate=sr_in, model=model, sample_rate=SR, step_seconds=768 / SR
    )
    out, _ = render(model, tr, sample_rate=SR, config=bundle.config.synth)
    pc = bundle.config.pitch
    kw = dict(sample_rate=sr_in, hop_size=256, method=pc.method, fmin=pc.fmin, fmax=pc.fmax)
    f_in, v_in = estimate_pitch(y, **kw)
    f_out, v_out = estimate_pitch(resample(out[: y.size * 3], SR, sr_in)[: y.size], **kw)
    ok = (v_in > pc.voicing_threshold) & (v_out > pc.voicing_threshold)
    err = np.median(np.abs(1200 * np.log2(f_out[ok] / f_in[ok])))
    report("timbre transfer f0 error, median (cents)", err, "<= 20", err <= 20)


def with_noise(tmp: Path, quick: bool) -> None:
    """A full-band model with its noise part (``--preset fullband``: 160 harmonics, 32 noise
    bands, random weights): one voice through ``render`` (noise included) against additive
    synthesis of its harmonics alone, in the same run, and streaming 1 and 16 voices."""
    seconds = 5.0 if quick else 10.0
    reps = 2 if quick else 3
    cfg = load_config(None, preset="fullband")
    model = SynthModel.from_bundle(load_bundle(random_bundle(tmp / "fullband.wms", config=cfg)))
    fb = SynthConfig(release=0.0, phases="schroeder")
    t_table, t_add = table_and_additive_times(model, seconds, reps, fb)
    ratio = t_add / t_table
    report(
        f"fullband + {model.interface.n_noise} noise bands, 1 voice: wavetable + noise "
        f"{seconds / t_table:.0f}x vs additive of its {model.n_harmonics} harmonics "
        f"{seconds / t_add:.0f}x realtime (ratio)",
        ratio,
        ">= 8",
        ratio >= 8,
    )
    for voices, need in ((1, 100), (16, 10)):
        rt = max(streaming_rate(model, voices, 256, seconds) for _ in range(reps))
        report(
            f"fullband + noise, {voices} voice(s) process(256) streaming (x realtime)",
            rt,
            f">= {need}",
            rt >= need,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", help="a trained bundle (default: random weights, hidden 256)")
    ap.add_argument("--quick", action="store_true", help="fewer cases, shorter renders")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"), tempfile.TemporaryDirectory() as tmp:
        # the reference's layout (K = 80 bins, 39 harmonics), as the figures below are quoted
        ref = load_config(None, preset="reference")
        path = args.bundle or random_bundle(Path(tmp) / "ref.wms", config=ref)
        bundle = load_bundle(path)
        model = SynthModel.from_bundle(bundle)
        print(
            f"model: {path} hidden {model.net.hidden_size}, {model.n_timbre} controls, "
            f"K={model.n_outputs}, B={model.interface.outputs.bins_per_harmonic}; {SR} Hz, control step 16 ms, 1 thread"
        )
        quality(model, args.quick)
        speed(model, args.quick)
        versus_additive(Path(path), args.quick)
        with_noise(Path(tmp), args.quick)
        transfer(bundle, model)
        long_render(Path(path), args.quick)
    misses = [r for r in ROWS if r[3] != "ok"]
    print(
        f"\n{len(ROWS) - len(misses)}/{len(ROWS)} targets met"
        + (f"; missed: {', '.join(r[0] for r in misses)}" if misses else "")
    )


if __name__ == "__main__":
    main()
