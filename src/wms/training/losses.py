"""Training losses on log1p magnitude spectra (docs/DESIGN.md §2, §6.1).

Stateless functions with torch-style ``reduction`` (``"mean"``, ``"sum"``, ``"none"``),
including the reference's per-sequence formulas, and one :class:`WMSLoss` module that
training uses: the configured loss (``train.loss``, ``train.smoothness_weight``) made robust
to silence (batch-pooled convergence, quiet frames left out).

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
    raise ValueError(f"reduction = {reduction!r} is not one of {', '.join(_REDUCTIONS)}")


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


def frame_weights(target: torch.Tensor, energy_floor: float) -> torch.Tensor:
    """``[B, T]`` (or ``[B]``) 1.0 for frames whose energy ``sum_k expm1(target)^2`` exceeds
    ``energy_floor``, else 0.0: the quiet frames a silence-robust loss leaves out."""
    energy = torch.sum(torch.expm1(target) ** 2, dim=-1)
    return (energy > energy_floor).to(target.dtype)


def band_mask(bands: torch.Tensor, n_bins: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., K]`` 1.0 on bins ``k < bands[...]``, else 0.0 (bins above a low-rate file's
    own Nyquist: :func:`wms.analysis.features.bins_below`)."""
    k = torch.arange(n_bins, device=bands.device)
    return (k < bands.unsqueeze(-1)).to(dtype)


def pooled_convergence(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Spectral convergence pooled over the whole batch, on kept frames only:
    ``||w (T - P)||_F / ||w T||_F`` on magnitudes ``expm1`` (``w`` per frame, 0 or 1, or per
    bin ``[..., K]``).

    Unlike the per-sequence ratio, a silent sequence cannot make it explode: its frames are
    left out, and the denominator is the batch's sounding energy. 0 when nothing is kept.
    """
    w = weight if weight.dim() == pred.dim() else weight.unsqueeze(-1)
    p, t = torch.expm1(pred), torch.expm1(target)
    num = torch.linalg.vector_norm(w * (t - p))
    den = torch.linalg.vector_norm(w * t)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


def masked_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``x[..., K]`` over the kept frames (``weight[...]`` 0 or 1) and the K bins, or,
    with ``weight[..., K]``, over the kept bins of every frame."""
    if weight.dim() == x.dim():
        return (x * weight).sum() / weight.sum().clamp_min(1.0)
    kept = weight.sum()
    return (x.mean(dim=-1) * weight).sum() / kept.clamp_min(1.0)


class WMSLoss(nn.Module):
    """The configured training loss: ``loss(pred, target) + w * smoothness(pred)``.

    Robust to silence (docs/DESIGN.md §6.1): frames whose target energy is at most
    ``energy_floor`` are left out of every term, and spectral convergence is pooled over the
    batch (:func:`pooled_convergence`) instead of divided per sequence, so a quiet sequence
    can neither dominate a batch nor produce an enormous loss.

    Args:
        name: one of :data:`LOSSES`: ``spectral`` (pooled convergence + L1 on log1p),
            ``log_spectral`` (pooled convergence + L1 on ``log(magnitude + 0.01)``), ``mse``,
            ``weighted_mse``.
        n_bins: K (for the weights of ``"weighted_mse"``).
        cycles: bins between harmonics, ``features.bins_per_harmonic`` (bin cycles*h is harmonic h).
        smoothness_weight: weight of :func:`smoothness_penalty` (0 disables it).
        energy_floor: frame energy (sum of squared magnitudes) at or below which a frame is
            left out; 0 keeps every frame with any energy.
        n_noise: the last ``n_noise`` outputs are the noise part (docs/DESIGN.md §1.7): they
            get the same loss as the bins (``spectral``/``log_spectral``: their own pooled
            convergence and L1; ``mse``/``weighted_mse``: unweighted squared error) on the
            same kept frames (and bands: ``noise_bands``), added with weight 1; ``n_bins``
            counts the bins only.
    """

    def __init__(
        self,
        name: str,
        *,
        n_bins: int,
        cycles: int,
        smoothness_weight: float = 0.0,
        energy_floor: float = 0.0,
        n_noise: int = 0,
    ):
        super().__init__()
        self.n_noise = int(n_noise)
        if name not in LOSSES:
            raise ValueError(f"train.loss = {name!r} is not one of {', '.join(LOSSES)}")
        self.name, self.smoothness_weight = name, float(smoothness_weight)
        self.energy_floor = float(energy_floor)
        self.register_buffer("weights", lowfreq_weights(n_bins, cycles=cycles), persistent=False)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        bands: torch.Tensor | None = None,
        noise_bands: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``bands[B, T]``: bins that count per frame (the rest are masked out), or ``None``;
        ``noise_bands[B, T]``: the same for the noise part's bands."""
        if self.n_noise:
            k = pred.shape[-1] - self.n_noise
            loss = self._bins(pred[..., :k], target[..., :k], bands)
            wf = frame_weights(target[..., :k], self.energy_floor)
            if noise_bands is not None:
                wf = wf.unsqueeze(-1) * band_mask(noise_bands, self.n_noise, pred.dtype)
            pn, tn = pred[..., k:], target[..., k:]
            if self.name in ("spectral", "log_spectral"):
                noise = pooled_convergence(pn, tn, wf) + masked_mean((pn - tn).abs(), wf)
            else:
                noise = masked_mean((pn - tn) ** 2, wf)
            return loss + noise
        return self._bins(pred, target, bands)

    def _bins(
        self, pred: torch.Tensor, target: torch.Tensor, bands: torch.Tensor | None
    ) -> torch.Tensor:
        w = frame_weights(target, self.energy_floor)
        if bands is not None:
            m = band_mask(bands, pred.shape[-1], pred.dtype)
            w = w.unsqueeze(-1) * m
        if self.name == "spectral":
            loss = pooled_convergence(pred, target, w) + masked_mean((pred - target).abs(), w)
        elif self.name == "log_spectral":
            eps = 1e-2
            p = torch.log(torch.expm1(pred).clamp_min(0) + eps)
            t = torch.log(torch.expm1(target) + eps)
            loss = pooled_convergence(pred, target, w) + masked_mean((p - t).abs(), w)
        elif self.name == "mse":
            loss = masked_mean((pred - target) ** 2, w)
        else:
            loss = masked_mean(self.weights * (pred - target) ** 2, w)
        if self.smoothness_weight > 0:
            ws = w[..., 1:] if w.dim() == pred.dim() else w
            loss = loss + self.smoothness_weight * masked_mean(torch.diff(pred, dim=-1) ** 2, ws)
        return loss
