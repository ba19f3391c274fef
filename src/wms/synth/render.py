"""Offline rendering and the ``wms render`` command.

:func:`render` drives a :class:`~wms.synth.engine.SynthEngine` with a control source in
large blocks — the same engine and ``process()`` that a live host calls in small blocks.
For single-voice sources (:class:`~wms.synth.controls.Trajectory`) it first runs the
network over the whole control sequence in one vectorised pass (the offline fast path);
tests check that this gives the same samples as stepping the GRU block by block.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from wms.config import Config, SynthConfig, load_config
from wms.errors import AudioError, ControlError, OutputError
from wms.io import refuse_to_replace_inputs
from wms.synth import controls as C
from wms.synth.engine import SynthEngine, check_sample_rate
from wms.synth.network import SynthModel

#: Seconds rendered after the controls end, on top of ``synth.release``.
TAIL_SECONDS = 0.05
#: Renders longer than this (seconds of audio) show a progress bar.
PROGRESS_SECONDS = 20.0
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


@dataclass
class RenderInfo:
    """What a render produced: seconds of audio, peak (linear), rate, wall time of the
    rendering (model pass + engine, after engine set-up), samples that hit the safety
    limiter."""

    seconds: float
    peak: float
    sample_rate: int
    wall_seconds: float
    limited: int

    @property
    def realtime_factor(self) -> float:
        return self.seconds / max(self.wall_seconds, 1e-9)


def render(
    model: SynthModel,
    source,
    *,
    sample_rate: int,
    config: SynthConfig,
    fast: bool = True,
    block: int = 8192,
    progress: bool = False,
) -> tuple[np.ndarray, RenderInfo]:
    """Render ``source`` to a mono float32 signal.

    Args:
        model: the synth model (:meth:`SynthModel.from_bundle`).
        source: a :class:`~wms.synth.controls.Trajectory` or
            :class:`~wms.synth.controls.MidiSource` (anything with ``duration`` and
            ``at_step(engine, k)``).
        sample_rate: output rate in Hz.
        config: synth settings.
        fast: precompute a Trajectory's model outputs in one pass (same samples).
        block: samples per ``process()`` call.
        progress: show a tqdm bar for long renders.

    Returns:
        ``(y[n], RenderInfo)``; ``n`` covers the source, the release and a short tail.

    Raises:
        ControlError: unsupported rate or bad controls.
    """
    sample_rate = check_sample_rate(sample_rate)
    # The matrix products are tiny: extra BLAS threads only add overhead (and contend
    # with other processes), so the render runs on one core.
    with threadpool_limits(1, user_api="blas"):
        return _render(model, source, sample_rate, config, fast, block, progress)


def _render(model, source, sample_rate, config, fast, block, progress):
    engine = SynthEngine(
        model, sample_rate=sample_rate, config=config, source=source, max_block=block
    )
    t0 = time.perf_counter()  # after set-up (numba kernels loaded): the rendering itself
    total = int(math.ceil((source.duration + config.release + TAIL_SECONDS) * sample_rate))
    if fast and isinstance(source, C.Trajectory):
        n_steps = total // engine.step_len + 2
        source.precompute(model, n_steps, engine.glide_coef, engine.predict_sequence)
    y = np.empty(total, np.float32)
    bar = None
    if progress and total > PROGRESS_SECONDS * sample_rate:
        from tqdm import tqdm

        bar = tqdm(total=round(total / sample_rate, 1), unit="s", desc="render", leave=False)
    for start in range(0, total, block):
        n = min(block, total - start)
        y[start : start + n] = engine.process(n)
        if bar is not None:
            bar.update(round(n / sample_rate, 3))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    info = RenderInfo(
        seconds=total / sample_rate,
        peak=float(np.max(np.abs(y))) if total else 0.0,
        sample_rate=sample_rate,
        wall_seconds=wall,
        limited=engine.samples_limited,
    )
    return y, info


def render_config(bundle, config_file: str | None, overrides: list[str]) -> Config:
    """The bundle's config with a config file and ``--set`` overrides applied.

    Only ``synth.*`` may change at render time (the rest describes how the model was
    trained); anything else raises ConfigError.
    """
    return load_config(
        config_file, overrides, base=(str(bundle.path), bundle.config.to_dict()), only=("synth",)
    )


def build_source(args, bundle, model: SynthModel, cfg: Config, sample_rate: int):
    """The control source chosen by the ``wms render`` arguments."""
    step_s = max(1, round(cfg.synth.control_interval * sample_rate)) / sample_rate
    chosen = [n for n in ("controls", "midi", "audio", "path") if getattr(args, n, None)]
    if len(chosen) > 1:
        raise ControlError(f"choose one control source, got {', '.join('--' + n for n in chosen)}")
    fixed = C.parse_control_args(args.control)
    f0 = fixed.pop("f0", None) if args.f0 is None else args.f0
    if f0 is not None and not (0 < f0 < sample_rate / 2):
        raise ControlError(
            f"--f0 {f0} Hz is out of range: need 0 < f0 < {sample_rate / 2:g} "
            f"(half the output rate {sample_rate} Hz)"
        )
    if args.seconds is not None and not (math.isfinite(args.seconds) and 0 < args.seconds <= 86400):
        raise ControlError(f"--seconds {args.seconds} must be a positive number of at most 86400")
    if not chosen or args.controls:
        base = C.read_controls_file(args.controls) if args.controls else None
        curves = (
            C.fixed_curves(fixed, args.seconds or (base.end_time() if base else 2.0), base)
            if fixed or base is None or args.seconds
            else base
        )
        return C.curves_trajectory(
            curves, model, sample_rate=sample_rate, step_seconds=step_s, f0=f0
        )
    if fixed:
        raise ControlError("--control applies to fixed renders and --controls files only")
    if args.f0 is not None and not args.path:
        raise ControlError("--f0 applies to fixed renders, --controls files and --path only")
    if args.midi:
        return C.MidiSource(args.midi, model, cfg.synth, seconds=args.seconds)
    if args.audio:
        import soundfile as sf

        from wms.analysis.audio import read_audio

        if not Path(args.audio).is_file():
            raise AudioError(args.audio, "no such file")
        try:
            audio_rate = int(sf.info(str(args.audio)).samplerate)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise AudioError(args.audio, f"unreadable audio ({e})") from None
        y = read_audio(args.audio, audio_rate)
        if args.seconds:
            y = y[: int(args.seconds * audio_rate)]
        return C.audio_trajectory(
            bundle,
            y,
            audio_rate=audio_rate,
            model=model,
            sample_rate=sample_rate,
            step_seconds=step_s,
            where=str(args.audio),
            voicing_threshold=cfg.pitch.voicing_threshold,
        )
    seconds = args.seconds or 10.0
    if args.path == "lorenz":
        return C.lorenz_trajectory(
            model,
            seconds=seconds,
            f0=f0,
            sample_rate=sample_rate,
            step_seconds=step_s,
            seed=args.seed,
        )
    return C.tour_trajectory(
        model, seconds=seconds, f0=f0, sample_rate=sample_rate, step_seconds=step_s, seed=args.seed
    )


def run_render(args) -> int:
    """``wms render BUNDLE --out OUT.wav [...]`` (see ``wms render --help``)."""
    from wms.analysis.audio import write_audio
    from wms.bundle import load_bundle

    out_path = Path(args.out)
    refuse_to_replace_inputs(
        [out_path], [args.bundle, args.audio, args.midi, args.controls, args.config]
    )
    if out_path.suffix.lower() not in (".wav", ".wave"):
        raise OutputError(args.out, "--out must name a .wav file")
    if out_path.is_dir():
        raise OutputError(args.out, "--out is a folder; give a .wav file name")
    bundle = load_bundle(args.bundle)
    cfg = render_config(bundle, args.config, args.overrides)
    sr = check_sample_rate(args.sr if args.sr is not None else cfg.synth.sample_rate)
    model = SynthModel.from_bundle(bundle, out_of_range=cfg.synth.out_of_range)
    source = build_source(args, bundle, model, cfg, sr)
    y, info = render(model, source, sample_rate=sr, config=cfg.synth, progress=True)
    out = write_audio(Path(args.out), y, sr, _SUBTYPES[args.format], what="render")
    peak_db = 20 * math.log10(max(info.peak, 1e-12))
    kind = type(source).__name__
    print(
        f"rendered {out}: {info.seconds:.2f} s at {sr} Hz ({kind}), peak {peak_db:.1f} dBFS, "
        f"{info.realtime_factor:.0f}x realtime"
        + (f", {info.limited} samples soft-limited" if info.limited else "")
    )
    return 0
