"""What every export shares: the model's metadata, the check inputs, a PyTorch reference,
and the verification summary (docs/EXPORT.md).

Every export takes a loaded :class:`wms.bundle.Bundle` and reads the model contract from
``bundle.interface`` (:class:`wms.interface.ModelInterface`): nothing here re-derives the
input width, the log-pitch formula or the harmonic layout.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wms import __version__
from wms.errors import ExportError
from wms.io import json_data, write_text
from wms.training.model import WMSNet

#: Version of the exported metadata layout (``wms_constants.json``, ONNX/TorchScript metadata).
EXPORT_FORMAT_VERSION = 2
#: Max abs difference allowed between an exported model and PyTorch.
TOLERANCE = 1e-5
#: How a host builds each table's harmonics (``synth.phases``; docs/EXPORT.md).
PHASE_LAW = {
    "zero": "sum_h amp[h] cos(2 pi h n / S): zero phase",
    "schroeder": "sum_h amp[h] cos(2 pi h n / S - pi h (h - 1) / H), H = the number of "
    "harmonics (Schroeder phases)",
}
#: Recurrent steps run in every model round trip (h fed back each step).
CHECK_STEPS = 1000
#: PyTorch's Softplus default: above this the output is the input.
SOFTPLUS_THRESHOLD = 20.0
SUMMARY_NAME = "export_summary.json"
#: ``model.output`` of the metadata of a harmonics-only model.
_OUTPUT_TEXT = "log1p magnitudes [K]; expm1 gives linear magnitudes"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well it matched PyTorch.

    Attributes:
        format: one of :data:`FORMATS`.
        out_dir: the folder written.
        files: the files written (summary included).
        checks: check name -> max abs difference.
        tolerance: the largest difference each check allowed.
        info: format-specific facts (steps, frames, f0 ...).
    """

    format: str
    out_dir: Path
    files: tuple[Path, ...]
    checks: dict[str, float]
    tolerance: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        return max(self.checks.values())


