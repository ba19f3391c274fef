"""A mixed-rate corpus: are a low-rate file's missing highs learnt from the other files?

    python benchmarks/bench_lowrate.py [--out runs/bench_lowrate]

The ``multi`` piece of ``benchmarks/real_audio.py`` (clarinet, trumpet, oboe; 44.1 kHz), with
the oboe resampled to 16 kHz (so its frames align with the 44.1 kHz original). Trained with
the default (full band, ``--preset fullband`` in wms 0.2) twice: with the low-rate mask
(``wms train`` as it is) and with the oboe's empty highs learnt as silence (the mask switched
off in-process). The oboe's test frames are then scored against its 44.1 kHz original: harmonic LSD, and the predicted energy
above 7.2 kHz (0.9 of the 16 kHz file's Nyquist) against the original's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

import real_audio
from wms.analysis.features import bins_below
from wms.analysis.prepare import prepare
from wms.bundle import load_bundle
from wms.cli import main as wms
from wms.evaluation.metrics import log_spectral_distance
from wms.training import train as train_mod

ROOT = Path(__file__).resolve().parents[1]
LOW_RATE, BAND_HZ = 16000, 7200.0


def score(run: Path, mix: Path, original: Path, cache: Path) -> dict:
    b = load_bundle(run / "model.wms")
    cfg = b.config
    lo = prepare(mix / "oboe.wav", cfg, cache_dir=cache, jobs=1, progress=False).files[0].analysis
    hi = prepare(original, cfg, cache_dir=cache, jobs=1, progress=False).files[0].analysis
    f = next(f for f in b.data["files"] if Path(f["path"]).name == "oboe.wav")
    rows = np.concatenate([np.arange(a, e) for a, e in f["test"]])
    x = b.interface.inputs(b.input_map.controls(lo.mfcc), lo.f0, lo.voicedness)
    pred, true = b.predict(x)[rows], np.asarray(hi.target)[rows]
    h = b.interface.outputs.harmonic_index
    keep = bins_below(lo.f0, lo.voicedness, cfg, nyquist=BAND_HZ)[rows]
    above = np.arange(pred.shape[1])[None, :] >= keep[:, None]
    v = np.asarray(lo.voicedness)[rows] > 0.5

    def power(a):
        return float(((np.expm1(np.maximum(a, 0)) ** 2) * above)[v].sum())

    return {
        "harm_lsd_db": log_spectral_distance(pred[v][:, h], true[v][:, h]),
        "energy_above_db": 10 * np.log10(power(pred) / power(true)),
        "test_frames": int(len(rows)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_lowrate"))
    args = ap.parse_args()
    out = Path(args.out)
    real_audio.make_real_audio(out / "audio", only=["multi"])
    src, mix, cache = out / "audio" / "multi", out / "mix", out / "cache"
    mix.mkdir(parents=True, exist_ok=True)
    for name in ("clarinet", "trumpet"):
        shutil.copy(src / f"{name}.wav", mix / f"{name}.wav")
    y, sr = sf.read(src / "oboe.wav", dtype="float32")
    sf.write(mix / "oboe.wav", soxr.resample(y, sr, LOW_RATE, quality="VHQ"), LOW_RATE, "PCM_24")
    results = {}
    bands = train_mod.low_rate_bands
    for mode in ("masked", "as silence"):
        if mode == "as silence":
            train_mod.low_rate_bands = lambda a, r, c: [None] * len(a)
        run = out / mode.replace(" ", "_")
        argv = ["train", str(mix), "--out", str(run), "--force"]
        assert wms([*argv, "--cache-dir", str(cache), "--jobs", "1"]) == 0
        results[mode] = score(run, mix, src / "oboe.wav", cache)
        print(mode, json.dumps(results[mode]), flush=True)
    train_mod.low_rate_bands = bands
    print("\n| oboe at 16 kHz, test frames vs its 44.1 kHz original | harmonic LSD (dB) | "
          f"energy above {BAND_HZ / 1000:g} kHz |")  # fmt: skip
    print("|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['harm_lsd_db']:.2f} | {r['energy_above_db']:+.1f} dB |")


if __name__ == "__main__":
    main()
