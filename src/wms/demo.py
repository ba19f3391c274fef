"""``wms demo``: the whole pipeline on the embedded default, synthetic basic waves.

basic waves -> prepare -> train briefly -> render (three control sources) ->
evaluate (report) -> export, each step the same ``wms`` command a user would
type (printed before it runs), all under one output folder.
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


def run_demo(args) -> int:
    out = Path(args.out)
    if args.seconds <= 0 or args.max_minutes <= 0:
        raise ConfigError("--seconds and --max-minutes must be positive")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    wav, run, cache = out / "basic_waves.wav", out / "run", out / "cache"
    bundle = run / "model.wms"
    _run(["basic-waves", str(wav), "--seconds", f"{args.seconds:g}", "--seed", "0"])
    _run(["prepare", str(wav), "--cache-dir", str(cache)])
    _run(
        ["train", str(wav), "--out", str(run), "--cache-dir", str(cache)]
        + ["--max-minutes", f"{args.max_minutes:g}"]
    )
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
    print(
        f"\ndemo done in {time.perf_counter() - t0:.0f} s. Look at:\n"
        f"  {out / 'report' / 'report.md'} (metrics, plots) and {out / 'report' / 'index.html'}\n"
        f"  {out}/fixed_220hz.wav, lorenz.wav, tour.wav (renders)\n"
        f"  {run} (bundle, config, loss curves, logs) and {out / 'export'} (wavetable bank)"
    )
    return 0
