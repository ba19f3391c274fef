"""Offline rendering and the ``wms render`` command.

:func:`render` drives a :class:`~wms.synth.engine.SynthEngine` with a control source in
large blocks — the same engine and ``process()`` that a live host calls in small blocks.
For single-voice sources (:class:`~wms.synth.controls.Trajectory`) it first runs the
network over the whole control sequence in one vectorised pass (the offline fast path);
tests check that this gives the same samples as stepping the GRU block by block.

:func:`render_to_file` is what ``wms render`` uses: it streams the samples to disk in blocks
and applies the loudness policy (:data:`NORMALIZE`) in a second pass over the file. What grows
with length is the per-step control trajectory and, for one voice, the network's outputs
over it (16 ms steps, K values each: about 130 MB per hour); an hour at 48 kHz peaks at about
510 MB (``benchmarks/bench_synth.py``).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from wms.config import Config, SynthConfig, load_config
from wms.errors import AudioError, ControlError, OutputError
from wms.io import atomic_target, refuse_to_replace_inputs
from wms.progress import progress_bar
from wms.synth import controls as C
from wms.synth.engine import SynthEngine, check_sample_rate
from wms.synth.network import SynthModel

#: Seconds rendered after the controls end, on top of ``synth.release``.
TAIL_SECONDS = 0.05
#: Renders longer than this (seconds of audio) show a progress bar.
PROGRESS_SECONDS = 20.0
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
#: A RIFF/WAVE file's sizes are 32-bit: at most this many bytes of samples.
WAV_MAX_BYTES = 2**32 - 2**20
#: Loudness policies of ``wms render --normalize``:
#: ``loudness`` (default): the RMS of the render's sounding parts (20 ms blocks within 60 dB
#: of its loudest) is set to :data:`TARGET_RMS_DB`, the peak kept at or below
#: :data:`PEAK_CEILING_DB`; ``peak``: the peak is set to PEAK_CEILING_DB; ``none``: the engine's
#: own level (tables at -12 dBFS RMS times level, envelope, velocity, ``synth.gain``).
#: ``--gain DB`` is added after. A render whose sounding parts are below
#: :data:`SILENT_DB` is never amplified (there is nothing to normalise, only noise).
NORMALIZE = ("loudness", "peak", "none")
TARGET_RMS_DB = -20.0
PEAK_CEILING_DB = -1.0
SILENT_DB = -70.0
#: ``--gain`` in dB must lie in this range (beyond +40 dB every render is clipped noise).
GAIN_RANGE_DB = (-120.0, 40.0)
_LEVEL_BLOCK_SECONDS = 0.02
_SOUNDING_RANGE_DB = 60.0


@dataclass
class RenderInfo:
    """What a render produced: seconds of audio, peak (linear, after any normalisation),
    rate, wall time of the rendering (model pass + engine, after engine set-up), samples
    that hit the safety limiter, and the loudness policy's gain (dB) and RMS of the sounding
    parts (dBFS) when it was applied."""

    seconds: float
    peak: float
    sample_rate: int
    wall_seconds: float
    limited: int
    gain_db: float = 0.0
    rms_db: float | None = None

    @property
    def realtime_factor(self) -> float:
        return self.seconds / max(self.wall_seconds, 1e-9)


def render_length(source, config: SynthConfig, sample_rate: int) -> int:
    """Samples a render of ``source`` holds: the controls, the release and a short tail."""
    return int(math.ceil((source.duration + config.release + TAIL_SECONDS) * sample_rate))


def _engine(model, source, sample_rate, config, *, fast: bool, block: int):
    """The engine driven by ``source``, and for a Trajectory its model outputs precomputed
    (``fast``); returns ``(engine, total samples)``."""
    engine = SynthEngine(
        model, sample_rate=sample_rate, config=config, source=source, max_block=block
    )
    total = render_length(source, config, sample_rate)
    if fast and isinstance(source, C.Trajectory):
        n_steps = total // engine.step_len + 2
        source.precompute(model, n_steps, engine.glide_coef, engine.predict_sequence)
    return engine, total


def _blocks(engine: SynthEngine, total: int, *, block: int, progress: bool) -> Iterator:
    """The render's blocks, each the engine's float32 view (valid until the next one)."""
    sr = engine.sample_rate
    bar = progress_bar(
        total=round(total / sr),
        unit="s",
        desc="render",
        enabled=progress and total > PROGRESS_SECONDS * sr,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} s [{elapsed}<{remaining}]",
    )
    try:
        for start in range(0, total, block):
            n = min(block, total - start)
            yield engine.process(n)
            bar.update(n / sr)
    finally:
        bar.close()


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
    """Render ``source`` to a mono float32 signal in memory, at the engine's own level.

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
        ConfigError: unsupported rate. ControlError: bad controls.
    """
    sample_rate = check_sample_rate(sample_rate)
    # The matrix products are tiny: extra BLAS threads only add overhead (and contend
    # with other processes), so the render runs on one core.
    with threadpool_limits(1, user_api="blas"):
        engine, total = _engine(model, source, sample_rate, config, fast=fast, block=block)
        t0 = time.perf_counter()  # after set-up (numba kernels loaded): the rendering itself
        y = np.empty(total, np.float32)
        at = 0
        for out in _blocks(engine, total, block=block, progress=progress):
            y[at : at + len(out)] = out
            at += len(out)
        wall = time.perf_counter() - t0
    info = RenderInfo(
        seconds=total / sample_rate,
        peak=float(np.max(np.abs(y))) if total else 0.0,
        sample_rate=sample_rate,
        wall_seconds=wall,
        limited=engine.samples_limited,
    )
    return y, info


def check_render_size(n_samples: int, sample_rate: int, subtype: str) -> None:
    """Refuse, before any work, a render whose WAV file could not hold it.

    Raises:
        ControlError: the samples need more than a WAV file's 4 GB.
    """
    need = n_samples * _BYTES[subtype]
    if need > WAV_MAX_BYTES:
        hours = n_samples / sample_rate / 3600
        fits = WAV_MAX_BYTES / _BYTES[subtype] / sample_rate / 3600
        raise ControlError(
            f"a {hours:.1f} h render at {sample_rate} Hz needs {need / 2**30:.1f} GiB, more "
            f"than a WAV file holds (4 GiB: {fits:.1f} h in this format); render shorter "
            "pieces, a lower --sr or --format 16"
        )


def render_to_file(
    model: SynthModel,
    source,
    path: str | Path,
    *,
    sample_rate: int,
    config: SynthConfig,
    subtype: str = "PCM_24",
    normalize: str = "loudness",
    gain_db: float = 0.0,
    progress: bool = False,
    block: int = 8192,
) -> RenderInfo:
    """Render ``source`` to a WAV file block by block, then apply the loudness policy.

    The engine's blocks go to a float32 scratch file next to ``path`` while the level of
    each 20 ms block is measured; a second pass scales them by the policy's gain and writes
    the WAV atomically. Memory stays constant whatever the length.

    Raises:
        ControlError: bad controls, or a render longer than a WAV file holds (before any
            work). OutputError: the file cannot be written.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize = {normalize!r} is not one of {NORMALIZE}")
    sample_rate = check_sample_rate(sample_rate)
    total = render_length(source, config, sample_rate)
    check_render_size(total, sample_rate, subtype)
    path = Path(path)
    lb = max(1, round(_LEVEL_BLOCK_SECONDS * sample_rate))
    levels: list[float] = []  # mean square of each 20 ms block
    peak, carry = 0.0, np.zeros(0, np.float32)
    with atomic_target(path) as final, tempfile.TemporaryFile(dir=path.parent) as scratch:
        with threadpool_limits(1, user_api="blas"):
            engine, _ = _engine(model, source, sample_rate, config, fast=True, block=block)
            t0 = time.perf_counter()
            for out in _blocks(engine, total, block=block, progress=progress):
                scratch.write(out.tobytes())
                peak = max(peak, float(np.max(np.abs(out))) if len(out) else 0.0)
                carry = np.concatenate([carry, out])
                n = len(carry) // lb * lb
                if n:
                    sq = np.square(carry[:n].reshape(-1, lb), dtype=np.float64)
                    levels += sq.mean(axis=1).tolist()
                    carry = carry[n:]
            wall = time.perf_counter() - t0
        gain, rms_db = _policy_gain(levels, peak, normalize)
        gain *= 10.0 ** (gain_db / 20.0)
        scratch.seek(0)
        with sf.SoundFile(str(final), "w", sample_rate, 1, subtype, format="WAV") as f:
            from wms import __version__

            f.software = f"wms {__version__} render"
            while chunk := scratch.read(4 * block):
                x = np.frombuffer(chunk, np.float32) * np.float32(gain)
                f.write(np.clip(x, -1.0, 1.0))
    return RenderInfo(
        seconds=total / sample_rate,
        peak=peak * gain,
        sample_rate=sample_rate,
        wall_seconds=wall,
        limited=engine.samples_limited,
        gain_db=20 * math.log10(gain) if gain > 0 else float("-inf"),
        rms_db=rms_db,
    )


