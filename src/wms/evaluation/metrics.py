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


def _check(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or len(pred) == 0:
        raise ValueError(
            f"metrics need matching non-empty [n_frames, K] spectra, got {pred.shape} and {target.shape}"
        )
    return pred, target


def spectral_convergence(pred: np.ndarray, target: np.ndarray) -> float:
    """``||T - P||_F / ||T||_F`` over all frames, on magnitudes ``expm1`` of the inputs."""
    pred, target = _check(pred, target)
    p, t = np.expm1(pred), np.expm1(target)
    return float(np.linalg.norm(t - p) / max(np.linalg.norm(t), 1e-12))


def log_spectral_distance(
    pred: np.ndarray, target: np.ndarray, *, floor_db: float = LSD_FLOOR_DB
) -> float:
    """Mean over frames of the RMS (over bins) of ``20 log10(|T| / |P|)``, in dB.

    Magnitudes are ``expm1`` of the inputs, floored at ``floor_db`` below the
    targets' peak magnitude (both sides, so a correct silence costs nothing).
    """
    pred, target = _check(pred, target)
    p, t = np.expm1(np.maximum(pred, 0)), np.expm1(target)
    floor = max(t.max(), 1e-12) * 10 ** (floor_db / 20)
    diff = 20 * np.log10(np.maximum(t, floor) / np.maximum(p, floor))
    return float(np.sqrt((diff**2).mean(axis=1)).mean())


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


def heldout_report(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    inputs: np.ndarray,
    train_inputs: np.ndarray,
    train_targets: np.ndarray,
) -> dict[str, float]:
    """Model and baseline figures on held-out frames.

    Returns ``{"lsd_db", "sc", "lsd_db_mean_baseline", "sc_mean_baseline",
    "lsd_db_nn_baseline", "sc_nn_baseline", "n_frames"}``.
    """
    mean = mean_spectrum_baseline(train_targets, len(target))
    nn = nearest_neighbour_baseline(train_inputs, train_targets, inputs)
    return {
        "lsd_db": log_spectral_distance(pred, target),
        "sc": spectral_convergence(pred, target),
        "lsd_db_mean_baseline": log_spectral_distance(mean, target),
        "sc_mean_baseline": spectral_convergence(mean, target),
        "lsd_db_nn_baseline": log_spectral_distance(nn, target),
        "sc_nn_baseline": spectral_convergence(nn, target),
        "n_frames": int(len(target)),
    }


# --------------------------------------------------------------------------- STFT distance


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``|STFT|`` ``[n_frames, n_fft/2+1]``: periodic Hann, centred frames, zero padding."""
    y = np.pad(np.asarray(y, dtype=np.float64), (n_fft // 2, n_fft // 2))
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(frames * w, axis=1))


def multi_resolution_stft_distance(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    fft_sizes: tuple[int, ...] = STFT_FFT_SIZES,
    eps: float = STFT_EPS,
) -> dict[str, Any]:
    """Multi-resolution STFT distance of ``pred`` to ``target`` (auraloss-style, numpy).

    At each FFT size ``n`` (Hann window of ``n`` samples, hop ``n / 4``, centred
    frames): spectral convergence ``||T| - |P||_F / ||T||_F`` and log-magnitude L1
    ``mean |log max(|T|, eps) - log max(|P|, eps)|`` (natural log). Both signals
    must share one sample rate; the distance has no unit.

    Args:
        pred: ``[n]`` the signal judged (e.g. the resynthesis).
        target: ``[n]`` the reference, same length.
        fft_sizes: FFT sizes in samples.
        eps: magnitude floor before the log.

    Returns:
        ``{"sc", "log_mag_l1", "total", "fft_sizes", "per_size": {n: {"sc",
        "log_mag_l1"}}}``: ``sc`` and ``log_mag_l1`` are means over the sizes and
        ``total = sc + log_mag_l1``. Identical signals give 0; ``pred = g * target``
        gives ``sc = |g - 1|`` and ``log_mag_l1 = |ln g|`` (bins above ``eps``).

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
        per[int(n)] = {"sc": sc, "log_mag_l1": lm}
    sc = float(np.mean([v["sc"] for v in per.values()]))
    lm = float(np.mean([v["log_mag_l1"] for v in per.values()]))
    return {
        "sc": sc,
        "log_mag_l1": lm,
        "total": sc + lm,
        "fft_sizes": [int(n) for n in fft_sizes],
        "per_size": per,
    }
