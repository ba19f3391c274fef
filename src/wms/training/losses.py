"""Training losses on log1p magnitude spectra (docs/DESIGN.md §2).

Stateless functions with torch-style ``reduction`` (``"mean"``, ``"sum"``,
``"none"``) and one thin :class:`WMSLoss` module that picks and combines them
from the config (``train.loss``, ``train.smoothness_weight``).

Shapes: predictions and targets are ``[B, ..., K]`` log1p magnitudes, K
frequency bins last. Where a loss is a ratio (spectral convergence) it is taken
per item (the first dimension: one sequence ``[T, K]`` or one frame ``[K]``),
and ``reduction`` then acts over items; elementwise losses reduce over all
elements like their ``torch.nn.functional`` namesakes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wms.errors import ConfigError

_REDUCTIONS = ("mean", "sum", "none")
#: The names ``train.loss`` accepts.
LOSSES = ("spectral", "log_spectral", "mse", "weighted_mse")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ConfigError(f"reduction = {reduction!r} is not one of {', '.join(_REDUCTIONS)}")


def _per_item(x: torch.Tensor) -> tuple[int, ...]:
    """Every dimension but the first (the item dimension)."""
    return tuple(range(1, x.ndim))


def spectral_convergence(
    pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean", eps: float = 1e-8
) -> torch.Tensor:
    """``||expm1(target) - expm1(pred)||_F / ||expm1(target)||_F`` per item.

    Args:
        pred, target: ``[B, ..., K]`` log1p magnitudes.
        reduction: over the B per-item ratios; ``"none"`` returns ``[B]``.
        eps: added to the denominator so a silent item does not divide by zero.
    """
    p, t = torch.expm1(pred), torch.expm1(target)
    dims = _per_item(t)
    sc = torch.linalg.vector_norm(t - p, dim=dims) / (torch.linalg.vector_norm(t, dim=dims) + eps)
    return _reduce(sc, reduction)


def log_magnitude_l1(
    pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """L1 distance of log1p magnitudes, elementwise (``F.l1_loss``)."""
    return _reduce(F.l1_loss(pred, target, reduction="none"), reduction)


def spectral_loss(
    pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """The reference's loss: spectral convergence on expm1 + L1 on log1p, per item.

    ``"none"`` returns ``[B]``: each item's convergence plus its mean L1.
    """
    sc = spectral_convergence(pred, target, reduction="none")
    l1 = F.l1_loss(pred, target, reduction="none").mean(dim=_per_item(target))
    return _reduce(sc + l1, reduction)


def log_spectral_loss(
    pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-2, reduction: str = "mean"
) -> torch.Tensor:
    """Spectral convergence + L1 on ``log(magnitude + eps)``, per item.

    The log-domain L1 weighs every bin by its level in dB (down to ``eps``), as
    log-spectral distance does, where L1 on log1p is nearly linear for small
    magnitudes and ignores the valleys between harmonics. With a Softplus output,
    ``log(softplus(z))`` is close to ``z`` for small outputs, so the gradient does
    not vanish there either. ``eps`` ~ 80 dB below a typical peak magnitude (~200).
    """
    sc = spectral_convergence(pred, target, reduction="none")
    p = torch.log(torch.expm1(pred).clamp_min(0) + eps)
    t = torch.log(torch.expm1(target) + eps)
    l1 = F.l1_loss(p, t, reduction="none").mean(dim=_per_item(target))
    return _reduce(sc + l1, reduction)


def mse(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error of log1p magnitudes, elementwise."""
    return _reduce(F.mse_loss(pred, target, reduction="none"), reduction)


def lowfreq_weights(n_bins: int, *, cycles: int) -> torch.Tensor:
    """Per-bin weights ``1 / (1 + k / N)``, scaled to mean 1: ``[K]``.

    Bin ``k`` holds harmonic ``k / N``, so the weight falls like 1 / harmonic
    number: the fundamental and low harmonics, which carry most of the energy
    and the perceived timbre, count most.
    """
    w = 1.0 / (1.0 + torch.arange(n_bins, dtype=torch.float32) / cycles)
    return w / w.mean()


def weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """``weights[k] * (pred - target)**2``, elementwise; ``weights`` is ``[K]``."""
    return _reduce(weights * (pred - target) ** 2, reduction)


def smoothness_penalty(pred: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Squared first difference along frequency: ``(pred[..., k+1] - pred[..., k])**2``.

    Elementwise over ``[B, ..., K-1]``; it discourages ragged spectra.
    """
    return _reduce(torch.diff(pred, dim=-1) ** 2, reduction)


class WMSLoss(nn.Module):
    """The configured training loss: ``loss(pred, target) + w * smoothness(pred)``.

    Args:
        name: one of :data:`LOSSES`.
        n_bins: K (for the weights of ``"weighted_mse"``).
        cycles: bins between harmonics, ``features.bins_per_harmonic`` (bin cycles*h is harmonic h).
        smoothness_weight: weight of :func:`smoothness_penalty` (0 disables it).
    """

    def __init__(self, name: str, *, n_bins: int, cycles: int, smoothness_weight: float = 0.0):
        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"train.loss = {name!r} is not one of {', '.join(LOSSES)}")
        self.name, self.smoothness_weight = name, float(smoothness_weight)
        self.register_buffer("weights", lowfreq_weights(n_bins, cycles=cycles), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == "spectral":
            loss = spectral_loss(pred, target)
        elif self.name == "log_spectral":
            loss = log_spectral_loss(pred, target)
        elif self.name == "mse":
            loss = mse(pred, target)
        else:
            loss = weighted_mse(pred, target, self.weights)
        if self.smoothness_weight > 0:
            loss = loss + self.smoothness_weight * smoothness_penalty(pred)
        return loss
