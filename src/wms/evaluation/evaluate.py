"""``wms evaluate BUNDLE [AUDIO] --out DIR``: test metrics, resynthesis, plots and audio.

Read top to bottom:

1. :func:`heldout_data` — the evaluation frames. By default the bundle's own **test**
   blocks (never used for any choice during training), re-read through the feature cache
   with the bundle's config; a wms 0.1.0 bundle has none and reports its validation blocks
   (marked as such). With ``AUDIO``, every frame of every usable file under ``AUDIO``,
   analysed with the bundle's config and mapped with its input map — refused when a file is
   one the bundle was trained on, unless ``allow_seen``.
2. :func:`spectral_metrics` — the model and both baselines (``wms.evaluation.metrics``):
   SC and LSD over all bins and over the harmonic bins the synth plays. The model runs
   over each held-out block from a zero GRU state, as in training.
3. :func:`resynthesise` — each held-out segment played through the same synth four ways:
   by the model (timbre transfer), by both baselines and by an oracle (the analysed
   harmonics themselves: the ceiling of the representation), each scored against the
   original by :func:`~wms.evaluation.metrics.multi_resolution_stft_distance` at the
   audio's own sample rate, full band.
4. :func:`evaluate` — all of the above plus figures and audio examples
   (``wms.evaluation.report``), ``DIR/metrics.json``, ``DIR/report.md`` and ``DIR/index.html``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wms import __version__
from wms.analysis.audio import find_audio_files
from wms.errors import DataError, WMSError
from wms.evaluation.metrics import (
    HIGH_BAND_HZ,
    STFT_FFT_SIZES,
    energy_parts,
    multi_resolution_stft_distance,
)
from wms.io import refuse_to_replace_inputs, writable_dir, write_json

#: At most this many seconds of held-out audio are resynthesised (the first segments).
RESYNTH_MAX_SECONDS = 120.0
#: Frames shown in the spectrum / waveform figures and played as audio examples.
EXAMPLE_FRAMES = 4
#: Seconds each example table is played for, and the fade at its ends.
EXAMPLE_SECONDS, EXAMPLE_FADE = 1.0, 0.01
#: Silence between held-out segments in the original / resynthesis WAVs (seconds).
SEGMENT_GAP = 0.25
#: An f0 error above this many cents counts as a gross error.
GROSS_CENTS = 50.0
#: Every file an evaluation writes into its folder (checked against its inputs first).
#: The four ways the held-out audio is played through the synth.
RESYNTH_KINDS = ("model", "baseline_mean", "baseline_nearest", "oracle")
RESYNTH_LABELS = {
    "model": "model",
    "baseline_mean": "baseline: mean spectrum",
    "baseline_nearest": "baseline: nearest training frame",
    "oracle": "oracle: the audio's own harmonics",
}
REPORT_FILES = (
    "metrics.json",
    "report.md",
    "index.html",
    "original.wav",
    *(f"resynthesis_{k}.wav" for k in RESYNTH_KINDS),
    *(f"example{i}_{k}.wav" for i in range(1, EXAMPLE_FRAMES + 1) for k in ("target", "predicted")),
    *(f"{n}.png" for n in ("spectra", "waveforms", "loss_curves", "control_map", "spectrogram")),
)


# --------------------------------------------------------------------------- held-out data


@dataclass
class Segment:
    """One contiguous run of held-out frames ``[start, stop)`` of one file.

    Arrays cover only the segment: ``f0[n]`` Hz, ``voicedness[n]``, ``inputs[n, D]``
    (the bundle's input map), ``target[n, K]`` log1p; ``audio`` holds the samples
    ``[start * hop, stop * hop)`` at the analysis rate, ``native`` the same stretch at the
    file's own rate ``native_rate`` (what resynthesis is scored against).
    """

    path: Path
    start: int
    stop: int
    f0: np.ndarray
    voicedness: np.ndarray
    inputs: np.ndarray
    target: np.ndarray
    audio: np.ndarray
    native: np.ndarray
    native_rate: int

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


@dataclass
class HeldOut:
    """The evaluation data: segments, where they came from, and the training frames
    used by the baselines (``train_inputs[M, D]``, ``train_targets[M, K]``)."""

    source: str  # "test", "validation" or "audio"
    segments: list[Segment]
    train_inputs: np.ndarray
    train_targets: np.ndarray
    baseline_from: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ``[M]`` bins that count per training frame (low-rate files, §6.3), or ``None``
    train_bands: np.ndarray | None = None
    train_noise_bands: np.ndarray | None = None


def _prepared(path: Path, cfg, *, cache_dir, jobs, stored: dict | None = None):
    """One file through the feature cache: ``(PreparedFile, y at the analysis rate, y at the
    file's own rate, that rate)``.

    With ``stored`` (the bundle's record of a training file), the file must still
    exist and hold the same bytes and frame count as at training time.
    """
    from wms.analysis.audio import read_audio
    from wms.analysis.cache import FeatureCache
    from wms.analysis.prepare import prepare

    if stored is not None:
        key = str(stored.get("key", ""))
        digest = FeatureCache(cache_dir).content_hash(path)[:32]
        if key and key.split("-")[0] != digest:
            raise DataError(
                f"{path}: this training file has changed since the bundle was trained (its "
                f"content hash differs from the bundle's key {key}); its validation frames are "
                f"gone. Pass held-out audio instead: wms evaluate BUNDLE AUDIO --out DIR"
            )
    corpus = prepare(path, cfg, cache_dir=cache_dir, jobs=jobs, progress=False)
    if not corpus.files:  # prepare raises when nothing is usable; kept for clarity
        raise DataError(f"{path}: not usable ({corpus.skipped})")
    pf = corpus.files[0]
    if stored is not None and int(stored["n_frames"]) != pf.analysis.n_frames:
        raise DataError(
            f"{path}: {pf.analysis.n_frames} frames now but {stored['n_frames']} at training "
            f"time; pass held-out audio instead: wms evaluate BUNDLE AUDIO --out DIR"
        )
    import soundfile as sf

    native_rate = int(sf.info(str(path)).samplerate)
    return (
        pf,
        read_audio(path, cfg.audio.sample_rate),
        read_audio(path, native_rate),
        native_rate,
    )


def _segment(pf, y, native, native_rate, start: int, stop: int, bundle, hop: int) -> Segment:
    from wms.analysis.features import timbre_features

    a = pf.analysis
    sr = bundle.config.audio.sample_rate
    sl = slice(start, stop)
    f0 = np.asarray(a.f0[sl], dtype=np.float32)
    v = np.asarray(a.voicedness[sl], dtype=np.float32)
    return Segment(
        path=Path(pf.path),
        start=int(start),
        stop=int(stop),
        f0=f0,
        voicedness=v,
        inputs=bundle.interface.inputs(
            bundle.input_map.controls(timbre_features(a, bundle.config)[sl]), f0, v
        ),
        target=a.model_target(sl),
        audio=np.asarray(y[start * hop : stop * hop], dtype=np.float32),
        native=np.asarray(
            native[round(start * hop * native_rate / sr) : round(stop * hop * native_rate / sr)],
            dtype=np.float32,
        ),
        native_rate=native_rate,
    )


def _stored_files(bundle) -> list[dict]:
    files = bundle.data.get("files") if isinstance(bundle.data, dict) else None
    if not files:
        raise DataError(
            f"{bundle.path}: the bundle records no training files, so it has no validation "
            f"frames to evaluate on; pass held-out audio: wms evaluate BUNDLE AUDIO --out DIR"
        )
    return files


def _stored_or_empty(bundle) -> list[dict]:
    files = bundle.data.get("files") if isinstance(bundle.data, dict) else None
    return [f for f in files or [] if "train" in f]


def _ranges(r) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in np.asarray(r, dtype=np.int64).reshape(-1, 2)]


def heldout_data(
    bundle,
    audio: str | Path | None = None,
    *,
    cache_dir=None,
    jobs: int | None = None,
    allow_seen: bool = False,
) -> HeldOut:
    """The held-out frames and audio, and the training frames for the baselines.

    Args:
        bundle: a loaded :class:`wms.bundle.Bundle`.
        audio: ``None`` for the bundle's test blocks (validation blocks for a wms 0.1.0
            bundle, which has none), else an audio file or folder whose every frame is held out.
        cache_dir, jobs: feature cache and analysis processes (``wms.analysis.prepare.prepare``).
        allow_seen: evaluate ``audio`` even when a file of it trained the bundle.

    Returns:
        :class:`HeldOut`. Baselines use the bundle's training map when it stores
        inputs and targets (a seeded subsample of training frames), else every
        training frame re-read through the cache.

    Raises:
        AudioError: ``audio`` is missing, unreadable, silent or too short.
        DataError: a training file is gone or changed, ``audio`` is training data (without
            ``allow_seen``), or nothing is held out.
    """
    from wms.analysis.cache import FeatureCache
    from wms.analysis.prepare import read_checked

    cfg = bundle.config
    hop = cfg.features.hop_size
    tm = bundle.training_map or {}
    has_map = "inputs" in tm and "targets" in tm and len(tm["targets"]) > 0
    cache: dict[str, tuple] = {}
    files = _stored_or_empty(bundle)

    def load(f: dict):
        p = str(f["path"])
        if p not in cache:
            cache[p] = _prepared(Path(p), cfg, cache_dir=cache_dir, jobs=jobs, stored=f)
        return cache[p]

    if audio is not None:
        out = HeldOut("audio", [], None, None, "")
        scan = find_audio_files(audio, cfg.audio.extensions)
        out.skipped += [(str(p), why) for p, why in scan.skipped]
        if not scan.files:
            raise DataError(
                f"{audio}: no audio files found (looked for {', '.join(cfg.audio.extensions)})"
            )
        trained = {str(f.get("key", "")).split("-")[0] for f in files}
        hashes = FeatureCache(cache_dir)
        seen = [p for p in scan.files if hashes.content_hash(p)[:32] in trained]
        if seen and not allow_seen:
            names = ", ".join(str(p) for p in seen)
            raise DataError(
                f"{names}: the bundle was trained on this audio (same content), so its frames "
                "are (partly) training data and the figures would flatter the model; evaluate "
                "on the bundle's own test blocks (wms evaluate BUNDLE --out DIR), on other "
                "audio, or add --allow-seen to evaluate it anyway"
            )
        if seen:
            out.notes.append(
                f"{len(seen)} file(s) trained the bundle (--allow-seen): the figures are optimistic"
            )
        for p in scan.files:
            try:
                read_checked(p, cfg)  # AudioError naming the file
                loaded = _prepared(p, cfg, cache_dir=cache_dir, jobs=jobs)
            except WMSError as e:
                if len(scan.files) == 1:
                    raise
                out.skipped.append((str(p), str(e)))
                continue
            pf = loaded[0]
            out.segments.append(_segment(*loaded, 0, pf.analysis.n_frames, bundle, hop))
        if not out.segments:
            lines = "\n".join(f"  {why}" for _, why in out.skipped)
            raise DataError(f"{audio}: no usable audio to evaluate on:\n{lines}")
    else:
        stored = _stored_files(bundle)
        part = "test" if any(_ranges(f.get("test", [])) for f in stored) else "val"
        out = HeldOut("test" if part == "test" else "validation", [], None, None, "")
        if part == "val":
            out.notes.append(
                "the bundle holds no test blocks (a wms 0.1.0 bundle, or data.test_fraction = 0): "
                "these are its validation blocks, which also chose its weights, so the figures "
                "are optimistic; evaluate on other audio for an independent figure"
            )
        held = [f for f in stored if _ranges(f.get(part, []))]
        if not held:
            raise DataError(
                f"{bundle.path}: the bundle holds no held-out frames (trained with "
                f"data.val_fraction = {cfg.data.val_fraction}, data.test_fraction = "
                f"{cfg.data.test_fraction}); pass held-out audio: wms evaluate BUNDLE AUDIO --out DIR"
            )
        need = held if has_map else stored
        missing = [str(f["path"]) for f in need if not Path(str(f["path"])).is_file()]
        if missing:
            raise DataError(
                f"{bundle.path}: the training file(s) holding the held-out frames are gone: "
                f"{', '.join(missing)}. Restore them, or evaluate on other held-out audio: "
                f"wms evaluate BUNDLE AUDIO --out DIR"
            )
        for f in held:
            loaded = load(f)
            for a, b in _ranges(f[part]):
                out.segments.append(_segment(*loaded, a, b, bundle, hop))

    if has_map:
        out.train_inputs = np.asarray(tm["inputs"], dtype=np.float32)
        out.train_targets = np.asarray(tm["targets"], dtype=np.float32)
        out.train_bands = training_map_bands(bundle)
        out.train_noise_bands = training_map_noise_bands(bundle)
        n_train = sum(b - a for f in files for a, b in _ranges(f["train"]))
        m = len(out.train_targets)
        out.baseline_from = f"the bundle's training map ({m} training frames, " + (
            "all of them)" if m == n_train else f"a seeded subsample of {n_train})"
        )
    else:
        xs, ts = [], []
        for f in _stored_files(bundle):
            loaded = load(f)
            for a, b in _ranges(f.get("train", [])):
                s = _segment(*loaded, a, b, bundle, hop)
                xs.append(s.inputs)
                ts.append(s.target)
        if not xs:
            raise DataError(
                f"{bundle.path}: the bundle records no training frames for the baselines"
            )
        out.train_inputs, out.train_targets = np.concatenate(xs), np.concatenate(ts)
        out.baseline_from = (
            f"every training frame ({len(out.train_targets)}), re-read through the feature cache "
            f"(the bundle's training map stores no targets)"
        )
    return out


# --------------------------------------------------------------------------- spectra


def predict_segments(bundle, segments: list[Segment]) -> np.ndarray:
    """The model over each segment from a zero GRU state: ``[sum n_frames, K]`` log1p."""
    return np.concatenate([bundle.predict(s.inputs) for s in segments])


def energy_floor(bundle, held: HeldOut, target: np.ndarray) -> float:
    """The frame energy under which frames are not scored: the training corpus's floor for
    its own held-out blocks; for other audio (or a wms 0.1.0 bundle) ``data.silence_db``
    under that audio's own loud frames, since its level is not the corpus's."""
    from wms.evaluation.metrics import relative_floor

    stored = bundle.data.get("energy_floor")
    if held.source != "audio" and isinstance(stored, (int, float)):
        return float(stored)
    return relative_floor(target, bundle.config.data.silence_db)


def spectral_metrics(bundle, held: HeldOut) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The model and both baselines on the held-out frames (``metrics.heldout_report``).

    Returns:
        ``(metrics, arrays)``: the held-out report (split, frames, each predictor's SC and
        LSD over all bins and over the harmonic bins, energy ratio, verdict, flags) and
        ``{"target", "model", "baseline_mean", "baseline_nearest"}`` ``[n, K]`` log1p plus
        ``"frame_lsd_db"`` ``[n]`` (per frame, model, harmonic bins).
    """
    from wms.evaluation.metrics import (
        baseline_predictions,
        heldout_report,
        log_spectral_distance,
    )

    target = np.concatenate([s.target for s in held.segments])
    inputs = np.concatenate([s.inputs for s in held.segments])
    floor = energy_floor(bundle, held, target)
    preds = {
        "model": predict_segments(bundle, held.segments),
        **baseline_predictions(
            held.train_inputs,
            held.train_targets,
            inputs,
            energy_floor=floor,
            train_bands=held.train_bands,
            n_noise=bundle.interface.n_noise,
            train_noise_bands=held.train_noise_bands,
        ),
    }
    h = bundle.interface.outputs.harmonic_index
    m = heldout_report(
        preds,
        target,
        harmonic_index=h,
        split=held.source,
        energy_floor=floor,
        bands=segment_bands(bundle, held.segments),
        n_noise=bundle.interface.n_noise,
        noise_bands=segment_noise_bands(bundle, held.segments),
    )
    m["baseline_nearest"]["from"] = held.baseline_from
    pm, tg = preds["model"][:, h], target[:, h]
    frame_lsd = np.array(
        [log_spectral_distance(pm[i : i + 1], tg[i : i + 1]) for i in range(len(target))]
    )
    return m, {"target": target, **preds, "frame_lsd_db": frame_lsd}


def stored_rates(bundle) -> np.ndarray:
    """``[files]`` the rate each training file was recorded at, capped at the analysis rate
    (as ``wms.training.train.file_rate``; a bundle that does not record it: the analysis
    rate)."""
    sr = bundle.config.audio.sample_rate
    files = bundle.data.get("files", [])
    return np.array([min(int(f.get("sample_rate") or sr), sr) for f in files], np.int64)


def training_map_bands(bundle) -> np.ndarray | None:
    """``[M]`` the bins that count per training-map frame, as training's own mean baseline
    used them (frames of a file recorded below the corpus's highest rate count only below
    its band; an unvoiced frame at its tracked f0, not the held one); ``None`` when every bin
    counts (or the map does not say which file)."""
    from wms.analysis.features import recorded_bins

    tm, cfg = bundle.training_map, bundle.config
    rates = stored_rates(bundle)
    if "frames" not in tm or not len(rates) or rates.min() == rates.max():
        return None
    which = np.asarray(tm["frames"])[:, 0].astype(np.int64)
    k = bundle.interface.outputs.n_bins
    bands = np.full(len(which), k, np.int32)
    for i, r in enumerate(rates):
        rows = which == i
        if r < rates.max() and rows.any():
            f0 = np.asarray(tm["f0"])[rows]  # each at its tracked f0 (the map is a subsample)
            bands[rows] = recorded_bins(f0, np.ones_like(f0), cfg, file_rate=r)
    return bands


def _file_noise_bands(bundle, rates: np.ndarray) -> np.ndarray | None:
    """``[files]`` the noise bands each file's frames count (all of them at the corpus's
    highest rate), or ``None`` when every band of every file counts (as in training:
    :func:`wms.analysis.features.file_noise_bands`)."""
    from wms.analysis.features import file_noise_bands

    n = bundle.interface.n_noise
    per = file_noise_bands(rates.tolist(), bundle.interface.noise_edges) if n else []
    if all(b is None for b in per):
        return None
    return np.array([n if b is None else b for b in per])


def training_map_noise_bands(bundle) -> np.ndarray | None:
    """``[M]`` the noise bands that count per training-map frame, as training's own mean
    baseline used them (:func:`training_map_bands` for the noise part)."""
    per_file = _file_noise_bands(bundle, stored_rates(bundle))
    if per_file is None or "frames" not in bundle.training_map:
        return None
    return per_file[np.asarray(bundle.training_map["frames"])[:, 0].astype(np.int64)]


def segment_noise_bands(bundle, segments: list[Segment]) -> np.ndarray | None:
    """``[n]`` the noise bands that count per held-out frame (:func:`segment_bands` for the
    noise part), or ``None`` when all of them do."""
    sr = bundle.config.audio.sample_rate
    rates = np.array([min(s.native_rate, sr) for s in segments], np.int64)
    stored = stored_rates(bundle)
    top = stored.max() if len(stored) else sr
    per = _file_noise_bands(bundle, np.append(rates, top))
    if per is None:
        return None
    return np.repeat(per[: len(segments)], [s.n_frames for s in segments])


def segment_bands(bundle, segments: list[Segment]) -> np.ndarray | None:
    """``[n]`` the bins that count per held-out frame, as in training: a segment recorded
    below the corpus's highest rate is scored only below its own band (docs/DESIGN.md §6.3);
    ``None`` when every bin counts."""
    from wms.analysis.features import recorded_bins

    cfg = bundle.config
    rates = stored_rates(bundle)
    top = rates.max() if len(rates) else cfg.audio.sample_rate
    k = bundle.interface.outputs.n_bins
    parts = [
        recorded_bins(s.f0, s.voicedness, cfg, file_rate=s.native_rate)
        if s.native_rate < top
        else np.full(s.n_frames, k, np.int32)
        for s in segments
    ]
    return np.concatenate(parts) if any(np.any(p < k) for p in parts) else None


# --------------------------------------------------------------------------- resynthesis


@dataclass
class Resynthesis:
    """The held-out audio at its own rate (segments joined with ``SEGMENT_GAP`` s of
    silence) and its resynthesis by each of :data:`RESYNTH_KINDS` at that rate (level
    matched), with the metrics."""

    original: np.ndarray
    renders: dict[str, np.ndarray]
    sample_rate: int
    metrics: dict[str, Any]
    boundaries: list[float] = field(default_factory=list)  # seconds where segments join


def _step_spectra(frames: np.ndarray, n_steps: int, step_s: float, frame_s: float) -> np.ndarray:
    """Per control step ``k`` (ending at ``(k + 1) * step_s``) the row of ``frames`` nearest in
    time (frames are centred at ``i * frame_s``): spectra a Trajectory plays as they are."""
    idx = np.round((np.arange(n_steps) + 1) * step_s / frame_s).astype(np.int64)
    return np.ascontiguousarray(frames[np.clip(idx, 0, len(frames) - 1)], dtype=np.float32)


def resynthesise(
    bundle,
    segments: list[Segment],
    spectra: dict[str, np.ndarray],
    *,
    max_seconds: float = RESYNTH_MAX_SECONDS,
) -> Resynthesis:
    """Play each held-out segment through the synth four ways and score each against it.

    The segment's own audio drives ``audio_trajectory`` (``wms render --audio``: its pitch,
    voicedness and loudness at each control step); the timbre comes from

    - ``model``: the network on the segment's features (timbre transfer),
    - ``baseline_mean`` / ``baseline_nearest``: those baselines' spectra per frame,
    - ``oracle``: the analysed spectra of the audio itself (the representation's ceiling:
      what a perfect model could play through this synth).

    Each is rendered at the audio file's **own** sample rate, scaled by one gain so its RMS
    matches the original's (reported as ``level_match_db``), and scored by
    :func:`multi_resolution_stft_distance` against the original at that rate (full band,
    so what the model cannot play, e.g. content above its harmonics, counts). The pitch
    figure is an **oscillator check**: the render's f0 against the f0 the synth was given.

    Args:
        spectra: ``{"baseline_mean", "baseline_nearest", "oracle"}`` ``[sum n_frames, K]``
            rows for the segments in order (``spectral_metrics``' arrays and the targets).

    Returns:
        :class:`Resynthesis`; ``metrics`` = ``{"sample_rate", "seconds", "segments",
        "stft_distance": {kind: {"sc", "log_mag_l1", "total", "log_mag_l1_floored",
        "total_floored"}}, "level_match_db": {kind: dB},
        "oscillator_f0_cents": {...}, "fft_sizes", ...}``.
    """
    from wms.analysis.pitch import cents_error
    from wms.synth.controls import audio_trajectory
    from wms.synth.network import SynthModel
    from wms.synth.render import render

    cfg = bundle.config
    sr, hop = cfg.audio.sample_rate, cfg.features.hop_size
    frame_s = hop / sr
    model = SynthModel.from_bundle(bundle)
    rates = {s.native_rate for s in segments}
    rr = max(rates)  # one output rate; segments of other rates are compared at their own
    originals: list[np.ndarray] = []
    renders: dict[str, list[np.ndarray]] = {k: [] for k in RESYNTH_KINDS}
    dists: dict[str, list[dict]] = {k: [] for k in RESYNTH_KINDS}
    gains: dict[str, list[float]] = {k: [] for k in RESYNTH_KINDS}
    errs, weights, starts = [], [], []
    energy: dict[str, list[dict]] = {k: [] for k in ("original", *RESYNTH_KINDS)}
    used, row = 0.0, 0
    for s in segments:
        first, row = row, row + s.n_frames
        if used >= max_seconds:
            break
        nr = s.native_rate
        y = s.native[: int(round((max_seconds - used) * nr))]
        n_frames = min(s.n_frames, len(y) * sr // (nr * hop))
        if n_frames < 2:
            continue
        used += len(y) / nr
        step_s = max(1, round(cfg.synth.control_interval * nr)) / nr
        where = f"{s.path} frames {s.start}-{s.stop}"
        kw = dict(audio_rate=nr, model=model, sample_rate=nr, step_seconds=step_s, where=where)
        f0_seg = np.where(
            s.voicedness[:n_frames] >= cfg.pitch.voicing_threshold, s.f0[:n_frames], 0.0
        )
        energy["original"].append(energy_parts(y, nr, f0_seg, frame_s))
        for kind in RESYNTH_KINDS:
            traj = audio_trajectory(bundle, y, voicing_threshold=cfg.pitch.voicing_threshold, **kw)
            fast = kind == "model"
            if not fast:
                total = len(y) + round((cfg.synth.release + 0.05) * nr)
                n_steps = total // round(step_s * nr) + 2
                frames = spectra[kind][first : first + s.n_frames]
                traj.spectra = _step_spectra(frames, n_steps, step_s, frame_s)
            out, _ = render(model, traj, sample_rate=nr, config=cfg.synth, fast=fast)
            z = np.pad(out[: len(y)], (0, max(0, len(y) - len(out))))
            ry = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
            rz = float(np.sqrt(np.mean(np.square(z, dtype=np.float64))))
            g = ry / rz if rz > 0 else 1.0
            z = (z * g).astype(np.float32)
            gains[kind].append(20 * math.log10(g) if g > 0 else float("-inf"))
            dists[kind].append(multi_resolution_stft_distance(z, y))
            energy[kind].append(energy_parts(z, nr, f0_seg, frame_s))
            if kind == "model":
                # the pitch the synth was told to play: the trajectory's, at the frame times
                t_frames = np.arange(n_frames) * frame_s
                t_steps = (np.arange(traj.n_steps) + 1) * traj.step_seconds
                f_in = np.exp2(np.interp(t_frames, t_steps, np.log2(traj.f0)))
                v_in = np.interp(t_frames, t_steps, traj.voicedness)
                voiced = (v_in >= cfg.pitch.voicing_threshold) & (
                    s.voicedness[:n_frames] >= cfg.pitch.voicing_threshold
                )
                if voiced.any():
                    f0_out = rendered_f0(
                        z, nr, n_frames, hop_seconds=frame_s, cfg=cfg, around=f_in[voiced]
                    )
                    errs.append(cents_error(f0_out[voiced], f_in[voiced]))
            renders[kind].append(_at_rate(z, nr, rr))
        weights.append(len(y) / nr)
        starts.append(sum(len(o) for o in originals) / rr)
        originals.append(_at_rate(y, nr, rr))
    if not weights:
        raise DataError("no held-out segment is long enough to resynthesise (2 frames or more)")
    w = np.asarray(weights) / np.sum(weights)
    stft = {
        kind: {
            k: float(np.dot(w, [d[k] for d in dists[kind]]))
            for k in ("sc", "log_mag_l1", "total", "log_mag_l1_floored", "total_floored")
        }
        for kind in RESYNTH_KINDS
    }
    cents = np.abs(np.concatenate(errs)) if errs else np.zeros(0)
    osc: dict[str, Any] = {
        "frames": int(cents.size),
        "what": "f0 of the model's render against the f0 the synth was given (an oscillator "
        "check, not a measure of the model)",
    }
    if cents.size:
        osc.update(
            median_abs=float(np.median(cents)),
            p90_abs=float(np.percentile(cents, 90)),
            gross_fraction=float(np.mean(cents > GROSS_CENTS)),
        )
    else:
        osc.update(median_abs=None, p90_abs=None, gross_fraction=None)
    metrics = {
        "sample_rate": rr,
        "sample_rates": sorted(rates),
        "seconds": float(np.sum(weights)),
        "segments": len(weights),
        "stft_distance": stft,
        "fft_sizes": list(STFT_FFT_SIZES),
        "level_match_db": {k: float(np.median(v)) for k, v in gains.items()},
        "oscillator_f0_cents": osc,
        "energy": energy_figures(energy, min(rates)),
    }
    if used >= max_seconds:
        metrics["note"] = f"only the first {max_seconds:g} s of held-out audio were resynthesised"
    gap = np.zeros(round(SEGMENT_GAP * rr), np.float32)

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        out = []
        for x in parts:
            out += [x, gap]
        return np.concatenate(out[:-1])

    return Resynthesis(
        joined(originals),
        {k: joined(v) for k, v in renders.items()},
        rr,
        metrics,
        [st + i * SEGMENT_GAP for i, st in enumerate(starts)][1:],
    )


def energy_figures(parts: dict[str, list[dict]], lowest_rate: int) -> dict[str, Any]:
    """Per kind (the original and each resynthesis, level-matched), summed over segments:
    ``high_share`` (energy above :data:`HIGH_BAND_HZ` over all of it), ``high_db`` (a
    render's energy above it against the original's, dB) and ``noise_share`` (the energy
    between the harmonics of voiced frames over theirs, :func:`energy_parts`). The high band
    is left out (``None``) when a segment's rate cannot hold it."""
    total = {k: {f: sum(p[f] for p in v) for f in ("total", "high", "voiced", "inharmonic")}
             for k, v in parts.items()}  # fmt: skip
    has_high = lowest_rate / 2 > HIGH_BAND_HZ and total["original"]["high"] > 0
    out: dict[str, Any] = {"high_band_hz": HIGH_BAND_HZ}
    for kind, e in total.items():
        fig: dict[str, Any] = {
            "noise_share": e["inharmonic"] / e["voiced"] if e["voiced"] > 0 else None,
            "high_share": e["high"] / e["total"] if has_high and e["total"] > 0 else None,
        }
        if kind != "original":
            fig["high_db"] = (
                10 * math.log10(e["high"] / total["original"]["high"])
                if has_high and e["high"] > 0
                else None
            )
        out[kind] = fig
    return out


def _at_rate(y: np.ndarray, rate: int, target: int) -> np.ndarray:
    from wms.analysis.audio import resample

    return y if rate == target else resample(y, rate, target)


#: Renders at lower rates are resampled to this rate before their f0 is measured.
MEASURE_RATE = 48000


def rendered_f0(
    y: np.ndarray,
    sample_rate: int,
    n_frames: int,
    *,
    hop_seconds: float,
    cfg,
    around: np.ndarray | None = None,
) -> np.ndarray:
    """f0 (Hz) of a render at the input's frame times ``i * hop_seconds``, ``[n_frames]``.

    Tracked with ``estimate_pitch`` method ``"fast"`` at the render's own rate (hop
    ``hop_seconds`` rounded to samples), then interpolated in log-frequency to the
    input's frame times. At the analysis rate a bright high note has a period of a
    fractional number of samples, and YIN then locks onto 2 or 3 periods (a whole
    number of samples): an error of the measurement, not of the synth. ``around``: the
    f0 the synth was given; the search is kept within a fifth of its range (inside
    ``pitch.fmin..fmax``), so a timbre with a weak fundamental cannot make YIN read an
    octave that was never played.
    """
    from wms.analysis.audio import resample
    from wms.analysis.pitch import estimate_pitch

    if sample_rate < MEASURE_RATE:  # finer sampling, finer YIN periods (nothing added)
        y, sample_rate = (
            resample(np.asarray(y, np.float32), sample_rate, MEASURE_RATE),
            MEASURE_RATE,
        )
    lo, hi = cfg.pitch.fmin, cfg.pitch.fmax
    if around is not None and len(around):
        lo = max(lo, float(np.min(around)) / 1.5)
        hi = min(hi, float(np.max(around)) * 1.5, 0.45 * sample_rate)
    hop_r = max(1, round(hop_seconds * sample_rate))
    f, _ = estimate_pitch(
        y, sample_rate=sample_rate, hop_size=hop_r, method="fast", fmin=lo, fmax=hi
    )
    t = np.arange(len(f)) * hop_r / sample_rate
    return np.exp2(np.interp(np.arange(n_frames) * hop_seconds, t, np.log2(f)))


# --------------------------------------------------------------------------- examples


def pick_example_frames(
    frame_lsd: np.ndarray, voiced: np.ndarray, k: int = EXAMPLE_FRAMES
) -> list[tuple[int, str]]:
    """``k`` voiced frames spanning the model's per-frame LSD: ``[(row, label), ...]``.

    Frames at the 10th, 50th, 75th and 95th percentile of per-frame LSD (voiced
    frames only, or all frames when none is voiced), so the figures show typical
    and bad cases, not the best ones.
    """
    rows = np.flatnonzero(voiced)
    if rows.size == 0:
        rows = np.arange(len(frame_lsd))
    order = rows[np.argsort(frame_lsd[rows], kind="stable")]
    qs = (10, 50, 75, 95)[:k] if k <= 4 else np.linspace(5, 95, k)
    out, seen = [], set()
    for q in qs:
        r = int(order[min(len(order) - 1, int(round(q / 100 * (len(order) - 1))))])
        if r not in seen:
            seen.add(r)
            out.append((r, f"p{int(q)} of frame LSD"))
    return out


def play_harmonics(
    amps: np.ndarray, f0: float, *, sample_rate: int, seconds: float = EXAMPLE_SECONDS
) -> np.ndarray:
    """A one-cycle table of harmonic amplitudes ``amps[H]`` looped at ``f0`` Hz.

    Synthesised as the band-limited sum of cosines the table holds (harmonics at or
    above Nyquist removed, as the synth does), normalised to the synth's table RMS,
    with ``EXAMPLE_FADE`` s fades. Returns ``[round(seconds * sample_rate)]`` float32.
    """
    from wms.synth.tables import band_limit, normalise_amplitudes

    a = band_limit(normalise_amplitudes(amps), f0, sample_rate=sample_rate)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    h = np.arange(1, a.size + 1)
    y = np.cos(2 * np.pi * np.outer(t, h) * f0) @ a
    n = max(1, round(EXAMPLE_FADE * sample_rate))
    ramp = np.linspace(0.0, 1.0, n)
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y.astype(np.float32)


# --------------------------------------------------------------------------- run


def bundle_info(bundle) -> dict[str, Any]:
    """Path, versions, config hash and the settings that matter for reading the metrics."""
    from wms.analysis.cache import settings_hash

    c = bundle.config
    blob = json.dumps(c.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    h = bundle.history
    return {
        "path": str(bundle.path),
        "format_version": bundle.version,
        "written_by_wms": bundle.wms_version,
        "config_sha256": hashlib.sha256(blob.encode()).hexdigest()[:16],
        "analysis_settings_sha256": settings_hash(c)[:16],
        "parameters": bundle.parameter_count,
        "epochs": (h[-1]["epoch"] + 1) if h else 0,
        "settings": {
            "sample_rate": c.audio.sample_rate,
            "hop_size": c.features.hop_size,
            "window_size": c.features.window_size,
            "cycles_per_window": c.features.cycles_per_window,
            "n_bins": c.features.n_bins,
            "pitch_method": c.pitch.method,
            "reduction": c.features.reduction,
            "controls": list(bundle.interface.control_names),
            "hidden_size": c.model.hidden_size,
            "loss": c.train.loss,
        },
        "training_metrics": bundle.metrics,
    }


def data_info(held: HeldOut, hop: int, sr: int, voicing_threshold: float) -> dict[str, Any]:
    """Which files and frame ranges were evaluated, and how much."""
    files: dict[str, dict] = {}
    for s in held.segments:
        f = files.setdefault(str(s.path), {"path": str(s.path), "ranges": [], "frames": 0})
        f["ranges"].append([s.start, s.stop])
        f["frames"] += s.n_frames
    for f in files.values():
        f["seconds"] = f["frames"] * hop / sr
    n = sum(s.n_frames for s in held.segments)
    voiced = sum(int(np.sum(s.voicedness >= voicing_threshold)) for s in held.segments)
    return {
        "source": held.source,
        "description": {
            "test": "the bundle's test blocks (contiguous, never trained on, never used for a "
            "choice)",
            "validation": "the bundle's validation blocks (never trained on, but they chose "
            "the weights)",
            "audio": "every frame of the given audio, analysed with the bundle's config and "
            "input map",
        }[held.source],
        "files": list(files.values()),
        "frames": n,
        "voiced_frames": voiced,
        "seconds": n * hop / sr,
        "baselines_from": held.baseline_from,
        "skipped": [{"path": p, "reason": r} for p, r in held.skipped],
    }


def evaluate(
    bundle_path: str | Path,
    out_dir: str | Path,
    audio: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    jobs: int | None = None,
    allow_seen: bool = False,
) -> dict[str, Any]:
    """Evaluate a bundle and write ``out_dir/metrics.json``, the report, figures and WAVs.

    Args:
        bundle_path: ``model.wms``.
        out_dir: report folder (created).
        audio: held-out audio file or folder; ``None`` = the bundle's test blocks.
        cache_dir, jobs: feature cache and analysis processes.
        allow_seen: evaluate ``audio`` even if the bundle was trained on it.

    Returns:
        The metrics dict written to ``metrics.json`` (``"files"`` lists what was written):
        the held-out report (``split``, ``frames``, ``model`` / ``baseline_mean`` /
        ``baseline_nearest`` each with ``sc``, ``lsd_db``, ``harm_sc``, ``harm_lsd_db``,
        ``energy_db``, ``beats_both_baselines``, ``flags``), ``resynthesis``, ``bundle``,
        ``data``, ``notes``.

    Raises:
        BundleError: missing or corrupt bundle. AudioError: unreadable ``audio``.
        DataError: the held-out frames' source files are gone or changed, or ``audio``
            trained the bundle (without ``allow_seen``).
        OutputError: ``out_dir`` cannot be written, or would replace an input.
    """
    from wms.analysis.audio import write_audio
    from wms.bundle import load_bundle
    from wms.evaluation.report import write_figures_and_report

    bundle = load_bundle(bundle_path)
    audio_files = find_audio_files(audio, bundle.config.audio.extensions).files if audio else []
    refuse_to_replace_inputs(
        [Path(out_dir) / n for n in REPORT_FILES], [bundle_path, *audio_files], what="--out"
    )
    out = writable_dir(out_dir, what="--out report folder")
    cfg = bundle.config
    held = heldout_data(bundle, audio, cache_dir=cache_dir, jobs=jobs, allow_seen=allow_seen)
    spec, arrays = spectral_metrics(bundle, held)
    resyn = resynthesise(bundle, held.segments, {**arrays, "oracle": arrays["target"]})

    metrics: dict[str, Any] = {
        "wms_version": __version__,
        **spec,
        "resynthesis": resyn.metrics,
        "bundle": bundle_info(bundle),
        "data": data_info(
            held, cfg.features.hop_size, cfg.audio.sample_rate, cfg.pitch.voicing_threshold
        ),
        "notes": held.notes,
    }

    # Audio examples: a few frames' target and predicted tables, and the resynthesis.
    f0 = np.concatenate([s.f0 for s in held.segments])
    voiced = np.concatenate([s.voicedness for s in held.segments]) >= cfg.pitch.voicing_threshold
    rows = pick_example_frames(arrays["frame_lsd_db"], voiced)
    where = [(s, i) for s in held.segments for i in range(s.start, s.stop)]
    examples, files = [], {}
    rr = int(cfg.synth.sample_rate)
    for j, (r, label) in enumerate(rows):
        seg, frame = where[r]
        ex = {
            "row": r,
            "label": label,
            "file": str(seg.path),
            "frame": frame,
            "seconds": frame * cfg.features.hop_size / cfg.audio.sample_rate,
            "f0": float(f0[r]),
            "lsd_db": float(arrays["frame_lsd_db"][r]),
            "target": arrays["target"][r],
            "model": arrays["model"][r],
            "nearest": arrays["baseline_nearest"][r],
        }
        for kind in ("target", "model"):
            name = f"example{j + 1}_{'target' if kind == 'target' else 'predicted'}.wav"
            amps = bundle.interface.harmonics(arrays[kind][r])
            write_audio(
                out / name,
                play_harmonics(amps, float(f0[r]), sample_rate=rr),
                rr,
                what="evaluation example",
            )
            ex[f"wav_{kind}"] = name
        examples.append(ex)
    files["original"] = write_audio(
        out / "original.wav", resyn.original, resyn.sample_rate, what="evaluation copy"
    ).name
    for kind, y in resyn.renders.items():
        files[f"resynthesis_{kind}"] = write_audio(
            out / f"resynthesis_{kind}.wav", y, resyn.sample_rate, what=f"resynthesis ({kind})"
        ).name

    figures = write_figures_and_report(
        out,
        bundle=bundle,
        metrics=metrics,
        examples=examples,
        resyn=resyn,
        heldout_inputs=np.concatenate([s.inputs for s in held.segments]),
        audio_files=files,
    )
    metrics["files"] = {**files, **figures}
    metrics["examples"] = [
        {k: v for k, v in e.items() if k not in ("target", "model", "nearest")} for e in examples
    ]
    write_json(out / "metrics.json", metrics)
    return metrics


def format_metrics(m: dict[str, Any]) -> str:
    """The metrics table ``wms evaluate`` prints (plain text)."""
    from wms.evaluation.metrics import describe_heldout

    r, d = m["resynthesis"], m["data"]
    lines = [
        f"held-out: {m['frames']} frames ({d['seconds']:.1f} s) from {len(d['files'])} file(s)",
        *describe_heldout(m),
        f"resynthesis of {r['seconds']:.1f} s at {r['sample_rate']} Hz, multi-resolution STFT "
        "distance to the original (full band; lower is better):",
    ]
    for kind in RESYNTH_KINDS:
        st = r["stft_distance"][kind]
        lines.append(
            f"  {RESYNTH_LABELS[kind]:<34} {st['total']:.3f} (SC {st['sc']:.3f} + "
            f"log-mag L1 {st['log_mag_l1']:.3f}); {st['total_floored']:.3f} counting only what "
            "lies within 80 dB of the original's peak"
        )
    en = r.get("energy")
    if en:
        o = en["original"]
        head = f"energy: the original holds {_pct(o['noise_share'])} of its voiced energy between"
        head += " the harmonics"
        if o["high_share"] is not None:
            head += f" and {_pct(o['high_share'])} above {en['high_band_hz'] / 1000:g} kHz"
        lines.append(head + "; the level-matched renders:")
        for kind in RESYNTH_KINDS:
            e = en[kind]
            line = f"  {RESYNTH_LABELS[kind]:<34} noise {_pct(e['noise_share'])}"
            if o["high_share"] is not None:
                db = "silent" if e["high_db"] is None else f"{e['high_db']:+.1f} dB"
                line += f", above {en['high_band_hz'] / 1000:g} kHz {db} vs the original"
            lines.append(line)
    osc = r["oscillator_f0_cents"]
    if osc["frames"]:
        lines.append(
            f"oscillator check: the render's f0 is {osc['median_abs']:.1f} cents (median) from "
            f"the pitch the synth was given, over {osc['frames']} voiced frames"
        )
    lines += [f"note: {n}" for n in m.get("notes", [])]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.3g} %"


def run_evaluate(args) -> int:
    """``wms evaluate BUNDLE [AUDIO] --out DIR [--cache-dir D] [--jobs N]``."""
    m = evaluate(
        args.bundle,
        args.out,
        getattr(args, "audio", None),
        cache_dir=getattr(args, "cache_dir", None),
        jobs=getattr(args, "jobs", None),
        allow_seen=getattr(args, "allow_seen", False),
    )
    print(format_metrics(m))
    out = Path(args.out)
    print(
        f"report: {out / m['files']['report']} (and {out / m['files']['html']}); metrics: {out / 'metrics.json'}"
    )
    return 0