def _policy_gain(levels: list[float], peak: float, normalize: str) -> tuple[float, float | None]:
    """The loudness policy's gain (linear) and the sounding parts' RMS (dBFS) it measured."""
    ms = np.asarray(levels, dtype=np.float64)
    loud = float(ms.max()) if ms.size else 0.0
    if loud <= 0.0:
        return 1.0, None
    sounding = ms[ms >= loud * 10 ** (-_SOUNDING_RANGE_DB / 10)]
    rms_db = 10 * math.log10(float(sounding.mean()))
    if normalize == "none" or rms_db < SILENT_DB:
        return 1.0, rms_db  # a near-silent render is never amplified into noise
    ceiling = 10 ** (PEAK_CEILING_DB / 20) / peak
    if normalize == "peak":
        return ceiling, rms_db
    return min(10 ** ((TARGET_RMS_DB - rms_db) / 20), ceiling), rms_db


def render_config(bundle, config_file: str | None, overrides: list[str]) -> Config:
    """The bundle's config with a config file and ``--set`` overrides applied.

    Only ``synth.*`` may change at render time (the rest describes how the model was
    trained); anything else raises ConfigError.
    """
    return load_config(
        config_file, overrides, base=(str(bundle.path), bundle.config.to_dict()), only=("synth",)
    )