def check_inputs(bundle: Any, n_steps: int = CHECK_STEPS, *, seed: int = 0) -> np.ndarray:
    """A deterministic, smoothly moving input sequence ``[n_steps, D]`` for round trips.

    The path glides (linear interpolation over ~25 steps) between randomly chosen
    training-map frames (f0 in log frequency), with a small jitter (2 % of each
    control's range) so every step differs: the inputs a host would send.
    """
    if n_steps < 1:
        raise ExportError(f"n_steps = {n_steps}: the check needs at least one step")
    rng = np.random.default_rng(seed)
    tm, interface = bundle.training_map, bundle.interface
    names = interface.control_names
    n_knots = max(2, n_steps // 25 + 2)
    idx = rng.integers(0, len(tm["f0"]), n_knots)
    t_knots = np.linspace(0, n_steps - 1, n_knots)
    t = np.arange(n_steps)
    controls = np.stack(
        [
            np.interp(t, t_knots, np.asarray(tm["controls"], np.float64)[idx, j])
            for j in range(len(names))
        ],
        1,
    ).reshape(n_steps, len(names))
    width = interface.control_ranges[:, 1] - interface.control_ranges[:, 0]
    controls = controls + rng.normal(size=controls.shape) * 0.02 * width
    f0 = np.exp(
        np.interp(t, t_knots, np.log(np.maximum(np.asarray(tm["f0"], np.float64)[idx], 1e-3)))
    )
    voiced = np.clip(np.interp(t, t_knots, np.asarray(tm["voicedness"], np.float64)[idx]), 0.0, 1.0)
    return interface.inputs(controls, f0, voiced)


def export_metadata(bundle: Any) -> dict[str, Any]:
    """The constants a host needs, as plain JSON data (shared by all formats).

    Holds the model shape, the model interface (``wms.interface``: control names, ranges
    and defaults, the log-pitch mapping, voicedness, the output layout), the input columns
    and mapping spelled out for hosts, the fitted input map (MFCC mean/std, reducer), the
    spectrum layout (K bins, N cycles per window, n_fft, analysis rate) and the synth's
    table size. A model with a noise part also gets ``noise`` (:func:`noise_metadata`); a
    harmonics-only model's metadata has no such key (and is what wms wrote before).
    """
    m, cfg, i = bundle.model, bundle.config, bundle.interface
    meta = {
        "format": "wms-export",
        "format_version": EXPORT_FORMAT_VERSION,
        "wms_version": __version__,
        "model": {
            "n_inputs": m.n_inputs,
            "n_outputs": m.n_outputs,
            "encoder_size": m.input_encoder[0].out_features,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "output_activation": m.output_activation,
            "softplus_threshold": SOFTPLUS_THRESHOLD,
            "output": _OUTPUT_TEXT
            if not i.n_noise
            else f"log1p magnitudes [K = {i.outputs.n_bins}], then log1p noise band levels "
            f"[B = {i.n_noise}] (see noise); expm1 gives linear values",
        },
        "interface": i.to_state(),
        "inputs": {
            "columns": i.input_names,
            "control_names": list(i.control_names),
            "control_ranges": i.control_ranges.tolist(),
            "control_defaults": i.control_defaults.tolist(),
            "log_pitch": {
                "formula": "log(max(f0_hz, fmin) - fmin + eps)",
                "fmin": i.fmin,
                "eps": i.log_pitch_eps,
            },
            "f0_range": list(i.f0_range),
            "include_voicedness": i.include_voicedness,
            "voicedness_range": [0.0, 1.0],
        },
        "input_map": json_data(bundle.input_map.to_state()),
        "spectrum": {
            "n_bins": i.outputs.n_bins,
            "cycles_per_table": cfg.features.cycles_per_window,
            "bins_per_harmonic": i.outputs.bins_per_harmonic,
            "harmonic_offset": i.outputs.harmonic_offset,
            "harmonic_stride": i.outputs.harmonic_stride,
            "n_harmonics": i.n_harmonics,
            "n_fft": cfg.features.n_fft,
            "window_size": cfg.features.window_size,
            "analysis_sample_rate": i.sample_rate,
            "harmonic_bins": "harmonic h (1-based) is output harmonic_offset + "
            "harmonic_stride * (h - 1); for spectrum bins that is bin B*h, "
            "B = bins_per_harmonic = N * n_fft / window_size",
        },
        "synth": {
            "table_size": cfg.synth.table_size,
            "sample_rate": cfg.synth.sample_rate,
            "phases": cfg.synth.phases,
            "phase_law": PHASE_LAW[cfg.synth.phases],
        },
    }
    if i.n_noise:
        meta["noise"] = noise_metadata(i, cfg.synth.noise_stages)
    return meta


def noise_metadata(interface: Any, stages: int) -> dict[str, Any]:
    """The noise part spelled out for a host (docs/EXPORT.md "The noise part"): where its
    outputs are, the band edges, and every constant of the generator, the filter design
    (``stages``: the bundle's ``synth.noise_stages``) and the level normalisation
    :mod:`wms.noise` and the engine use. Enough to rebuild :func:`wms.noise.band_filters` at
    any output rate from this data alone (tested)."""
    from wms import noise
    from wms.synth.tables import BAND_EDGE, TABLE_RMS

    i = interface
    edges = np.asarray(i.noise_edges, dtype=np.float64)
    return {
        "n_bands": i.n_noise,
        "offset": i.outputs.noise_offset,
        "outputs": "y[offset + b], b = 0 .. n_bands - 1, is log1p of band b's level v_b; "
        "v_b = max(expm1(y[offset + b]), 0) is in the harmonic amplitudes' units: the band "
        "holds the power of a harmonic of amplitude v_b",
        "band_edges_hz": [float(e) for e in edges],
        "band_centres_hz": [float(c) for c in noise.band_centres(edges)],
        "bands": "band b spans band_edges_hz[b] .. band_edges_hz[b + 1] (Hz, absolute, not "
        "pitch-relative): n_bands bands equally spaced on the Slaney mel scale from 0 to the "
        "analysis Nyquist frequency",
        "analysis_sample_rate": int(i.sample_rate),
        "level": {
            "table_rms": TABLE_RMS,
            "level_floor": float(i.level_floor),
            "formula": "per control step: r = sqrt((sum_h amp[h]^2 + sum_b v_b^2) / 2); "
            "scale = table_rms / max(r, level_floor) (0 when r = 0); the harmonics play "
            "amp[h] * scale (a table of RMS table_rms when r >= level_floor), band b the gain g_b = scale * v_b * coef_b",
        },
        "generator": {
            "lcg_a": noise.LCG_A,
            "lcg_c": noise.LCG_C,
            "modulus": 2**32,
            "sample_scale": 2.0**-31,
            "source_variance": noise.SOURCE_VARIANCE,
            "formula": "state = (lcg_a * state + lcg_c) mod 2**32, then x = state * "
            "sample_scale - 1 (uniform in [-1, 1), variance 1/3); one draw per band per "
            "sample, bands in order 0 .. n_bands - 1",
            "seed": "voice v (0-based) starts at state (2654435761 * (v + 1)) mod 2**32",
            "seed_multiplier": 2654435761,
        },
        "filter": {
            "stages": int(stages),
            "stage_q": noise.stage_q(stages),
            "gain_samples": noise.GAIN_SAMPLES,
            "band_edge": BAND_EDGE,
            "design": "at the host's output rate sr: fc = sqrt(lo * hi) (hi / 2 for the band "
            "from 0 Hz), Q = fc / (hi - lo) * stage_q, w0 = 2 pi fc / sr, alpha = sin(w0) / "
            "(2 Q), b0 = alpha / (1 + alpha), a1 = -2 cos(w0) / (1 + alpha), a2 = (1 - alpha) "
            "/ (1 + alpha) (RBJ band-pass, constant 0 dB peak); `stages` identical stages in "
            "cascade, each y[n] = b0 (x[n] - x[n-2]) - a1 y[n-1] - a2 y[n-2]; stage_q = "
            "sqrt(2 ** (1 / stages) - 1) puts the cascade's -3 dB points at the band edges",
            "power_gain": "G = sum of h[n]^2 over the cascade's first gain_samples impulse "
            "response samples h[0 ..] (float64)",
            "coef": "coef = fade(fc) / sqrt(2 * source_variance * G), fade(f) = 1 up to "
            "band_edge * sr / 2, 0.5 + 0.5 cos(pi (f - band_edge sr/2) / ((1 - band_edge) "
            "sr/2)) above, 0 at and above sr / 2; a band with fade 0 is silent (b0 = a1 = "
            "a2 = coef = 0)",
        },
        "synthesis": "per voice and output sample j of a control step of L samples, a = (j + "
        "1) / L: for each band b draw x, run it through the band's stages in turn (transposed "
        "direct form II: u = b0 x + s1, s1 = s2 - a1 u, s2 = -b0 x - a2 u), and add "
        "((1 - a) g_prev_b + a g_next_b) * u; the sum is multiplied by the voice's level, "
        "envelope and velocity, like its tables, and added to the harmonic signal. g_next of "
        "a step becomes g_prev of the next; a new voice starts with g_prev = g_next and zero "
        "filter state",
        "wavetable": "the wavetable bank export holds only the harmonic part",
    }


# --------------------------------------------------------------------------- reference


def eval_copy(model: WMSNet) -> WMSNet:
    """A float32, eval-mode copy: exports never change the caller's model."""
    return copy.deepcopy(model).float().eval()


@torch.no_grad()
def torch_reference(model: WMSNet, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch outputs for ``inputs[T, D]`` from a zero state (eval mode).

    Returns ``{"pre": [T, K] before the output activation, "y": [T, K],
    "h": [L, 1, H] final state}`` as float32.
    """
    model = eval_copy(model)
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))[None]
    y, h = model(x)
    z, _ = model.gru(model.input_encoder(x))
    pre = model.dense_layers[2](model.dense_layers[1](model.dense_layers[0](z)))
    return {"pre": pre[0].numpy(), "y": y[0].numpy(), "h": h.numpy()}


def softplus(x: np.ndarray) -> np.ndarray:
    """PyTorch's Softplus (beta 1, threshold 20): ``x`` above 20, else ``log1p(exp(x))``."""
    x = np.asarray(x)
    return np.where(x > SOFTPLUS_THRESHOLD, x, np.log1p(np.exp(np.minimum(x, SOFTPLUS_THRESHOLD))))


def apply_output_activation(pre: np.ndarray, activation: str) -> np.ndarray:
    """The model's output activation (``softplus``, ``relu`` or ``none``) in numpy."""
    if activation == "softplus":
        return softplus(pre)
    if activation == "relu":
        return np.maximum(pre, 0.0)
    if activation == "none":
        return np.asarray(pre)
    raise ExportError(f"unknown output activation {activation!r}")


def numpy_forward(
    weights: Mapping[str, Any],
    inputs: np.ndarray,
    *,
    num_layers: int,
    output_activation: str,
) -> dict[str, np.ndarray]:
    """WMSNet's forward pass from the exported JSON, written from the equations (float64).

    Reads only ``weights`` (the ``wms_model.json`` object). PyTorch GRU, gates
    stacked (r, z, n) in ``weight_ih`` / ``weight_hh`` / biases::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Args:
        inputs: ``[T, D]``; the state starts at zero.

    Returns:
        ``{"pre": [T, K], "y": [T, K], "h": [L, 1, H]}``.
    """

    def w(key: str) -> np.ndarray:
        if key not in weights:
            raise ExportError(f"RTNeural JSON has no {key!r}")
        # Values are float32 written in shortest form: round to float32 as C++ does.
        return np.asarray(weights[key], dtype=np.float32).astype(np.float64)

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    enc_w, enc_b = w("input_encoder.0.weight"), w("input_encoder.0.bias")
    gru = [
        tuple(w(f"gru.{p}_l{layer}") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        for layer in range(num_layers)
    ]
    d0_w, d0_b = w("dense_layers.0.weight"), w("dense_layers.0.bias")
    d2_w, d2_b = w("dense_layers.2.weight"), w("dense_layers.2.bias")
    hidden = gru[0][1].shape[1]
    h = np.zeros((num_layers, hidden))
    x_all = np.asarray(inputs, dtype=np.float32).astype(np.float64)
    pre = np.empty((len(x_all), d2_w.shape[0]))
    for t, x in enumerate(x_all):
        v = np.maximum(enc_w @ x + enc_b, 0.0)
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(gru):
            gi, gh = w_ih @ v + b_ih, w_hh @ h[layer] + b_hh
            r = sigmoid(gi[:hidden] + gh[:hidden])
            z = sigmoid(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])
            n = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
            h[layer] = (1.0 - z) * n + z * h[layer]
            v = h[layer]
        pre[t] = d2_w @ np.maximum(d0_w @ v + d0_b, 0.0) + d2_b
    return {
        "pre": pre,
        "y": apply_output_activation(pre, output_activation),
        "h": h[:, None, :],
    }


def max_scaled_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max(1, |b|)``: absolute for values up to 1, relative above. For
    values that reach tens (a network's pre-activations of silent bins), where float32
    itself steps by ~2e-6 and a 1e-5 absolute bound would only measure rounding."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = max_diff(a, b)
    if not math.isfinite(d) or not a.size:
        return d
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ExportError(f"export check: shapes differ, {a.shape} vs {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def step_loop(step, inputs: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``step(x[1, D], h) -> (y[1, K], h')`` over ``inputs[T, D]``, feeding h back."""
    h, ys = h0, []
    for x in inputs:
        y, h = step(x[None, :], h)
        ys.append(np.asarray(y)[0])
    return np.stack(ys), np.asarray(h)


def float32_lists(a: Any) -> Any:
    """Nested lists of float32 values in their shortest round-trip decimal form."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return float(str(a))
    flat = [float(str(v)) for v in a.ravel()]
    return np.array(flat, dtype=object).reshape(a.shape).tolist() if a.ndim > 1 else flat


def finish(
    fmt: str,
    out: Path,
    files: list[Path],
    checks: dict[str, float],
    tolerance: float,
    info: dict[str, Any],
) -> ExportResult:
    """Write the verification summary, then raise if any check failed."""
    passed = all(v <= tolerance for v in checks.values())
    summary = {
        "format": fmt,
        "wms_version": __version__,
        "files": [p.name for p in files],
        "max_abs_diff": checks,
        "tolerance": tolerance,
        "passed": passed,
        **info,
    }
    files = [*files, write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")]
    if not passed:
        bad = ", ".join(f"{k} = {v:.3g}" for k, v in checks.items() if not v <= tolerance)
        raise ExportError(
            f"{out}: the {fmt} export does not match the PyTorch model ({bad} > "
            f"tolerance {tolerance:g}); see {out / SUMMARY_NAME}"
        )
    return ExportResult(fmt, out, tuple(files), checks, tolerance, info)
