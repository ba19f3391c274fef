"""Quality metrics and the baselines a model must beat (docs/DESIGN.md §5).

All functions take numpy log1p magnitude spectra ``[n_frames, K]`` (what the
model predicts and the analysis stores) and work on magnitudes ``expm1(.)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Magnitudes below this many dB under the targets' peak are floored before
#: log-spectral distance: the empty bins of a harmonic spectrum are otherwise
#: measured at -inf dB, and LSD would only rank noise floors.
LSD_FLOOR_DB = -80.0
#: FFT sizes of the multi-resolution STFT distance (hop = size / 4, Hann window).
STFT_FFT_SIZES = (2048, 1024, 512, 256)
#: Magnitudes are clamped to at least this before their log (as auraloss does).
STFT_EPS = 1e-7
#: The floored log-magnitude term clamps both spectra at this many dB under the original's
#: peak (per FFT size) instead: a band the original holds in digital silence (a source
#: resampled from a lower rate) would otherwise charge a render's -100 dB noise there as
#: much as an audible error, as LSD's floor (:data:`LSD_FLOOR_DB`) avoids for empty bins.
STFT_FLOOR_DB = -80.0


def _check(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or len(pred) == 0:
        raise ValueError(
            f"metrics need matching non-empty [n_frames, K] spectra, got {pred.shape} and {target.shape}"
        )
    return pred, target


def band_mask(bands: np.ndarray | None, n_bins: int) -> np.ndarray | None:
    """``[n, K]`` bool, True on the bins ``k < bands[i]`` that count (``None``: all count)."""
    if bands is None:
        return None
    return np.arange(n_bins)[None, :] < np.asarray(bands)[:, None]


def spectral_convergence(
    pred: np.ndarray, target: np.ndarray, *, mask: np.ndarray | None = None
) -> float:
    """``||T - P||_F / ||T||_F`` over all frames, on magnitudes ``expm1`` of the inputs
    (only where ``mask[n, K]`` is True, when given)."""
    pred, target = _check(pred, target)
    p, t = np.expm1(pred), np.expm1(target)
    if mask is not None:
        p, t = p * mask, t * mask
    return float(np.linalg.norm(t - p) / max(np.linalg.norm(t), 1e-12))


def log_spectral_distance(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    floor_db: float = LSD_FLOOR_DB,
    mask: np.ndarray | None = None,
) -> float:
    """Mean over frames of the RMS (over bins) of ``20 log10(|T| / |P|)``, in dB.

    Magnitudes are ``expm1`` of the inputs, floored at ``floor_db`` below the
    targets' peak magnitude (both sides, so a correct silence costs nothing). With
    ``mask[n, K]``, the RMS of each frame is over its True bins, frames with none left out.
    """
    pred, target = _check(pred, target)
    p, t = np.expm1(np.maximum(pred, 0)), np.expm1(target)
    floor = max(t.max(), 1e-12) * 10 ** (floor_db / 20)
    diff = 20 * np.log10(np.maximum(t, floor) / np.maximum(p, floor))
    if mask is None:
        return float(np.sqrt((diff**2).mean(axis=1)).mean())
    n = mask.sum(axis=1)
    rms = np.sqrt((diff**2 * mask).sum(axis=1)[n > 0] / n[n > 0])
    return float(rms.mean()) if len(rms) else 0.0


def mean_spectrum_baseline(train_targets: np.ndarray, n_frames: int) -> np.ndarray:
    """Predict the mean (in log1p) of the training spectra for every frame: ``[n_frames, K]``."""
    return np.repeat(
        np.asarray(train_targets, dtype=np.float32).mean(axis=0, keepdims=True), n_frames, axis=0
    )


def nearest_neighbour_baseline(
    train_inputs: np.ndarray, train_targets: np.ndarray, query_inputs: np.ndarray
) -> np.ndarray:
    """Predict each query frame's spectrum as that of the closest training frame
    (Euclidean, in model-input space): ``[n_query, K]``."""
    from sklearn.neighbors import KDTree

    idx = KDTree(np.asarray(train_inputs, dtype=np.float64)).query(
        np.asarray(query_inputs, dtype=np.float64), k=1, return_distance=False
    )[:, 0]
    return np.asarray(train_targets)[idx]


#: The predictors every report compares.
PREDICTORS = ("model", "baseline_mean", "baseline_nearest")
#: A model whose predicted harmonic energy is this far (dB) under the targets' is dead.
DEAD_ENERGY_DB = -20.0


def spectrum_scores(
    pred: np.ndarray,
    target: np.ndarray,
    harmonic_index: np.ndarray,
    *,
    mask: np.ndarray | None = None,
) -> dict:
    """SC and LSD over all bins and over the harmonic bins only (what the synth plays),
    over the bins where ``mask[n, K]`` (:func:`band_mask`) is True when given.

    Returns ``{"sc", "lsd_db", "harm_sc", "harm_lsd_db"}`` (floats).
    """
    h = np.asarray(harmonic_index)
    hm = None if mask is None else mask[:, h]
    return {
        "sc": spectral_convergence(pred, target, mask=mask),
        "lsd_db": log_spectral_distance(pred, target, mask=mask),
        "harm_sc": spectral_convergence(pred[:, h], target[:, h], mask=hm),
        "harm_lsd_db": log_spectral_distance(pred[:, h], target[:, h], mask=hm),
    }


def energy_ratio_db(
    pred: np.ndarray,
    target: np.ndarray,
    harmonic_index: np.ndarray,
    *,
    mask: np.ndarray | None = None,
) -> float:
    """Mean predicted harmonic energy over the targets', in dB (0 = as loud; -inf = silent)."""
    h = np.asarray(harmonic_index)
    p = np.expm1(np.maximum(np.asarray(pred, np.float64)[:, h], 0.0))
    q = np.expm1(np.asarray(target, np.float64)[:, h])
    if mask is not None:
        p, q = p * mask[:, h], q * mask[:, h]
    ep, eq = float(np.sum(p * p)), float(np.sum(q * q))
    if eq <= 0:
        return 0.0
    return 10 * np.log10(ep / eq) if ep > 0 else float("-inf")


