"""``wms evaluate BUNDLE [AUDIO] --out DIR``: held-out metrics, resynthesis, plots and audio.

Read top to bottom:

1. :func:`heldout_data` — the evaluation frames. By default the bundle's own
   validation blocks (``bundle.data["files"][i]["val"]``), re-read through the
   feature cache with the bundle's config; with ``AUDIO``, every frame of every
   usable file under ``AUDIO``, analysed with the bundle's config and mapped with
   the bundle's (not refitted) input map.
2. :func:`spectral_metrics` — spectral convergence and log-spectral distance of
   the model and both baselines (``wms.evaluation.metrics``) on those frames. The model
   runs over each held-out block from a zero GRU state, as in training.
3. :func:`resynthesise` — each held-out segment's audio played through the synth's
   timbre-transfer path (``synth.controls.audio_trajectory`` + ``synth.render``),
   compared with the original by :func:`multi_resolution_stft_distance` and by the
   f0 error (cents) of the rendered output.
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
from wms.evaluation.metrics import STFT_FFT_SIZES, multi_resolution_stft_distance
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
REPORT_FILES = (
    "metrics.json",
    "report.md",
    "index.html",
    "original.wav",
    "resynthesis.wav",
    *(f"example{i}_{k}.wav" for i in range(1, EXAMPLE_FRAMES + 1) for k in ("target", "predicted")),
    *(f"{n}.png" for n in ("spectra", "waveforms", "loss_curves", "control_map", "spectrogram")),
)


# --------------------------------------------------------------------------- held-out data


@dataclass
class Segment:
    """One contiguous run of held-out frames ``[start, stop)`` of one file.

    Arrays cover only the segment: ``f0[n]`` Hz, ``voicedness[n]``, ``inputs[n, D]``
    (the bundle's input map), ``target[n, K]`` log1p; ``audio`` holds the samples
    ``[start * hop, stop * hop)`` at the analysis rate.
    """

    path: Path
    start: int
    stop: int
    f0: np.ndarray
    voicedness: np.ndarray
    inputs: np.ndarray
    target: np.ndarray
    audio: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


@dataclass
class HeldOut:
    """The evaluation data: segments, where they came from, and the training frames
    used by the baselines (``train_inputs[M, D]``, ``train_targets[M, K]``)."""

    source: str  # "validation" or "audio"
    segments: list[Segment]
    train_inputs: np.ndarray
    train_targets: np.ndarray
    baseline_from: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _prepared(path: Path, cfg, *, cache_dir, jobs, stored: dict | None = None):
    """One file through the feature cache: ``(PreparedFile, y at the analysis rate)``.

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
    return pf, read_audio(path, cfg.audio.sample_rate)


def _segment(pf, y: np.ndarray, start: int, stop: int, bundle, hop: int) -> Segment:
    a = pf.analysis
    sl = slice(start, stop)
    f0 = np.asarray(a.f0[sl], dtype=np.float32)
    v = np.asarray(a.voicedness[sl], dtype=np.float32)
    return Segment(
        path=Path(pf.path),
        start=int(start),
        stop=int(stop),
        f0=f0,
        voicedness=v,
        inputs=bundle.interface.inputs(bundle.input_map.controls(a.mfcc[sl]), f0, v),
        target=np.asarray(a.target[sl], dtype=np.float32),
        audio=np.asarray(y[start * hop : stop * hop], dtype=np.float32),
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
    bundle, audio: str | Path | None = None, *, cache_dir=None, jobs: int | None = None
) -> HeldOut:
    """The held-out frames and audio, and the training frames for the baselines.

    Args:
        bundle: a loaded :class:`wms.bundle.Bundle`.
        audio: ``None`` for the bundle's validation blocks, else an audio file or
            folder whose every frame is held out.
        cache_dir, jobs: feature cache and analysis processes (``wms.analysis.prepare.prepare``).

    Returns:
        :class:`HeldOut`. Baselines use the bundle's training map when it stores
        inputs and targets (a seeded subsample of training frames), else every
        training frame re-read through the cache.

    Raises:
        AudioError: ``audio`` is missing, unreadable, silent or too short.
        DataError: a training file is gone or changed (validation mode), or nothing
            is held out.
    """
    from wms.analysis.prepare import read_checked

    cfg = bundle.config
    hop = cfg.features.hop_size
    out = HeldOut("audio" if audio is not None else "validation", [], None, None, "")
    tm = bundle.training_map or {}
    has_map = "inputs" in tm and "targets" in tm and len(tm["targets"]) > 0
    cache: dict[str, tuple] = {}

    def load(f: dict):
        p = str(f["path"])
        if p not in cache:
            cache[p] = _prepared(Path(p), cfg, cache_dir=cache_dir, jobs=jobs, stored=f)
        return cache[p]

    if audio is not None:
        from wms.analysis.audio import find_audio_files

        scan = find_audio_files(audio, cfg.audio.extensions)
        paths = scan.files
        out.skipped += [(str(p), why) for p, why in scan.skipped]
        if not paths:
            raise DataError(
                f"{audio}: no audio files found (looked for {', '.join(cfg.audio.extensions)})"
            )
        for p in paths:
            try:
                read_checked(p, cfg)  # AudioError naming the file
                pf, y = _prepared(p, cfg, cache_dir=cache_dir, jobs=jobs)
            except WMSError as e:
                if len(paths) == 1:
                    raise
                out.skipped.append((str(p), str(e)))
                continue
            out.segments.append(_segment(pf, y, 0, pf.analysis.n_frames, bundle, hop))
        if not out.segments:
            lines = "\n".join(f"  {why}" for _, why in out.skipped)
            raise DataError(f"{audio}: no usable audio to evaluate on:\n{lines}")
    else:
        files = _stored_files(bundle)
        held = [f for f in files if _ranges(f.get("val", []))]
        if not held:
            raise DataError(
                f"{bundle.path}: the bundle holds no validation frames (trained with "
                f"data.val_fraction = {cfg.data.val_fraction}); pass held-out audio: "
                f"wms evaluate BUNDLE AUDIO --out DIR"
            )
        need = held if has_map else files
        missing = [str(f["path"]) for f in need if not Path(str(f["path"])).is_file()]
        if missing:
            raise DataError(
                f"{bundle.path}: the training file(s) holding the validation frames are gone: "
                f"{', '.join(missing)}. Restore them, or evaluate on other held-out audio: "
                f"wms evaluate BUNDLE AUDIO --out DIR"
            )
        for f in held:
            pf, y = load(f)
            for a, b in _ranges(f["val"]):
                out.segments.append(_segment(pf, y, a, b, bundle, hop))

    if has_map:
        out.train_inputs = np.asarray(tm["inputs"], dtype=np.float32)
        out.train_targets = np.asarray(tm["targets"], dtype=np.float32)
        n_train = sum(b - a for f in _stored_or_empty(bundle) for a, b in _ranges(f["train"]))
        m = len(out.train_targets)
        out.baseline_from = f"the bundle's training map ({m} training frames, " + (
            "all of them)" if m == n_train else f"a seeded subsample of {n_train})"
        )
    else:
        xs, ts = [], []
        for f in _stored_files(bundle):
            pf, y = load(f)
            for a, b in _ranges(f.get("train", [])):
                s = _segment(pf, y, a, b, bundle, hop)
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


def spectral_metrics(bundle, held: HeldOut) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Spectral convergence and LSD (dB) of the model and both baselines on the held-out frames.

    Returns:
        ``(metrics, arrays)``: metrics ``{"model", "baseline_mean", "baseline_nearest"}``
        each ``{"sc", "lsd_db"}``, plus ``"frames"``; arrays ``{"target", "model",
        "mean", "nearest"}`` ``[n, K]`` log1p and ``"frame_lsd_db"`` ``[n]`` (per frame, model).
    """
    from wms.evaluation.metrics import (
        log_spectral_distance,
        mean_spectrum_baseline,
        nearest_neighbour_baseline,
        spectral_convergence,
    )

    target = np.concatenate([s.target for s in held.segments])
    inputs = np.concatenate([s.inputs for s in held.segments])
    pred = predict_segments(bundle, held.segments)
    mean = mean_spectrum_baseline(held.train_targets, len(target))
    nearest = nearest_neighbour_baseline(held.train_inputs, held.train_targets, inputs)
    m: dict[str, Any] = {}
    for name, p in (("model", pred), ("baseline_mean", mean), ("baseline_nearest", nearest)):
        m[name] = {
            "sc": spectral_convergence(p, target),
            "lsd_db": log_spectral_distance(p, target),
        }
    m["baseline_nearest"]["from"] = held.baseline_from
    m["frames"] = int(len(target))
    frame_lsd = np.array(
        [log_spectral_distance(pred[i : i + 1], target[i : i + 1]) for i in range(len(target))]
    )
    arrays = {"target": target, "model": pred, "mean": mean, "nearest": nearest}
    arrays["frame_lsd_db"] = frame_lsd
    return m, arrays


def beats_baselines(m: dict[str, Any]) -> bool:
    """True when the model's SC and LSD are both below both baselines'."""
    return all(
        m["model"][k] < m[b][k]
        for k in ("sc", "lsd_db")
        for b in ("baseline_mean", "baseline_nearest")
    )


# --------------------------------------------------------------------------- resynthesis


@dataclass
class Resynthesis:
    """Original and resynthesised held-out audio at the analysis rate (segments joined
    with ``SEGMENT_GAP`` s of silence), the render at ``render_rate`` and the metrics."""

    original: np.ndarray
    resynthesis: np.ndarray
    render: np.ndarray
    render_rate: int
    metrics: dict[str, Any]
    boundaries: list[float] = field(default_factory=list)  # seconds where segments join


def resynthesise(
    bundle, segments: list[Segment], *, max_seconds: float = RESYNTH_MAX_SECONDS
) -> Resynthesis:
    """Play each held-out segment through the synth by its own features and compare.

    Each segment's audio drives ``audio_trajectory`` (the ``wms render --audio``
    timbre-transfer path) rendered at ``synth.sample_rate``; the render is resampled
    to the analysis rate, cut to the segment's length and scaled by one gain so its
    RMS matches the original's (the synth's gain, velocity and envelope settings are
    a mixing choice, not the model's; the gain is reported as ``level_match_db``).
    Then: :func:`multi_resolution_stft_distance` (length-weighted mean over segments)
    and the f0 of the render (:func:`rendered_f0`) against the input's f0 over the
    frames voiced in the input.

    Returns:
        :class:`Resynthesis`; ``metrics`` = ``{"stft_distance": {...}, "f0_cents":
        {"median_abs", "p90_abs", "gross_fraction", "frames"}, "level_match_db",
        "render_sample_rate", "seconds", "segments"}``.
    """
    from wms.analysis.audio import resample
    from wms.analysis.pitch import cents_error
    from wms.synth.controls import audio_trajectory
    from wms.synth.network import SynthModel
    from wms.synth.render import render

    cfg = bundle.config
    sr, hop = cfg.audio.sample_rate, cfg.features.hop_size
    rr = int(cfg.synth.sample_rate)
    step_s = max(1, round(cfg.synth.control_interval * rr)) / rr
    model = SynthModel.from_bundle(bundle)
    gap = np.zeros(round(SEGMENT_GAP * sr), np.float32)
    gap_r = np.zeros(round(SEGMENT_GAP * rr), np.float32)
    originals, resyn, renders, weights, dists, errs, gains = [], [], [], [], [], [], []
    starts: list[float] = []
    used = 0.0
    for s in segments:
        if used >= max_seconds:
            break
        y = s.audio[: int(round((max_seconds - used) * sr))]
        n_frames = len(y) // hop
        if n_frames < 2:
            continue
        used += len(y) / sr
        traj = audio_trajectory(
            bundle,
            y,
            audio_rate=sr,
            model=model,
            sample_rate=rr,
            step_seconds=step_s,
            where=f"{s.path} frames {s.start}-{s.stop}",
            voicing_threshold=cfg.pitch.voicing_threshold,
        )
        out, _ = render(model, traj, sample_rate=rr, config=cfg.synth)
        out_r = out[: int(math.ceil(len(y) * rr / sr))]
        z = resample(out, rr, sr)[: len(y)]
        z = np.pad(z, (0, len(y) - len(z)))
        ry, rz = (
            float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))),
            float(np.sqrt(np.mean(np.square(z, dtype=np.float64)))),
        )
        g = ry / rz if rz > 0 else 1.0
        z, out_r = (z * g).astype(np.float32), (out_r * g).astype(np.float32)
        gains.append(20 * math.log10(g) if g > 0 else float("-inf"))
        dists.append(multi_resolution_stft_distance(z, y))
        weights.append(len(y))
        f0_out = rendered_f0(out_r, rr, n_frames, hop_seconds=hop / sr, cfg=cfg)
        f0_in, v_in = s.f0[:n_frames], s.voicedness[:n_frames]
        voiced = v_in >= cfg.pitch.voicing_threshold
        errs.append(cents_error(f0_out[:n_frames][voiced], f0_in[voiced]))
        starts.append(sum(len(o) for o in originals) / sr)
        originals += [y, gap]
        resyn += [z, gap]
        renders += [out_r, gap_r]
    if not weights:
        raise DataError("no held-out segment is long enough to resynthesise (2 frames or more)")
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    stft = {k: float(np.dot(w, [d[k] for d in dists])) for k in ("sc", "log_mag_l1", "total")}
    stft["fft_sizes"] = list(STFT_FFT_SIZES)
    stft["hop"] = "fft_size / 4"
    cents = np.abs(np.concatenate(errs))
    f0m: dict[str, Any] = {
        "frames": int(cents.size),
        "tracker": f"estimate_pitch method 'fast' on the render at {rr} Hz",
    }
    if cents.size:
        f0m.update(
            median_abs=float(np.median(cents)),
            p90_abs=float(np.percentile(cents, 90)),
            gross_fraction=float(np.mean(cents > GROSS_CENTS)),
        )
    else:
        f0m.update(median_abs=None, p90_abs=None, gross_fraction=None)
    metrics = {
        "stft_distance": stft,
        "f0_cents": f0m,
        "level_match_db": float(np.median(gains)),
        "render_sample_rate": rr,
        "compared_at_sample_rate": sr,
        "seconds": float(sum(weights) / sr),
        "segments": len(weights),
    }
    if used >= max_seconds:
        metrics["note"] = f"only the first {max_seconds:g} s of held-out audio were resynthesised"
    return Resynthesis(
        np.concatenate(originals[:-1]),
        np.concatenate(resyn[:-1]),
        np.concatenate(renders[:-1]),
        rr,
        metrics,
        starts[1:],
    )


def rendered_f0(
    y: np.ndarray, sample_rate: int, n_frames: int, *, hop_seconds: float, cfg
) -> np.ndarray:
    """f0 (Hz) of a render at the input's frame times ``i * hop_seconds``, ``[n_frames]``.

    Tracked with ``estimate_pitch`` method ``"fast"`` at the render's own rate (hop
    ``hop_seconds`` rounded to samples), then interpolated in log-frequency to the
    input's frame times. At the analysis rate a bright high note has a period of a
    fractional number of samples, and YIN then locks onto 2 or 3 periods (a whole
    number of samples): an error of the measurement, not of the synth.
    """
    from wms.analysis.pitch import estimate_pitch

    hop_r = max(1, round(hop_seconds * sample_rate))
    f, _ = estimate_pitch(
        y,
        sample_rate=sample_rate,
        hop_size=hop_r,
        method="fast",
        fmin=cfg.pitch.fmin,
        fmax=cfg.pitch.fmax,
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
        "description": (
            "the bundle's validation blocks (contiguous, never trained on)"
            if held.source == "validation"
            else "every frame of the given audio, analysed with the bundle's config and input map"
        ),
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
) -> dict[str, Any]:
    """Evaluate a bundle and write ``out_dir/metrics.json``, the report, figures and WAVs.

    Args:
        bundle_path: ``model.wms``.
        out_dir: report folder (created).
        audio: held-out audio file or folder; ``None`` = the bundle's validation blocks.
        cache_dir, jobs: feature cache and analysis processes.

    Returns:
        The metrics dict written to ``metrics.json`` (``"files"`` lists what was written).

    Raises:
        BundleError: missing or corrupt bundle. AudioError: unreadable ``audio``.
        DataError: the validation frames' source files are gone or changed.
        OutputError: ``out_dir`` cannot be written.
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
    held = heldout_data(bundle, audio, cache_dir=cache_dir, jobs=jobs)
    spec, arrays = spectral_metrics(bundle, held)
    resyn = resynthesise(bundle, held.segments)

    metrics: dict[str, Any] = {
        "wms_version": __version__,
        "bundle": bundle_info(bundle),
        "data": data_info(
            held, cfg.features.hop_size, cfg.audio.sample_rate, cfg.pitch.voicing_threshold
        ),
        **spec,
        "beats_both_baselines": beats_baselines(spec),
        "resynthesis": resyn.metrics,
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
            "nearest": arrays["nearest"][r],
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
        out / "original.wav", resyn.original, cfg.audio.sample_rate, what="evaluation copy"
    ).name
    files["resynthesis"] = write_audio(
        out / "resynthesis.wav", resyn.render, resyn.render_rate, what="resynthesis"
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
    r = m["resynthesis"]
    st, fc = r["stft_distance"], r["f0_cents"]
    d = m["data"]
    lines = [
        f"held-out: {m['frames']} frames ({d['seconds']:.1f} s, {d['source']}) from "
        f"{len(d['files'])} file(s)",
        f"{'':<30}{'spectral conv.':>16}{'LSD (dB)':>12}",
    ]
    for key, label in (
        ("model", "model"),
        ("baseline_mean", "baseline: mean spectrum"),
        ("baseline_nearest", "baseline: nearest frame"),
    ):
        lines.append(f"{label:<30}{m[key]['sc']:>16.3f}{m[key]['lsd_db']:>12.2f}")
    lines.append(
        "the model beats both baselines"
        if m["beats_both_baselines"]
        else "the model does NOT beat both baselines"
    )
    cents = (
        f"median |error| {fc['median_abs']:.1f} cents, 90th percentile {fc['p90_abs']:.1f} cents "
        f"over {fc['frames']} voiced frames"
        if fc["frames"]
        else "no voiced frame to compare"
    )
    lines.append(
        f"resynthesis ({r['seconds']:.1f} s): multi-resolution STFT distance {st['total']:.3f} "
        f"(SC {st['sc']:.3f} + log-mag L1 {st['log_mag_l1']:.3f}); f0 {cents}"
    )
    return "\n".join(lines)


def run_evaluate(args) -> int:
    """``wms evaluate BUNDLE [AUDIO] --out DIR [--cache-dir D] [--jobs N]``."""
    m = evaluate(
        args.bundle,
        args.out,
        getattr(args, "audio", None),
        cache_dir=getattr(args, "cache_dir", None),
        jobs=getattr(args, "jobs", None),
    )
    print(format_metrics(m))
    out = Path(args.out)
    print(
        f"report: {out / m['files']['report']} (and {out / m['files']['html']}); metrics: {out / 'metrics.json'}"
    )
    return 0
