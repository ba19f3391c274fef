"""``wms demo``: the whole pipeline on the embedded default, synthetic basic waves.

basic waves -> prepare -> train (the automatic step budget, or ``--max-steps``) ->
render (three control sources) -> evaluate (report) -> export, each step the same
``wms`` command a user would type (printed before it runs), all under one output
folder; the last line says whether the model beats both baselines.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from wms.errors import ConfigError, WMSError


def _run(argv: list[str]) -> None:
    from wms.cli import main

    print(f"\n$ wms {shlex.join(argv)}", flush=True)
    rc = main(argv)
    if rc != 0:
        raise WMSError(f"demo step failed (exit {rc}): wms {shlex.join(argv)}")


def verdict(bundle_path: Path) -> str:
    """One line: does the demo's model beat both baselines on its test blocks?"""
    from wms.bundle import load_bundle

    m = load_bundle(bundle_path).metrics
    if "beats_both_baselines" not in m:
        return "verdict: nothing was held out, so the model was not compared with the baselines"
    scores = (
        f"harmonic-bin LSD {m['model']['harm_lsd_db']:.2f} dB against "
        f"{m['baseline_mean']['harm_lsd_db']:.2f} (mean spectrum) and "
        f"{m['baseline_nearest']['harm_lsd_db']:.2f} (nearest training frame) on "
        f"{m['frames']} test frames"
    )
    if m["beats_both_baselines"]:
        return f"verdict: the model beats both baselines: {scores}"
    return f"verdict: the model does NOT beat both baselines: {scores}" + "".join(
        f"\n  {f['message']}: {f['advice']}" for f in m.get("flags", [])
    )


def run_demo(args) -> int:
    out = Path(args.out)
    if args.seconds <= 0:
        raise ConfigError(f"--seconds = {args.seconds:g} must be positive")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps = {args.max_steps} must be at least 1")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes = {args.max_minutes:g} must be positive")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    wav, run, cache = out / "basic_waves.wav", out / "run", out / "cache"
    bundle = run / "model.wms"
    _run(["basic-waves", str(wav), "--seconds", f"{args.seconds:g}", "--seed", "0"])
    _run(["prepare", str(wav), "--cache-dir", str(cache)])
    budget = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    if args.max_minutes:
        budget += ["--max-minutes", f"{args.max_minutes:g}"]
    _run(["train", str(wav), "--out", str(run), "--cache-dir", str(cache), "--force", *budget])
    _run(
        ["render", str(bundle), "--out", str(out / "fixed_220hz.wav"), "--seconds", "3"]
        + ["--f0", "220"]
    )
    _run(
        ["render", str(bundle), "--out", str(out / "lorenz.wav"), "--seconds", "8"]
        + ["--f0", "110", "--path", "lorenz"]
    )
    _run(
        ["render", str(bundle), "--out", str(out / "tour.wav"), "--seconds", "8"]
        + ["--f0", "165", "--path", "tour"]
    )
    _run(["evaluate", str(bundle), "--out", str(out / "report"), "--cache-dir", str(cache)])
    _run(["export", str(bundle), "--format", "wavetable", "--out", str(out / "export")])
    print(f"\n{verdict(bundle)}")
    print(
        f"demo done in {time.perf_counter() - t0:.0f} s. Look at:\n"
        f"  {out / 'report' / 'report.md'} (metrics, plots) and {out / 'report' / 'index.html'}\n"
        f"  {out}/fixed_220hz.wav, lorenz.wav, tour.wav (renders)\n"
        f"  {run} (bundle, config, loss curves, logs) and {out / 'export'} (wavetable bank)"
    )
    return 0