def frame_energy(target: np.ndarray) -> np.ndarray:
    """``[n]`` each frame's energy ``sum_k expm1(target)^2`` (the training loss's measure)."""
    return np.sum(np.expm1(np.asarray(target, np.float64)) ** 2, axis=1)


def sounding(target: np.ndarray, energy_floor: float) -> np.ndarray:
    """``[n]`` bool: frames above ``energy_floor``, the frames the training loss uses
    (``wms.training.losses.frame_weights``) and the figures are computed on."""
    return frame_energy(target) > energy_floor


def relative_floor(target: np.ndarray, silence_db: float) -> float:
    """The energy ``silence_db`` under the 95th-percentile frame of ``target``: how
    ``wms train`` sets the floor for a corpus (``data.silence_db``)."""
    e = frame_energy(target)
    return float(np.percentile(e, 95)) * 10 ** (silence_db / 10) if len(e) else 0.0


def baseline_predictions(
    train_inputs: np.ndarray,
    train_targets: np.ndarray,
    inputs: np.ndarray,
    *,
    energy_floor: float = 0.0,
    train_bands: np.ndarray | None = None,
    n_noise: int = 0,
    train_noise_bands: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """What the two baselines predict for held-out frames with ``inputs[n, D]``:
    ``{"baseline_mean": [n, K], "baseline_nearest": [n, K]}``.

    The mean spectrum averages the sounding training frames only (averaging in silences
    would make it a weaker bar), each bin over the frames where it counts (``train_bands``,
    see :func:`band_mask`); the nearest frame is searched among all of them (a silent input
    lies far from a sounding one). The last ``n_noise`` columns (the noise part) count in
    every frame, or where ``train_noise_bands`` says; the frames' energy is that of the bins
    before them.
    """
    k = train_targets.shape[1] - n_noise
    keep = sounding(train_targets[:, :k], energy_floor)
    if not keep.any():
        keep[:] = True
    if train_bands is None and train_noise_bands is None:
        mean = mean_spectrum_baseline(train_targets[keep], len(inputs))
    else:
        t = np.asarray(train_targets)[keep]
        col = np.arange(t.shape[1])[None, :]
        nb = np.full(len(t), n_noise) if train_noise_bands is None else train_noise_bands[keep]
        kb = np.full(len(t), k) if train_bands is None else np.asarray(train_bands)[keep]
        m = np.where(col < k, col < kb[:, None], col - k < np.asarray(nb)[:, None])
        row = (t * m).sum(axis=0) / np.maximum(m.sum(axis=0), 1)
        mean = np.repeat(row[None, :].astype(np.float32), len(inputs), axis=0)
    return {
        "baseline_mean": mean,
        "baseline_nearest": nearest_neighbour_baseline(train_inputs, train_targets, inputs),
    }


def heldout_report(
    preds: dict[str, np.ndarray],
    target: np.ndarray,
    *,
    harmonic_index: np.ndarray,
    split: str,
    energy_floor: float = 0.0,
    bands: np.ndarray | None = None,
    n_noise: int = 0,
    noise_bands: np.ndarray | None = None,
) -> dict[str, Any]:
    """The model and both baselines on held-out frames, and what that says about the model.

    Args:
        preds: ``{"model", "baseline_mean", "baseline_nearest"}`` predictions ``[n, K]``
            (:func:`baseline_predictions` makes the two baselines).
        target: ``[n, K]`` log1p. harmonic_index: ``[H]`` output index of each harmonic.
        split: ``"test"``, ``"validation"`` or ``"audio"`` (what the frames are).
        energy_floor: only frames above it are scored (:func:`sounding`), as in training:
            a silent frame predicted silent would flatter every predictor. All frames
            are scored when none is above it.
        bands: ``[n]`` bins that count per frame (the rest lie above a low-rate file's own
            Nyquist, docs/DESIGN.md §6.3), or ``None``: all of them.
        n_noise: the last ``n_noise`` columns are the noise part: every figure above is on
            the K bins, and each predictor gets ``noise_lsd_db``, the log-spectral distance
            of the noise band levels on the same frames (only the bands
            ``j < noise_bands[i]`` of each frame when given, as ``bands`` for the bins).

    Returns ``{"split", "frames", "quiet_frames", "model", "baseline_mean",
    "baseline_nearest", "energy_db", "beats_both_baselines", "flags"}``: ``frames`` scored
    and ``quiet_frames`` left out; each predictor's :func:`spectrum_scores`; ``energy_db``
    the model's :func:`energy_ratio_db`; ``beats_both_baselines`` decided on
    ``harm_lsd_db`` (what the synth plays); ``flags`` :func:`quality_flags`.
    """
    noise: dict[str, np.ndarray] = {}
    if n_noise:
        k = target.shape[1] - n_noise
        noise = {"target": target[:, k:], **{n: v[:, k:] for n, v in preds.items()}}
        target, preds = target[:, :k], {n: v[:, :k] for n, v in preds.items()}
    keep = sounding(target, energy_floor)
    if not keep.any():
        keep[:] = True
    target = target[keep]
    preds = {k: v[keep] for k, v in preds.items()}
    mask = None if bands is None else band_mask(np.asarray(bands)[keep], target.shape[1])
    out: dict[str, Any] = {
        "split": split,
        "frames": int(keep.sum()),
        "quiet_frames": int((~keep).sum()),
    }
    if mask is not None:
        out["masked_bins"] = round(float(1.0 - mask.mean()), 4)
    nmask = None
    if noise and noise_bands is not None:
        nmask = band_mask(np.asarray(noise_bands)[keep], n_noise)
        out["masked_noise_bands"] = round(float(1.0 - nmask.mean()), 4)
    for name in PREDICTORS:
        out[name] = spectrum_scores(preds[name], target, harmonic_index, mask=mask)
        if noise:
            lsd = log_spectral_distance(noise[name][keep], noise["target"][keep], mask=nmask)
            out[name]["noise_lsd_db"] = round(float(lsd), 4)
    out["energy_db"] = energy_ratio_db(preds["model"], target, harmonic_index, mask=mask)
    out["beats_both_baselines"] = beats_both_baselines(out)
    out["flags"] = quality_flags(out)
    return out


def beats_both_baselines(m: dict[str, Any]) -> bool:
    """True when the model's harmonic-bin LSD is below both baselines'."""
    return all(
        m["model"]["harm_lsd_db"] < m[b]["harm_lsd_db"]
        for b in ("baseline_mean", "baseline_nearest")
    )


def quality_flags(m: dict[str, Any]) -> list[dict[str, str]]:
    """What is wrong with a model, judged from its held-out figures, with advice.

    ``dead``: the predicted harmonic energy is far (:data:`DEAD_ENERGY_DB`) under the
    targets' — the model learnt (near) silence; ``loses_to_mean``: no better than predicting
    the average spectrum; ``loses_to_nearest``: no better than looking up the closest
    training frame (common after a short budget, or with too little audio).
    """
    flags = []
    model = m["model"]["harm_lsd_db"]
    if m["energy_db"] < DEAD_ENERGY_DB:
        flags.append(
            {
                "flag": "dead",
                "message": f"the model's predictions are {-m['energy_db']:.0f} dB quieter than the "
                "held-out audio: it learnt (near) silence",
                "advice": "check that the recordings are not mostly silence or noise (wms prepare "
                "reports trimmed silence), then train again with a lower train.lr",
            }
        )
    if model >= m["baseline_mean"]["harm_lsd_db"]:
        flags.append(
            {
                "flag": "loses_to_mean",
                "message": f"harmonic LSD {model:.2f} dB is no better than the mean spectrum's "
                f"{m['baseline_mean']['harm_lsd_db']:.2f} dB: the model has not learnt the timbre",
                "advice": "train longer (--max-steps), give it more audio, or lower train.lr if "
                "the loss curve is erratic",
            }
        )
    elif model >= m["baseline_nearest"]["harm_lsd_db"]:
        flags.append(
            {
                "flag": "loses_to_nearest",
                "message": f"harmonic LSD {model:.2f} dB is no better than the nearest training "
                f"frame's {m['baseline_nearest']['harm_lsd_db']:.2f} dB",
                "advice": "train longer (--max-steps) or on more audio; the nearest-frame "
                "lookup is a strong bar when test and training audio are alike",
            }
        )
    return flags


# --------------------------------------------------------------------------- STFT distance


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``|STFT|`` ``[n_frames, n_fft/2+1]``: periodic Hann, centred frames, zero padding."""
    y = np.pad(np.asarray(y, dtype=np.float64), (n_fft // 2, n_fft // 2))
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(frames * w, axis=1))


#: Where "the highs" start in the resynthesis figures (Hz): above what the reference's 16 kHz
#: analysis holds.
HIGH_BAND_HZ = 8000.0


def energy_parts(
    y: np.ndarray,
    sample_rate: int,
    f0: np.ndarray,
    frame_seconds: float,
    *,
    high_hz: float = HIGH_BAND_HZ,
    n_fft: int = 2048,
    lobe_bins: float = 2.0,
) -> dict[str, float]:
    """The energy of ``y`` split as the resynthesis figures need it (sums of STFT power):
    ``{"total", "high", "voiced", "inharmonic"}``.

    Hann STFT of ``n_fft`` samples, hop ``n_fft / 4``. ``high``: the power above ``high_hz``
    (0 when the signal's Nyquist frequency is at or below it). ``voiced``: the power of the
    frames whose ``f0`` (``f0[i]`` Hz at time ``i * frame_seconds``, linearly interpolated;
    0 or NaN = unvoiced) is positive, and ``inharmonic`` the part of it farther than
    ``lobe_bins`` bins (the Hann main lobe) from every multiple of that frame's f0: the
    noise between the harmonics. ``inharmonic / voiced`` is the noise share.
    """
    from scipy.signal import stft

    hop = n_fft // 4
    # frames inside the signal only, unlike stft_magnitude's zero-padded centred frames: an
    # edge frame half full of zeros spreads a steady tone's energy between its harmonics
    freqs, t, z = stft(
        np.asarray(y, np.float64), fs=sample_rate, window="hann", nperseg=n_fft,
        noverlap=n_fft - hop, boundary=None, padded=False,
    )  # fmt: skip
    power = np.abs(z) ** 2  # [bins, frames]
    f0 = np.nan_to_num(np.asarray(f0, np.float64), nan=0.0)
    times = np.arange(len(f0)) * frame_seconds
    f_frame = np.interp(t, times, f0) if len(f0) else 0.0 * t
    voiced = f_frame > 0
    df = sample_rate / n_fft
    safe = np.where(voiced, f_frame, 1.0)
    k = np.round(freqs[:, None] / safe[None, :])
    near = (np.abs(freqs[:, None] - k * safe[None, :]) <= lobe_bins * df) & (k >= 1)
    return {
        "total": float(power.sum()),
        "high": float(power[freqs > high_hz].sum()) if sample_rate / 2 > high_hz else 0.0,
        "voiced": float(power[:, voiced].sum()),
        "inharmonic": float((power * ~near)[:, voiced].sum()),
    }


def multi_resolution_stft_distance(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    fft_sizes: tuple[int, ...] = STFT_FFT_SIZES,
    eps: float = STFT_EPS,
    floor_db: float = STFT_FLOOR_DB,
) -> dict[str, Any]:
    """Multi-resolution STFT distance of ``pred`` to ``target`` (auraloss-style, numpy).

    At each FFT size ``n`` (Hann window of ``n`` samples, hop ``n / 4``, centred
    frames): spectral convergence ``||T| - |P||_F / ||T||_F`` and log-magnitude L1
    ``mean |log max(|T|, eps) - log max(|P|, eps)|`` (natural log). Both signals
    must share one sample rate; the distance has no unit. The floored log-magnitude L1
    is the same mean with both magnitudes clamped at ``floor_db`` under the target's
    peak magnitude at that size (never below ``eps``): what lies that far under the
    original's loudest bin costs nothing, so it is never above the log-magnitude L1.

    Args:
        pred: ``[n]`` the signal judged (e.g. the resynthesis).
        target: ``[n]`` the reference, same length.
        fft_sizes: FFT sizes in samples.
        eps: magnitude floor before the log.
        floor_db: the floored term's clamp, dB under the target's peak (negative).

    Returns:
        ``{"sc", "log_mag_l1", "total", "log_mag_l1_floored", "total_floored",
        "fft_sizes", "per_size": {n: {"sc", "log_mag_l1", "log_mag_l1_floored"}}}``:
        means over the sizes, ``total = sc + log_mag_l1`` and ``total_floored = sc +
        log_mag_l1_floored``. Identical signals give 0; ``pred = g * target`` gives
        ``sc = |g - 1|`` and ``log_mag_l1 = |ln g|`` (bins above ``eps``).

    Raises:
        ValueError: signals of different lengths, empty, not 1-D or not finite.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.ndim != 1 or p.shape != t.shape or p.size == 0:
        raise ValueError(
            f"multi_resolution_stft_distance needs two 1-D signals of one length, got "
            f"{p.shape} and {t.shape}"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("multi_resolution_stft_distance: a signal holds NaN or infinite values")
    per = {}
    for n in fft_sizes:
        mp, mt = stft_magnitude(p, n, n // 4), stft_magnitude(t, n, n // 4)
        sc = float(np.linalg.norm(mt - mp) / max(np.linalg.norm(mt), 1e-12))
        lm = float(np.mean(np.abs(np.log(np.maximum(mt, eps)) - np.log(np.maximum(mp, eps)))))
        floor = max(float(mt.max()) * 10 ** (floor_db / 20), eps)
        lf = float(np.mean(np.abs(np.log(np.maximum(mt, floor)) - np.log(np.maximum(mp, floor)))))
        per[int(n)] = {"sc": sc, "log_mag_l1": lm, "log_mag_l1_floored": lf}
    sc, lm, lf = (
        float(np.mean([v[k] for v in per.values()]))
        for k in ("sc", "log_mag_l1", "log_mag_l1_floored")
    )
    return {
        "sc": sc,
        "log_mag_l1": lm,
        "total": sc + lm,
        "log_mag_l1_floored": lf,
        "total_floored": sc + lf,
        "fft_sizes": [int(n) for n in fft_sizes],
        "per_size": per,
    }


def describe_heldout(m: dict[str, Any]) -> list[str]:
    """Printable lines for a :func:`heldout_report` (``wms train``, ``wms info``): the three
    predictors side by side, the verdict, and a WARNING line per quality flag. A wms 0.1.0
    report (all-bin figures on its validation blocks) prints what it holds."""
    if not m:
        return ["held-out: nothing held out (data.val_fraction = data.test_fraction = 0)"]
    cols = [
        ("model", "model"),
        ("baseline_mean", "mean spectrum"),
        ("baseline_nearest", "nearest frame"),
    ]

    def row(key: str, fmt: str) -> str:
        return "   ".join(f"{label} {m[k][key]:{fmt}}" for k, label in cols)

    quiet = f", {m['quiet_frames']} silent ones left out" if m.get("quiet_frames") else ""
    heading = {
        "test": f"test blocks ({m['frames']} frames{quiet}, never used for a choice)",
        "validation": f"validation blocks ({m['frames']} frames{quiet}; they also chose the "
        "weights)",
        "audio": f"the given audio ({m['frames']} frames{quiet})",
    }
    lines = [heading.get(m["split"], f"{m['split']} ({m['frames']} frames{quiet})")]
    for key, label, fmt in (
        ("harm_lsd_db", "harmonic-bin LSD (dB, what the synth plays)", ".2f"),
        ("lsd_db", "all-bin LSD (dB)", ".2f"),
        ("harm_sc", "harmonic-bin spectral convergence", ".3f"),
        ("noise_lsd_db", "noise-band LSD (dB)", ".2f"),
    ):
        if all(key in m[k] for k, _ in cols):
            lines.append(f"  {label}: {row(key, fmt)}")
    if "beats_both_baselines" in m:
        verdict = "beats" if m["beats_both_baselines"] else "does NOT beat"
        lines.append(
            f"  the model {verdict} both baselines; predicted energy {m['energy_db']:+.1f} dB "
            "vs the held-out audio"
        )
    for f in m.get("flags", []):
        lines.append(f"WARNING: {f['message']}. {f['advice']}")
    return lines
