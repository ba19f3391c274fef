"""Real instruments end to end: default `wms train`, then `wms evaluate`, per piece.

    python benchmarks/bench_real.py                 # all of real_audio.py's pieces, ~20 min
    python benchmarks/bench_real.py --only violin_vibrato flute_pauses
    python benchmarks/bench_real.py --preset reference --out runs/bench_real_reference

Each piece of ``benchmarks/real_audio.py`` (44.1 kHz; pauses, vibrato, low, high,
multi-file, voice, choir) is trained exactly as a user would, ``wms train FOLDER --out
RUN`` with no flags, then evaluated with ``wms evaluate RUN/model.wms --out RUN/eval``
(the test blocks), each in its own process. Printed as Markdown tables:

1. training: wall time, steps, test harmonic-bin LSD for the model, the nearest
   training frame and the mean spectrum, and whether the model beats both;
2. resynthesis: the multi-resolution STFT distance to the original test audio (at its
   own rate, full band) of the model, the two baselines and the oracle (the analysed
   harmonics themselves, the ceiling of the representation), and of the model and the
   oracle counting only what lies within 80 dB of the original's peak;
3. energies of the same renders: the energy above 8 kHz against the original's, and the
   noise share (energy between the harmonics of voiced frames) of the original and the
   renders.

``--evaluate-only`` evaluates the bundles of an earlier run again (after a synth change).
Wall time depends on the machine's load (run it alone); every other figure is seeded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import real_audio
from wms.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]
RESYNTH = ("model", "baseline_nearest", "baseline_mean", "oracle")


def wms(*argv: str, log: Path) -> float:
    """Run ``wms ARGV`` in its own process (output to ``log``); returns the wall seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "wms.cli", *argv],
            check=True,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_real"))
    ap.add_argument("--only", nargs="*", choices=real_audio.PIECES)
    ap.add_argument("--preset", default=None, help="train with --preset NAME (e.g. reference)")
    ap.add_argument(
        "--evaluate-only",
        action="store_true",
        help="keep each OUT/runs/PIECE/model.wms and only evaluate it again (after a synth "
        "change); its train time is then the training loop's, from the bundle's history",
    )
    args = ap.parse_args()
    out = Path(args.out)
    pieces = args.only or list(real_audio.PIECES)
    real_audio.make_real_audio(out / "audio", only=pieces)
    train_rows, resynth_rows, energy_rows = [], [], []
    for name in pieces:
        run = out / "runs" / name
        run.parent.mkdir(parents=True, exist_ok=True)
        cache = ["--cache-dir", str(out / "cache")]
        if args.evaluate_only:
            seconds = load_bundle(run / "model.wms").history[-1]["seconds"]
        else:
            seconds = wms(
                "train",
                str(out / "audio" / name),
                "--out",
                str(run),
                "--force",
                *cache,
                *(["--preset", args.preset] if args.preset else []),
                log=out / f"{name}.train.log",
            )
        wms(
            "evaluate",
            str(run / "model.wms"),
            "--out",
            str(run / "eval"),
            *cache,
            log=out / f"{name}.evaluate.log",
        )
        m = json.loads((run / "eval" / "metrics.json").read_text())
        steps = load_bundle(run / "model.wms").history[-1]["step"]
        lsd = {k: m[k]["harm_lsd_db"] for k in ("model", "baseline_nearest", "baseline_mean")}
        train_rows.append(
            f"| {name} | {seconds / 60:.1f} | {steps} | **{lsd['model']:.2f}** | "
            f"{lsd['baseline_nearest']:.2f} | {lsd['baseline_mean']:.2f} | "
            f"{'yes' if m['beats_both_baselines'] else '**no**'} |"
        )
        r = m["resynthesis"]["stft_distance"]
        resynth_rows.append(
            f"| {name} | {m['resynthesis']['sample_rate']} | "
            + " | ".join(f"{r[k]['total']:.3f}" for k in RESYNTH)
            + " | "
            + " | ".join(f"{r[k]['total_floored']:.3f}" for k in ("model", "oracle"))
            + " |"
        )
        e = m["resynthesis"]["energy"]
        energy_rows.append(
            f"| {name} | "
            + " | ".join(f"{e[k]['high_db']:+.1f}" for k in ("model", "oracle"))
            + f" | {100 * e['original']['noise_share']:.2f} | "
            + " | ".join(f"{100 * e[k]['noise_share']:.2f}" for k in ("model", "oracle"))
            + " |"
        )
        print(train_rows[-1], flush=True)
    print("\n| audio | train (min) | steps | model | nearest frame | mean spectrum | beats both |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(train_rows))
    print(
        "\n| audio | rate (Hz) | model | nearest frame | mean spectrum | oracle "
        "| model, within 80 dB | oracle, within 80 dB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(resynth_rows))
    print(
        "\n| audio | above 8 kHz vs the original (dB): model | oracle | noise share (%): "
        "original | model | oracle |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(energy_rows))


if __name__ == "__main__":
    main()