def build_source(args, bundle, model: SynthModel, cfg: Config, sample_rate: int):
    """The control source chosen by the ``wms render`` arguments.

    Every duration (``--seconds``, a controls file's last time, a MIDI file's length) is
    checked against what a WAV file can hold before any array is built.
    """
    step_s = max(1, round(cfg.synth.control_interval * sample_rate)) / sample_rate
    subtype = _SUBTYPES[getattr(args, "format", "24")]

    def fits(seconds: float, where: str) -> float:
        n = math.ceil((seconds + cfg.synth.release + TAIL_SECONDS) * sample_rate)
        try:
            check_render_size(n, sample_rate, subtype)
        except ControlError as e:
            raise ControlError(f"{where}: {e}") from None
        return seconds

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
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ControlError(f"--seconds {args.seconds} must be a positive number")
    if args.seconds is not None:
        fits(args.seconds, f"--seconds {args.seconds:g}")
    if not chosen or args.controls:
        base = C.read_controls_file(args.controls) if args.controls else None
        if base is not None and not args.seconds:
            fits(base.end_time(), f"{args.controls} (last time {base.end_time():g} s)")
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
        source = C.MidiSource(args.midi, model, cfg.synth, seconds=args.seconds)
        fits(source.duration, f"{args.midi} ({source.duration / 3600:.1f} h long)")
        return source
    if args.audio:
        import soundfile as sf

        from wms.analysis.audio import read_audio

        if not Path(args.audio).is_file():
            raise AudioError(args.audio, "no such file")
        try:
            info = sf.info(str(args.audio))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise AudioError(args.audio, f"unreadable audio ({e})") from None
        audio_rate = int(info.samplerate)
        if not args.seconds:  # the file's own length, checked before it is read
            fits(info.duration, f"{args.audio} ({info.duration / 3600:.1f} h long)")
        y = read_audio(args.audio, audio_rate)
        if args.seconds:
            y = y[: int(args.seconds * audio_rate)]
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        if peak == 0.0 or 20 * math.log10(peak) < cfg.audio.silence_db:
            print(
                f"warning: {args.audio} is silent (peak below audio.silence_db = "
                f"{cfg.audio.silence_db:g} dBFS): the render will be silent too",
                file=sys.stderr,
            )
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
    from wms.bundle import load_bundle

    lo, hi = GAIN_RANGE_DB
    if not (math.isfinite(args.gain) and lo <= args.gain <= hi):
        raise ControlError(f"--gain {args.gain:g} dB must be a number from {lo:g} to {hi:g}")
    out_path = Path(args.out)
    refuse_to_replace_inputs(
        [out_path], [args.bundle, args.audio, args.midi, args.controls, args.config]
    )
    if out_path.suffix.lower() not in (".wav", ".wave"):
        raise OutputError(args.out, "--out must name a .wav file")
    if out_path.is_dir():
        raise OutputError(args.out, "--out is a folder; give a .wav file name")
    bundle = load_bundle(args.bundle)
    for flag in bundle.metrics.get("flags", []):
        # the training's verdict travels with the bundle: say it before the user listens
        print(f"warning: {bundle.path}: {flag['message']}. {flag['advice']}", file=sys.stderr)
    cfg = render_config(bundle, args.config, args.overrides)
    sr = check_sample_rate(args.sr if args.sr is not None else cfg.synth.sample_rate)
    model = SynthModel.from_bundle(bundle, out_of_range=cfg.synth.out_of_range)
    source = build_source(args, bundle, model, cfg, sr)
    asked = not (args.audio or args.path or args.midi)  # the user's own control values
    for outside in (
        pitch_outside(source, bundle.interface),
        controls_outside(source, bundle.interface, cfg.synth.out_of_range) if asked else None,
    ):
        if outside:
            print(f"warning: {bundle.path}: {outside}", file=sys.stderr)
    info = render_to_file(
        model,
        source,
        out_path,
        sample_rate=sr,
        config=cfg.synth,
        subtype=_SUBTYPES[args.format],
        normalize=args.normalize,
        gain_db=args.gain,
        progress=True,
    )
    peak_db = 20 * math.log10(max(min(info.peak, 1.0), 1e-12))
    if info.peak > 1.0:
        print(
            f"warning: --gain {args.gain:+g} dB takes the peak to "
            f"{20 * math.log10(info.peak):+.1f} dBFS: every sample above 0 dBFS is clipped",
            file=sys.stderr,
        )
    level = (
        f"sounding parts {info.rms_db + info.gain_db:.1f} dBFS RMS"
        if info.rms_db is not None
        else "silent"
    )
    print(
        f"rendered {out_path}: {info.seconds:.2f} s at {sr} Hz ({_describe(args)}), "
        f"{level}, peak {peak_db:.1f} dBFS ({args.normalize}, gain {info.gain_db:+.1f} dB), "
        f"{info.realtime_factor:.0f}x realtime"
        + (f", {info.limited} samples soft-limited" if info.limited else "")
    )
    if info.rms_db is not None and info.rms_db < SILENT_DB:
        print(
            f"warning: the render is silent (sounding parts at {info.rms_db:.0f} dBFS): "
            "check the controls, the input level, or whether the model was trained",
            file=sys.stderr,
        )
    return 0


