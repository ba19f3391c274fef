"""Speed of the browser engine (issue 12) vs the targets, beside the Python engine.

    .venv/bin/python benchmarks/bench_web.py [--bundle model.wms] [--seconds 10] [--repeat 3]

Headless Chromium (Debian's, as in the tests) renders through ``window.wms.renderOffline``:
an OfflineAudioContext running the instrument's AudioWorklet, the same code as the live page.
Timed in the page from the call to the resolved samples (context, worklet module, engine
set-up included). The Python engine renders the same input in the same run (one core,
``wms.synth.render.render``). Without ``--bundle`` the model is a seeded random-weight network
of the reference size (hidden 256, 8 MFCC controls). Figures are the median of ``--repeat``
runs; the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mido

from wms.bundle import load_bundle
from wms.export.web import export_web, headless_chromium, render_in_browser
from wms.synth import controls as C
from wms.synth.network import SynthModel
from wms.synth.render import render
from wms.synth.testing import random_bundle

SR = 48000
CHORD = (48, 52, 55, 59, 62, 65, 69, 72)


def report(name: str, value: float, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("ok" if ok else "MISS")
    print(f"{name:<58} {value:>10.1f}   {target:<10} {verdict}", flush=True)


def chord_midi(path: Path, seconds: float) -> Path:
    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks per second
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    for n in CHORD:
        tr.append(mido.Message("note_on", note=n, velocity=90, time=0))
    for k, n in enumerate(CHORD):
        tr.append(mido.Message("note_off", note=n, time=round(seconds * 960) if k == 0 else 0))
    mid.save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="a trained model.wms (default: random, hidden 256)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_web_"))
    path = Path(args.bundle) if args.bundle else random_bundle(tmp / "model.wms", hidden_size=256)
    bundle = load_bundle(path)
    export_web(bundle, tmp / "web")
    model = SynthModel.from_bundle(bundle)
    cfg = bundle.config.synth
    sec = args.seconds
    print(
        f"model: hidden {bundle.model.hidden_size}, {model.n_timbre} controls; {sec:g} s notes "
        f"at {SR} Hz (+ {cfg.release:g} s release); median of {args.repeat}"
    )

    one = {"f0": 220, "seconds": sec, "sampleRate": SR}
    notes = [
        {"note": n, "velocity": 90 / 127, "start": 0, "end": round(sec * 960) / 960} for n in CHORD
    ]
    eight = {"notes": notes, "sampleRate": SR}

    driver = headless_chromium(tmp / "profile")
    driver.set_script_timeout(600)
    try:
        driver.get((tmp / "web" / "index.html").as_uri())
        time.sleep(0.5)
        render_in_browser(driver, {"f0": 220, "seconds": 1.0})  # warm the JIT
        js = {}
        for label, opts, direct in (
            ("one voice, OfflineAudioContext + AudioWorklet", one, False),
            ("8 voices, OfflineAudioContext + AudioWorklet", eight, False),
            ("one voice, same engine on the page thread", one, True),
            ("one voice, plain-JS network (no WebAssembly SIMD)", {**one, "simd": False}, False),
        ):
            runs = []
            for _ in range(args.repeat):
                y, ms = render_in_browser(driver, opts, direct=direct)
                runs.append(len(y) / SR / (ms / 1000.0))
            js[label] = statistics.median(runs)
    finally:
        driver.quit()

    # the Python engine, same inputs (one core)
    step_s = round(cfg.control_interval * SR) / SR
    midi = chord_midi(tmp / "chord.mid", sec)

    def py_one(fast: bool) -> float:
        src = C.curves_trajectory(
            C.fixed_curves({}, sec), model, sample_rate=SR, step_seconds=step_s, f0=220.0
        )
        t = time.perf_counter()
        y, _ = render(model, src, sample_rate=SR, config=cfg, fast=fast)
        return len(y) / SR / (time.perf_counter() - t)

    def py_eight() -> float:
        src = C.MidiSource(midi, model, cfg)
        t = time.perf_counter()
        y, _ = render(model, src, sample_rate=SR, config=cfg)
        return len(y) / SR / (time.perf_counter() - t)

    py_one(True)  # numba kernels loaded
    py = {
        "one voice, streaming (GRU step by step, like the browser)": statistics.median(
            py_one(False) for _ in range(args.repeat)
        ),
        "one voice, offline fast path (GRU batched over time)": statistics.median(
            py_one(True) for _ in range(args.repeat)
        ),
        "8 voices, streaming": statistics.median(py_eight() for _ in range(args.repeat)),
    }

    print("\nbrowser (headless Chromium), x realtime")
    k1, k8, kd, kj = list(js)
    report(k1, js[k1], ">= 50x", js[k1] >= 50)
    report(k8, js[k8], ">= 4x", js[k8] >= 4)
    report(kd, js[kd])
    report(kj, js[kj])
    print("\nPython engine (wms.synth), x realtime")
    for k, v in py.items():
        report(k, v)
    p1, _, p8 = list(py)
    print("\nbrowser / Python (same renders, streaming)")
    report("one voice", js[k1] / py[p1])
    report("8 voices", js[k8] / py[p8])


if __name__ == "__main__":
    main()
