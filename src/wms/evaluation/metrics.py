"""Held-out quality metrics and the baselines a model must beat (DESIGN.md §5).

All functions take numpy log1p magnitude spectra ``[n_frames, K]`` (what the
model predicts and the analysis stores) and work on magnitudes ``expm1(.)``.
"""

from __future__ import annotations

import numpy as np

from wms.errors import DataError

#: Magnitudes below this many dB under the targets' peak are floored before
#: log-spectral distance: the empty bins of a harmonic spectrum are otherwise
#: measured at -inf dB, and LSD would only rank noise floors.
LSD_FLOOR_DB = -80.0


def _check(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or len(pred) == 0:
        raise DataError(
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