#: Pitches this far (semitones) beyond the trained f0 range count as outside it.
PITCH_MARGIN_SEMITONES = 2.0


def pitch_outside(source, interface) -> str | None:
    """What a render plays outside the pitch range the model was trained on
    (``interface.f0_range``, its 1st-99th percentile, widened by
    :data:`PITCH_MARGIN_SEMITONES`), or ``None``: the share of voiced steps (or of notes, for
    MIDI) and how far it goes."""
    from wms.synth.engine import midi_to_hz

    if isinstance(source, C.MidiSource):
        f = np.array([midi_to_hz(e.a) for e in source.events if e.kind == "on"], np.float64)
        what = "notes"
    elif isinstance(source, C.Trajectory):
        keep = (np.asarray(source.voicedness) >= 0.5) & (np.asarray(source.level) > 0)
        f, what = np.asarray(source.f0, np.float64)[keep], "voiced steps"
    else:
        return None
    if not f.size:
        return None
    lo, hi = interface.f0_range
    margin = 2.0 ** (PITCH_MARGIN_SEMITONES / 12)
    out = (f < lo / margin) | (f > hi * margin)
    if not out.any():
        return None
    return (
        f"{100 * out.mean():.0f} % of the {what} ({f[out].min():.0f}-{f[out].max():.0f} Hz) lie "
        f"outside the pitch range the model was trained on, {lo:.0f}-{hi:.0f} Hz: its timbre "
        "there is the nearest trained pitch's (synth.out_of_range), a guess"
    )


def controls_outside(source, interface, out_of_range: str) -> str | None:
    """The timbre controls a trajectory was asked to take outside their training ranges
    (``--control``, ``--controls``), and what the synth does there; or ``None``."""
    if not isinstance(source, C.Trajectory) or source.requested is None:
        return None
    low, high = source.requested
    lo, hi = interface.control_ranges[:, 0], interface.control_ranges[:, 1]
    names = [
        f"{name} reaches {low[k] if low[k] < lo[k] else high[k]:.3g} "
        f"(range {lo[k]:.3g}..{hi[k]:.3g})"
        for k, name in enumerate(interface.control_names)
        if low[k] < lo[k] or high[k] > hi[k]
    ]
    if not names:
        return None
    rule = (
        'clamped to its range (synth.out_of_range = "clamp"; "extrapolate" plays it, a guess)'
        if out_of_range == "clamp"
        else 'played as given (synth.out_of_range = "extrapolate"): a guess'
    )
    return f"{', '.join(names)}: {rule}"


def _describe(args) -> str:
    """What was rendered, as the summary names it."""
    if args.audio:
        return f"timbre transfer of {Path(args.audio).name}"
    if args.midi:
        return f"MIDI {Path(args.midi).name}"
    if args.controls:
        return f"controls {Path(args.controls).name}"
    if args.path:
        return f"{args.path} path"
    return "fixed note"
