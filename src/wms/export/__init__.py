"""Exports of a trained model for realtime engines and wavetable synths (``wms export``).

Four formats, each written to its own folder and each checked by a round trip
against the PyTorch model before the export is reported as done:

``rtneural``
    ``wms_model.json`` (the state_dict as nested lists, keys as in
    :class:`~wms.training.model.WMSNet`, read by RTNeural's ``torch_helpers``),
    ``wms_model.h`` (the matching ``RTNeural::ModelT`` type, a loader, the
    input-mapping constants and the output activation), ``wms_constants.json``
    (everything a host needs to map f0 / controls to model inputs) and
    ``wms_test_vectors.json`` (inputs -> expected pre-activation and final
    outputs). Checked by a numpy re-implementation of the forward pass that
    reads only the JSON files.
``onnx``
    ``wms_step.onnx``: one recurrent step ``(x[1, D], h[L, 1, H]) -> (y[1, K],
    h_out[L, 1, H])`` with the metadata in ``metadata_props``. Checked through
    onnxruntime, feeding ``h_out`` back.
``torchscript``
    ``wms_step.pt``: the same step, scripted, metadata in the ``_extra_files``
    entry ``wms_metadata.json``. Checked through ``torch.jit.load``.
``wavetable``
    ``wms_wavetable.wav``: a bank of single-cycle 2048-sample frames along a path
    through the control space, with Serum's ``clm `` and Surge's ``srge`` chunks.
    Checked by re-reading the WAV and comparing each frame's spectrum with the
    harmonic amplitudes the PyTorch model predicts.

Every export writes ``export_summary.json`` (files, max abs differences,
tolerances, pass/fail) and raises :class:`~wms.errors.ExportError` when a check
fails. The export functions take an :class:`ExportSource` (model, config,
input-map state, control names/ranges, training map), so they can be used
without a bundle file; :func:`run_export` builds one from a bundle.

Softplus: RTNeural has no Softplus layer. The RTNeural ``ModelT`` ends at the
last Dense layer; the header provides ``wms::softplus`` / ``wms::applyOutputActivation``
(PyTorch's Softplus, beta 1, threshold 20) for the host to apply to each output,
and the test vectors hold both the pre-activation and the final outputs. ONNX
and TorchScript contain the activation.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wms import __version__
from wms.analysis.features import log_pitch
from wms.config import Config
from wms.errors import ExportError
from wms.synth.tables import GUARD_BEFORE, harmonic_amplitudes, make_tables
from wms.training.model import WMSNet

#: The export formats ``wms export --format`` accepts.
FORMATS = ("rtneural", "onnx", "torchscript", "wavetable")
#: Version of the exported metadata layout (``wms_constants.json``, ONNX/TorchScript metadata).
EXPORT_FORMAT_VERSION = 1
#: Max abs difference allowed between an exported model and PyTorch.
TOLERANCE = 1e-5
#: Recurrent steps run in every model round trip (h fed back each step).
CHECK_STEPS = 1000
#: PyTorch's Softplus default: above this the output is the input.
SOFTPLUS_THRESHOLD = 20.0
#: The constant in ``log_pitch = log(max(f0, fmin) - fmin + eps)`` (DESIGN.md §1.5).
LOG_PITCH_EPS = 1e-4
#: Samples per wavetable frame (what Serum, Vital, Surge and Bitwig expect).
WAVETABLE_FRAME_SIZE = 2048
#: Sample rate written into the wavetable WAV (only a label: a frame is one cycle).
WAVETABLE_SAMPLE_RATE = 44100
#: WAV sample formats for the wavetable and their check tolerances (harmonic amplitude,
#: full scale = 1; 16-bit rounding moves a bin by at most one step, 2**-15 = 3.1e-5).
WAV_FORMATS = {"float": 1e-5, "24": 1e-5, "16": 1e-4}
SUMMARY_NAME = "export_summary.json"
_ONNX_OPSET = 17
_ONNX_IR_VERSION = 8  # the oldest IR that carries opset 17: loads in older runtimes too


# --------------------------------------------------------------------------- source


@dataclass(frozen=True, eq=False)
class ExportSource:
    """Everything an export needs, independent of the bundle file format.

    Attributes:
        model: the network (copied and put in eval mode by each export).
        config: the resolved config the model was trained with.
        input_map: ``InputMap.to_state()``: plain data (MFCC mean/std, reducer,
            fmin, include_voicedness, control names and ranges ...), copied
            verbatim into the exported constants.
        control_names: names of the ``n_timbre`` timbre controls, in input order.
        control_ranges: ``[n_timbre, 2]`` (low, high) of each control on the training data.
        training_map: ``{"controls": [M, n_timbre], "f0": [M] (Hz), "voicedness": [M]}``,
            a subsample of training frames.
        name: what error messages call this source (the bundle path).

    Raises:
        ExportError: inconsistent pieces (input width, control count, missing
            training-map arrays, fmin or include_voicedness disagreeing with the config).
    """

    model: WMSNet
    config: Config
    input_map: Mapping[str, Any]
    control_names: tuple[str, ...]
    control_ranges: np.ndarray
    training_map: Mapping[str, np.ndarray]
    name: str = "model"

    def __post_init__(self) -> None:
        object.__setattr__(self, "control_names", tuple(str(c) for c in self.control_names))
        ranges = np.asarray(self.control_ranges, dtype=np.float64)
        object.__setattr__(self, "control_ranges", ranges)
        n_timbre = len(self.control_names)
        if not isinstance(self.model, WMSNet):
            raise ExportError(f"{self.name}: expected a WMSNet, got {type(self.model).__name__}")
        if ranges.shape != (n_timbre, 2) or not np.all(np.isfinite(ranges)):
            raise ExportError(
                f"{self.name}: control_ranges has shape {ranges.shape}, expected "
                f"[{n_timbre}, 2] finite values for controls {list(self.control_names)}"
            )
        d = n_timbre + 1 + int(self.include_voicedness)
        if self.model.n_inputs != d:
            raise ExportError(
                f"{self.name}: the model takes {self.model.n_inputs} inputs but "
                f"{n_timbre} controls + log-pitch"
                f"{' + voicedness' if self.include_voicedness else ''} make {d}"
            )
        k = self.config.features.n_bins
        if self.model.n_outputs != k:
            raise ExportError(
                f"{self.name}: the model predicts {self.model.n_outputs} bins but "
                f"features.n_bins = {k}"
            )
        for key, cfg_value in (
            ("fmin", self.config.pitch.fmin),
            ("include_voicedness", self.config.features.include_voicedness),
            ("control_names", list(self.control_names)),
        ):
            if key in self.input_map and _jsonable(self.input_map[key]) != cfg_value:
                raise ExportError(
                    f"{self.name}: input map {key} = {self.input_map[key]!r} disagrees with "
                    f"{cfg_value!r} (config / control names)"
                )
        tm = {}
        for key, shape in (
            ("controls", (None, n_timbre)),
            ("f0", (None,)),
            ("voicedness", (None,)),
        ):
            if key not in self.training_map:
                raise ExportError(f"{self.name}: training map has no {key!r} array")
            a = np.asarray(self.training_map[key], dtype=np.float64)
            if a.ndim != len(shape) or (len(shape) == 2 and a.shape[1] != n_timbre):
                raise ExportError(
                    f"{self.name}: training map {key!r} has shape {a.shape}, expected "
                    f"[M{', ' + str(n_timbre) if len(shape) == 2 else ''}]"
                )
            if not np.all(np.isfinite(a)):
                raise ExportError(f"{self.name}: training map {key!r} holds NaN or infinite values")
            tm[key] = a
        m = len(tm["f0"])
        if m == 0 or len(tm["controls"]) != m or len(tm["voicedness"]) != m:
            raise ExportError(
                f"{self.name}: training map arrays must have the same, non-zero length; got "
                f"controls {len(tm['controls'])}, f0 {m}, voicedness {len(tm['voicedness'])}"
            )
        object.__setattr__(self, "training_map", tm)

    @property
    def fmin(self) -> float:
        """Low pitch limit in Hz used by the log-pitch input."""
        return float(self.config.pitch.fmin)

    @property
    def include_voicedness(self) -> bool:
        return bool(self.config.features.include_voicedness)

    @classmethod
    def from_bundle(cls, bundle: Any, name: str) -> ExportSource:
        """Build from a loaded :class:`wms.bundle.Bundle`."""
        imap = bundle.input_map
        state = imap.to_state() if hasattr(imap, "to_state") else dict(imap)
        return cls(
            model=bundle.model,
            config=bundle.config,
            input_map=state,
            control_names=tuple(bundle.control_names),
            control_ranges=np.asarray(bundle.control_ranges),
            training_map=dict(bundle.training_map),
            name=name,
        )


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


# --------------------------------------------------------------------------- inputs


def inputs_from_controls(
    controls: np.ndarray,
    f0: np.ndarray,
    voicedness: np.ndarray,
    *,
    fmin: float,
    include_voicedness: bool,
) -> np.ndarray:
    """Model input rows ``[T, D]`` = ``[controls..., log_pitch(f0), (voicedness)]``, float32.

    Args:
        controls: ``[T, n_timbre]`` timbre controls (already in control space).
        f0: ``[T]`` pitch in Hz. voicedness: ``[T]`` in 0..1.
    """
    cols = [np.asarray(controls, dtype=np.float64), log_pitch(np.asarray(f0), fmin)[:, None]]
    if include_voicedness:
        cols.append(np.asarray(voicedness, dtype=np.float64)[:, None])
    return np.concatenate(cols, axis=1).astype(np.float32)


def check_inputs(src: ExportSource, n_steps: int = CHECK_STEPS, *, seed: int = 0) -> np.ndarray:
    """A deterministic, smoothly moving input sequence ``[n_steps, D]`` for round trips.

    The path glides (linear interpolation over ~25 steps) between randomly chosen
    training-map frames (f0 in log frequency), with a small jitter (2 % of each
    control's range) so every step differs: the inputs a host would send.
    """
    if n_steps < 1:
        raise ExportError(f"n_steps = {n_steps}: the check needs at least one step")
    rng = np.random.default_rng(seed)
    tm = src.training_map
    n_knots = max(2, n_steps // 25 + 2)
    idx = rng.integers(0, len(tm["f0"]), n_knots)
    t_knots = np.linspace(0, n_steps - 1, n_knots)
    t = np.arange(n_steps)
    controls = np.stack(
        [np.interp(t, t_knots, tm["controls"][idx, j]) for j in range(len(src.control_names))], 1
    ).reshape(n_steps, len(src.control_names))
    width = src.control_ranges[:, 1] - src.control_ranges[:, 0]
    controls = controls + rng.normal(size=controls.shape) * 0.02 * width
    f0 = np.exp(np.interp(t, t_knots, np.log(np.maximum(tm["f0"][idx], 1e-3))))
    voiced = np.clip(np.interp(t, t_knots, tm["voicedness"][idx]), 0.0, 1.0)
    return inputs_from_controls(
        controls, f0, voiced, fmin=src.fmin, include_voicedness=src.include_voicedness
    )


# --------------------------------------------------------------------------- metadata


def export_metadata(src: ExportSource) -> dict[str, Any]:
    """The constants a host needs, as plain JSON data (shared by all formats).

    Holds the model shape, the input columns and mapping (log-pitch formula, fmin,
    control names/ranges, voicedness), the fitted input map (MFCC mean/std,
    reducer, verbatim), the spectrum layout (K bins, N cycles per table, n_fft,
    analysis sample rate) and the synth table size.
    """
    m, cfg = src.model, src.config
    columns = [*src.control_names, "log_pitch"] + (["voicedness"] if src.include_voicedness else [])
    return {
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
            "output": "log1p magnitude spectrum [K]; expm1 gives linear magnitudes",
        },
        "inputs": {
            "columns": columns,
            "control_names": list(src.control_names),
            "control_ranges": src.control_ranges.tolist(),
            "log_pitch": {
                "formula": "log(max(f0_hz, fmin) - fmin + eps)",
                "fmin": src.fmin,
                "eps": LOG_PITCH_EPS,
            },
            "include_voicedness": src.include_voicedness,
            "voicedness_range": [0.0, 1.0],
        },
        "input_map": _jsonable(dict(src.input_map)),
        "spectrum": {
            "n_bins": cfg.features.n_bins,
            "cycles_per_table": cfg.features.cycles_per_window,
            "bins_per_harmonic": cfg.features.bins_per_harmonic,
            "n_fft": cfg.features.n_fft,
            "window_size": cfg.features.window_size,
            "analysis_sample_rate": cfg.audio.sample_rate,
            "harmonic_bins": "bin B*h is harmonic h (B = bins_per_harmonic = N * n_fft / window_size)",
        },
        "synth": {"table_size": cfg.synth.table_size, "sample_rate": cfg.synth.sample_rate},
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().tolist()
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    raise ExportError(f"input map value of type {type(x).__name__} cannot be written as JSON")


# --------------------------------------------------------------------------- reference


def _eval_copy(model: WMSNet) -> WMSNet:
    """A float32, eval-mode copy: exports never change the caller's model."""
    return copy.deepcopy(model).float().eval()


@torch.no_grad()
def torch_reference(model: WMSNet, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch outputs for ``inputs[T, D]`` from a zero state (eval mode).

    Returns ``{"pre": [T, K] before the output activation, "y": [T, K],
    "h": [L, 1, H] final state}`` as float32.
    """
    model = _eval_copy(model)
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


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ExportError(f"export check: shapes differ, {a.shape} vs {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# --------------------------------------------------------------------------- files


def prepare_out_dir(out: str | Path) -> Path:
    """Create ``out`` (and parents) and make sure a file can be written in it.

    Raises:
        ExportError: ``out`` is a file, lies under a file, or is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".wms-write-test-"):
            pass
    except OSError as e:
        raise ExportError(f"{out}: cannot write the export there ({e.strerror or e})") from None
    return out


def _write_text(path: Path, text: str) -> Path:
    return _write_bytes(path, text.encode())


def _write_bytes(path: Path, data: bytes) -> Path:
    """Write atomically (temp file + rename) so a failed export leaves no half file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _f32(a: Any) -> Any:
    """Nested lists of float32 values in their shortest round-trip decimal form."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return float(str(a))
    flat = [float(str(v)) for v in a.ravel()]
    return np.array(flat, dtype=object).reshape(a.shape).tolist() if a.ndim > 1 else flat


def _finish(
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
    files = [*files, _write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")]
    if not passed:
        bad = ", ".join(f"{k} = {v:.3g}" for k, v in checks.items() if not v <= tolerance)
        raise ExportError(
            f"{out}: the {fmt} export does not match the PyTorch model ({bad} > "
            f"tolerance {tolerance:g}); see {out / SUMMARY_NAME}"
        )
    return ExportResult(fmt, out, tuple(files), checks, tolerance, info)


# --------------------------------------------------------------------------- rtneural


def rtneural_state_dict(model: WMSNet) -> dict[str, Any]:
    """The state_dict as JSON data: tensor name -> nested lists of float32.

    For GRU layers after the first, RTNeural's ``loadGRU`` reads the fixed suffix
    ``weight_ih_l0``; those layers are therefore also written under aliases
    ``gru_l{i}.weight_ih_l0`` etc. (same values as ``gru.weight_ih_l{i}``).
    """
    sd = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    out = {k: _f32(v) for k, v in sd.items()}
    for layer in range(1, model.num_layers):
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            out[f"gru_l{layer}.{p}_l0"] = out[f"gru.{p}_l{layer}"]
    return out


def rtneural_layers(model: WMSNet) -> list[tuple[str, str | None]]:
    """The RTNeural layer types, in ``ModelT`` order, with the JSON key prefix each loads from."""
    d, k = model.n_inputs, model.n_outputs
    e, h = model.input_encoder[0].out_features, model.hidden_size
    layers: list[tuple[str, str | None]] = [
        (f"RTNeural::DenseT<float, {d}, {e}>", "input_encoder.0."),
        (f"RTNeural::ReLuActivationT<float, {e}>", None),
    ]
    for layer in range(model.num_layers):
        prefix = "gru." if layer == 0 else f"gru_l{layer}."
        layers.append((f"RTNeural::GRULayerT<float, {e if layer == 0 else h}, {h}>", prefix))
    layers += [
        (f"RTNeural::DenseT<float, {h}, {h}>", "dense_layers.0."),
        (f"RTNeural::ReLuActivationT<float, {h}>", None),
        (f"RTNeural::DenseT<float, {h}, {k}>", "dense_layers.2."),
    ]
    return layers


def rtneural_model_type(model: WMSNet) -> str:
    """The C++ ``RTNeural::ModelT<...>`` type matching ``model`` (without the output activation)."""
    inner = ",\n    ".join(t for t, _ in rtneural_layers(model))
    return f"RTNeural::ModelT<float, {model.n_inputs}, {model.n_outputs},\n    {inner}>"


def _cpp_str(s: str) -> str:
    """A C++ string literal (JSON's escaping is valid C++ for these names)."""
    return json.dumps(s)


def rtneural_header(src: ExportSource) -> str:
    """The C++ header: constants, input mapping, ``ModelType``, ``loadModel``, output activation.

    Everything RTNeural-specific sits in ``#ifndef WMS_NO_RTNEURAL`` so the
    constants and helpers can be used (and tested) without RTNeural.
    """
    m, cfg = src.model, src.config
    names = ", ".join(_cpp_str(n) for n in src.control_names) or ""
    ranges = ", ".join(f"{{{lo!r}f, {hi!r}f}}" for lo, hi in _f32(src.control_ranges))
    n_timbre = len(src.control_names)
    loads = []
    for i, (tp, prefix) in enumerate(rtneural_layers(m)):
        if prefix is None:
            continue
        fn = "loadGRU" if "GRULayerT" in tp else "loadDense"
        loads.append(
            f"    RTNeural::torch_helpers::{fn}<float>(modelJson, {_cpp_str(prefix)}, model.get<{i}>());"
        )
    act = m.output_activation
    act_body = {
        "softplus": "y[k] = softplus(y[k]);",
        "relu": "y[k] = y[k] > 0.0f ? y[k] : 0.0f;",
        "none": "(void)y[k];",
    }[act]
    type_lines = rtneural_model_type(m).replace("\n", "\n    ")
    return f"""\
// Generated by `wms export --format rtneural` (wms {__version__}). Do not edit.
// Model: {m.n_inputs} inputs -> {m.n_outputs} log1p magnitude bins; GRU {m.num_layers} x {m.hidden_size}.
// Weights: wms_model.json (PyTorch state_dict, read with RTNeural::torch_helpers).
// Test vectors: wms_test_vectors.json. Full constants: wms_constants.json.
#pragma once

#include <algorithm>
#include <cmath>

namespace wms
{{
// ---- shapes
constexpr int kNumInputs = {m.n_inputs};        // D = timbre controls + log-pitch{" + voicedness" if src.include_voicedness else ""}
constexpr int kNumBins = {m.n_outputs};         // K log1p magnitude bins
constexpr int kHiddenSize = {m.hidden_size};
constexpr int kNumLayers = {m.num_layers};
// ---- spectrum layout: bin B*h is harmonic h, B = N * n_fft / window_size
constexpr int kCyclesPerTable = {cfg.features.cycles_per_window};   // N
constexpr int kBinsPerHarmonic = {cfg.features.bins_per_harmonic};   // B
constexpr int kNumHarmonics = (kNumBins - 1) / kBinsPerHarmonic;
constexpr int kNFFT = {cfg.features.n_fft};
constexpr int kTableSize = {cfg.synth.table_size};
constexpr double kAnalysisSampleRate = {float(cfg.audio.sample_rate)!r};
// ---- input mapping: x = [controls..., logPitch(f0){", voicedness" if src.include_voicedness else ""}]
constexpr int kNumControls = {n_timbre};
constexpr bool kIncludeVoicedness = {"true" if src.include_voicedness else "false"};
constexpr float kPitchFmin = {float(np.float32(src.fmin))!r}f;   // Hz
constexpr float kLogPitchEps = {LOG_PITCH_EPS!r}f;
inline const char* const kControlNames[kNumControls > 0 ? kNumControls : 1] = {{{names or '""'}}};
// (low, high) of each control on the training data
inline constexpr float kControlRanges[kNumControls > 0 ? kNumControls : 1][2] = {{{ranges or "{0.0f, 0.0f}"}}};

/** log(max(f0, fmin) - fmin + 1e-4), f0 in Hz: the model's pitch input. */
inline float logPitch(float f0Hz) noexcept
{{
    return std::log(std::max(f0Hz, kPitchFmin) - kPitchFmin + kLogPitchEps);
}}

/** Fill x[kNumInputs] from controls[kNumControls], f0 (Hz) and voicedness (0..1). */
inline void makeInputs(const float* controls, float f0Hz, float voicedness, float* x) noexcept
{{
    for(int i = 0; i < kNumControls; ++i)
        x[i] = controls[i];
    x[kNumControls] = logPitch(f0Hz);
    if(kIncludeVoicedness)
        x[kNumInputs - 1] = voicedness;
    (void)voicedness;
}}

/** PyTorch Softplus (beta 1, threshold 20). RTNeural has no Softplus layer. */
inline float softplus(float x) noexcept
{{
    return x > {SOFTPLUS_THRESHOLD!r}f ? x : std::log1p(std::exp(x));
}}

/** The model's output activation ({act}): apply to the ModelT outputs y[kNumBins]. */
inline void applyOutputActivation(float* y) noexcept
{{
    for(int k = 0; k < kNumBins; ++k)
        {act_body}
}}
}} // namespace wms

#ifndef WMS_NO_RTNEURAL
#include <RTNeural/RTNeural.h>

namespace wms
{{
/** Ends at the last Dense layer: call applyOutputActivation() on getOutputs(). */
using ModelType = {type_lines};

/** Load wms_model.json. loadGRU takes PyTorch's (r, z, n) gate layout and reorders it. */
inline void loadModel(const nlohmann::json& modelJson, ModelType& model)
{{
{chr(10).join(loads)}
    model.reset();
}}
}} // namespace wms
#endif
"""


def export_rtneural(
    src: ExportSource, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write the RTNeural JSON, C++ header, constants and test vectors, then check them.

    The check re-implements the forward pass in numpy from ``wms_model.json`` and
    the inputs in ``wms_test_vectors.json`` alone (:func:`numpy_forward`) and
    compares pre-activation and final outputs and the final state with PyTorch
    over ``n_steps`` steps.

    Raises:
        ExportError: the folder cannot be written, or a difference exceeds :data:`TOLERANCE`.
    """
    out = prepare_out_dir(out_dir)
    model = _eval_copy(src.model)
    inputs = check_inputs(src, n_steps, seed=seed)
    ref = torch_reference(model, inputs)
    meta = export_metadata(src)
    meta["rtneural"] = {
        "model_type": rtneural_model_type(model),
        "layers": [{"type": t, "json_prefix": p} for t, p in rtneural_layers(model)],
        "softplus": "not in ModelT: apply wms::applyOutputActivation to the outputs",
    }
    vectors = {
        "description": "x[t] -> ModelT outputs (pre_activation) -> output activation (outputs); "
        "state starts at zero and is carried from step to step",
        "n_steps": n_steps,
        "output_activation": model.output_activation,
        "inputs": _f32(inputs),
        "pre_activation": _f32(ref["pre"]),
        "outputs": _f32(ref["y"]),
        "final_state": _f32(ref["h"]),
    }
    files = [
        _write_text(out / "wms_model.json", json.dumps(rtneural_state_dict(model))),
        _write_text(out / "wms_model.h", rtneural_header(src)),
        _write_text(out / "wms_constants.json", json.dumps(meta, indent=2) + "\n"),
        _write_text(out / "wms_test_vectors.json", json.dumps(vectors)),
    ]
    # The check reads back only what was written.
    weights = json.loads((out / "wms_model.json").read_text())
    tv = json.loads((out / "wms_test_vectors.json").read_text())
    got = numpy_forward(
        weights,
        np.asarray(tv["inputs"], dtype=np.float32),
        num_layers=model.num_layers,
        output_activation=model.output_activation,
    )
    checks = {
        "numpy_from_json_vs_torch_outputs": _max_diff(got["y"], ref["y"]),
        "numpy_from_json_vs_torch_pre_activation": _max_diff(got["pre"], ref["pre"]),
        "numpy_from_json_vs_torch_state": _max_diff(got["h"], ref["h"]),
        "test_vectors_vs_torch": _max_diff(tv["outputs"], ref["y"]),
    }
    return _finish("rtneural", out, files, checks, TOLERANCE, {"n_steps": n_steps})


# --------------------------------------------------------------------------- onnx


def onnx_step_model(model: WMSNet, metadata: Mapping[str, Any]) -> Any:
    """One recurrent step as an ONNX graph, built node by node from the weights.

    Inputs ``x[1, D]``, ``h[L, 1, H]``; outputs ``y[1, K]`` (after the output
    activation) and ``h_out[L, 1, H]``. The GRU is written with elementary ops
    (Gemm, Split, Sigmoid, Tanh) in PyTorch's (r, z, n) gate order, so no
    exporter and no gate reordering is involved. Opset 17, IR version 8.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = _eval_copy(model)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    d, k, hsz, n_layers = model.n_inputs, model.n_outputs, model.hidden_size, model.num_layers
    inits = [numpy_helper.from_array(v.astype(np.float32), name=name) for name, v in sd.items()]
    inits.append(numpy_helper.from_array(np.array([hsz, hsz, hsz], dtype=np.int64), "split3"))
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
    nodes = []

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    v = node("Gemm", ["x", "input_encoder.0.weight", "input_encoder.0.bias"], "enc_lin", transB=1)
    v = node("Relu", [v], "enc")
    h_outs = []
    for layer in range(n_layers):
        idx = f"layer{layer}_idx"
        inits.append(numpy_helper.from_array(np.array(layer, dtype=np.int64), idx))
        h_prev = node("Gather", ["h", idx], f"h{layer}", axis=0)  # [1, H]
        p = f"gru.{{}}_l{layer}"
        gi = node("Gemm", [v, p.format("weight_ih"), p.format("bias_ih")], f"gi{layer}", transB=1)
        gh = node(
            "Gemm", [h_prev, p.format("weight_hh"), p.format("bias_hh")], f"gh{layer}", transB=1
        )
        gis = [f"gi{layer}_{g}" for g in "rzn"]
        ghs = [f"gh{layer}_{g}" for g in "rzn"]
        nodes.append(
            helper.make_node("Split", [gi, "split3"], gis, name=f"split_gi{layer}", axis=1)
        )
        nodes.append(
            helper.make_node("Split", [gh, "split3"], ghs, name=f"split_gh{layer}", axis=1)
        )
        r = node("Sigmoid", [node("Add", [gis[0], ghs[0]], f"r_in{layer}")], f"r{layer}")
        z = node("Sigmoid", [node("Add", [gis[1], ghs[1]], f"z_in{layer}")], f"z{layer}")
        rn = node("Mul", [r, ghs[2]], f"rn{layer}")
        n = node("Tanh", [node("Add", [gis[2], rn], f"n_in{layer}")], f"n{layer}")
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        zd = node("Mul", [z, node("Sub", [h_prev, n], f"hmn{layer}")], f"zd{layer}")
        v = node("Add", [n, zd], f"hnew{layer}")
        h_outs.append(node("Unsqueeze", [v, "axis0"], f"hnew{layer}_3d"))
    node("Concat", h_outs, "h_out", axis=0)
    v = node("Gemm", [v, "dense_layers.0.weight", "dense_layers.0.bias"], "d0", transB=1)
    v = node("Relu", [v], "d0_relu")
    pre = node("Gemm", [v, "dense_layers.2.weight", "dense_layers.2.bias"], "pre", transB=1)
    act = model.output_activation
    if act == "softplus":
        # PyTorch's threshold: x above 20 passes through (also keeps exp from overflowing).
        inits.append(
            numpy_helper.from_array(np.array(SOFTPLUS_THRESHOLD, dtype=np.float32), "sp_threshold")
        )
        sp = node("Softplus", [pre], "pre_softplus")
        above = node("Greater", [pre, "sp_threshold"], "pre_above")
        node("Where", [above, pre, sp], "y")
    elif act == "relu":
        node("Relu", [pre], "y")
    else:
        node("Identity", [pre], "y")

    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "wms_step",
        [
            helper.make_tensor_value_info("x", f, [1, d]),
            helper.make_tensor_value_info("h", f, [n_layers, 1, hsz]),
        ],
        [
            helper.make_tensor_value_info("y", f, [1, k]),
            helper.make_tensor_value_info("h_out", f, [n_layers, 1, hsz]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="wms",
        producer_version=__version__,
        doc_string="WMS one recurrent step: (x[1, D], h[L, 1, H]) -> (y[1, K] log1p spectrum, h_out)",
    )
    proto.ir_version = _ONNX_IR_VERSION
    onnx.helper.set_model_props(proto, _flat_metadata(metadata))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX graph built for the model is invalid: {e}") from None
    return proto


def _flat_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """String key/value pairs (ONNX metadata_props); the full metadata under ``wms_metadata``."""
    return {
        "wms_version": __version__,
        "wms_export_format_version": str(EXPORT_FORMAT_VERSION),
        "control_names": json.dumps(meta["inputs"]["control_names"]),
        "input_mapping": json.dumps(meta["inputs"]),
        "input_map": json.dumps(meta["input_map"]),
        "cycles_per_table": str(meta["spectrum"]["cycles_per_table"]),
        "n_bins": str(meta["spectrum"]["n_bins"]),
        "sample_rate": str(meta["spectrum"]["analysis_sample_rate"]),
        "output_activation": meta["model"]["output_activation"],
        "wms_metadata": json.dumps(meta),
    }


def _step_loop(step, inputs: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``step(x[1, D], h) -> (y[1, K], h')`` over ``inputs[T, D]``, feeding h back."""
    h, ys = h0, []
    for x in inputs:
        y, h = step(x[None, :], h)
        ys.append(np.asarray(y)[0])
    return np.stack(ys), np.asarray(h)


def export_onnx(
    src: ExportSource, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write ``wms_step.onnx`` and check it through onnxruntime over ``n_steps`` steps.

    Raises:
        ExportError: the folder cannot be written, or a difference exceeds :data:`TOLERANCE`.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    out = prepare_out_dir(out_dir)
    model = _eval_copy(src.model)
    meta = export_metadata(src)
    proto = onnx_step_model(model, meta)
    path = _write_bytes(out / "wms_step.onnx", proto.SerializeToString())

    inputs = check_inputs(src, n_steps, seed=seed)
    ref = torch_reference(model, inputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as e:
        raise ExportError(f"{path}: onnxruntime cannot load the export ({e})") from None
    loaded = sess.get_modelmeta().custom_metadata_map
    if json.loads(loaded.get("wms_metadata", "null")) != json.loads(json.dumps(meta)):
        raise ExportError(f"{path}: the metadata read back differs from what was written")

    def step(x: np.ndarray, h: np.ndarray):
        return sess.run(["y", "h_out"], {"x": x.astype(np.float32), "h": h})

    h0 = np.zeros((model.num_layers, 1, model.hidden_size), dtype=np.float32)
    y, h = _step_loop(step, inputs, h0)
    checks = {
        "onnxruntime_vs_torch_outputs": _max_diff(y, ref["y"]),
        "onnxruntime_vs_torch_state": _max_diff(h, ref["h"]),
    }
    return _finish(
        "onnx", out, [path], checks, TOLERANCE, {"n_steps": n_steps, "opset": _ONNX_OPSET}
    )


# --------------------------------------------------------------------------- torchscript


class _Step(nn.Module):
    """One recurrent step of a WMSNet: ``(x[1, D], h[L, 1, H]) -> (y[1, K], h[L, 1, H])``."""

    def __init__(self, model: WMSNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_out = self.model(x.unsqueeze(1), h)
        return y.squeeze(1), h_out


def export_torchscript(
    src: ExportSource, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write ``wms_step.pt`` (scripted step, metadata in ``_extra_files["wms_metadata.json"]``).

    Checked by loading it back with ``torch.jit.load`` and stepping ``n_steps`` times.

    Raises:
        ExportError: the folder cannot be written, or a difference exceeds :data:`TOLERANCE`.
    """
    out = prepare_out_dir(out_dir)
    model = _eval_copy(src.model)
    meta = export_metadata(src)
    path = out / "wms_step.pt"
    tmp = out / ".wms_step.pt.tmp"
    # TorchScript is deprecated in PyTorch but is what libtorch (C++) loads; the
    # warning is expected here and says nothing about this export.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.\w+` is deprecated", DeprecationWarning)
        scripted = torch.jit.script(_Step(model).eval())
        try:
            torch.jit.save(scripted, str(tmp), _extra_files={"wms_metadata.json": json.dumps(meta)})
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:
            raise ExportError(f"{path}: cannot write ({e})") from None
        extra = {"wms_metadata.json": ""}
        loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if json.loads(extra["wms_metadata.json"]) != json.loads(json.dumps(meta)):
        raise ExportError(f"{path}: the metadata read back differs from what was written")

    inputs = check_inputs(src, n_steps, seed=seed)
    ref = torch_reference(model, inputs)

    @torch.no_grad()
    def step(x: np.ndarray, h: np.ndarray):
        y, h2 = loaded(torch.from_numpy(x), torch.from_numpy(np.asarray(h)))
        return y.numpy(), h2.numpy()

    h0 = np.zeros((model.num_layers, 1, model.hidden_size), dtype=np.float32)
    y, h = _step_loop(step, inputs, h0)
    checks = {
        "torchscript_vs_torch_outputs": _max_diff(y, ref["y"]),
        "torchscript_vs_torch_state": _max_diff(h, ref["h"]),
    }
    return _finish("torchscript", out, [path], checks, TOLERANCE, {"n_steps": n_steps})


# --------------------------------------------------------------------------- wavetable


def wavetable_path(src: ExportSource, n_frames: int, *, control: str | None = None) -> np.ndarray:
    """Timbre controls ``[n_frames, n_timbre]`` along a line through the control space.

    ``control=None``: the first principal direction of the training map's
    controls, through their mean, from the 2nd to the
    98th percentile of the training frames' positions along it; the sign is
    chosen so the direction's largest component is positive. ``control=name``:
    that control swept over its range, the others at their training median.
    Points are clipped to the control ranges.

    Raises:
        ExportError: unknown control name, or a training map with no spread.
    """
    ranges = src.control_ranges
    c = src.training_map["controls"]
    n_timbre = len(src.control_names)
    if n_timbre == 0:
        raise ExportError(f"{src.name}: the model has no timbre controls to move along")
    if control is not None:
        if control not in src.control_names:
            raise ExportError(
                f"{src.name}: unknown control {control!r}; controls are {', '.join(src.control_names)}"
            )
        j = src.control_names.index(control)
        path = np.repeat(np.median(c, axis=0)[None], n_frames, axis=0)
        path[:, j] = np.linspace(ranges[j, 0], ranges[j, 1], n_frames)
        return path
    # Controls share units (standardised MFCC, their PCA, or one embedding), so no rescaling.
    mean = c.mean(axis=0)
    u = c - mean
    _, s, vt = np.linalg.svd(u, full_matrices=False)
    if len(c) < 2 or s[0] <= 1e-12:
        raise ExportError(
            f"{src.name}: the training map has no spread in control space; "
            "choose a control to sweep (--control NAME)"
        )
    direction = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    lo, hi = np.percentile(u @ direction, [2.0, 98.0])
    path = mean + np.linspace(lo, hi, n_frames)[:, None] * direction[None, :]
    return np.clip(path, ranges[:, 0], ranges[:, 1])


def cycles_from_amplitudes(amps: np.ndarray, frame_size: int) -> np.ndarray:
    """Zero-phase single cycles ``[F, frame_size]``: ``sum_h a_h cos(2 pi h n / frame_size)``.

    The synth engine's own tables (:func:`wms.synth.tables.make_tables`) without
    their interpolation guard samples.

    Raises:
        ExportError: more harmonics than the frame can hold.
    """
    amps = np.atleast_2d(np.asarray(amps, dtype=np.float32))
    if amps.shape[1] >= frame_size // 2:
        raise ExportError(f"{amps.shape[1]} harmonics do not fit in a {frame_size}-sample frame")
    tables = make_tables(amps, frame_size)
    return tables[:, GUARD_BEFORE : GUARD_BEFORE + frame_size].astype(np.float64)


@torch.no_grad()
def settled_spectra(model: WMSNet, inputs: np.ndarray, *, settle_steps: int = 32) -> np.ndarray:
    """log1p spectra ``[F, K]``: each input row held for ``settle_steps`` steps from a zero state.

    Each frame is the model's steady output for its controls, so a frame does not
    depend on its neighbours or on the direction the path is read in.
    """
    model = _eval_copy(model)
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))[:, None, :]
    y, _ = model(x.expand(-1, settle_steps, -1).contiguous())
    return y[:, -1].numpy()


def _wav_bytes(
    frames: np.ndarray, *, sample_rate: int, frame_size: int, sample_format: str
) -> bytes:
    """A mono RIFF/WAVE file: fmt, (fact), ``clm `` (Serum), ``srge`` (Surge), data."""
    x = np.asarray(frames, dtype=np.float64).ravel()
    if sample_format == "float":
        tag, bits, data = 3, 32, x.astype("<f4").tobytes()
    elif sample_format in ("16", "24"):
        # Readers divide by 2**(bits - 1); scaling by the same keeps every sample exact
        # to half a step, except a full-scale +1.0, which clips one step down.
        tag, bits = 1, int(sample_format)
        full = 2 ** (bits - 1)
        q = np.clip(np.round(x * full), -full, full - 1).astype("<i4")
        data = q.view(np.uint8).reshape(-1, 4)[:, : bits // 8].tobytes()
    else:
        raise ExportError(
            f"unknown WAV sample format {sample_format!r}; use {', '.join(WAV_FORMATS)}"
        )
    block = bits // 8

    def chunk(cid: bytes, body: bytes) -> bytes:
        return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")

    fmt = struct.pack("<HHIIHH", tag, 1, sample_rate, sample_rate * block, block, bits)
    if tag == 3:
        fmt += struct.pack("<H", 0)  # cbSize: non-PCM fmt chunks are 18 bytes
    # Serum writes "<!>2048 <16 flag digits> <text>"; readers parse the number after "<!>".
    clm = f"<!>{frame_size} 00000000 wavetable (wms {__version__})".encode("ascii")
    body = chunk(b"fmt ", fmt)
    if tag == 3:
        body += chunk(b"fact", struct.pack("<I", len(x)))
    body += chunk(b"clm ", clm)
    body += chunk(b"srge", struct.pack("<ii", 1, frame_size))  # Surge: version 1, frame size
    body += chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def read_wavetable_wav(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a wavetable WAV written by :func:`export_wavetable`.

    Returns ``(frames[F, frame_size] float64, info)`` where ``info`` holds the
    ``clm `` text, the ``srge`` (version, size), the frame size the ``clm `` chunk
    announces, the sample rate and the soundfile subtype. Samples are read by
    soundfile (libsndfile), chunks by a RIFF walk.

    Raises:
        ExportError: not a RIFF/WAVE file, no ``clm `` chunk, or a length that is
        not a whole number of frames.
    """
    import soundfile as sf

    path = Path(path)
    raw = path.read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ExportError(f"{path}: not a RIFF/WAVE file")
    chunks: dict[str, bytes] = {}
    at = 12
    while at + 8 <= len(raw):
        cid = raw[at : at + 4].decode("latin-1")
        (size,) = struct.unpack_from("<I", raw, at + 4)
        chunks.setdefault(cid, raw[at + 8 : at + 8 + size])
        at += 8 + size + (size & 1)
    if "clm " not in chunks:
        raise ExportError(f"{path}: no 'clm ' chunk; synths would not see the frame size")
    clm = chunks["clm "].decode("ascii", errors="replace")
    digits = clm[3:].split(" ", 1)[0] if clm.startswith("<!>") else ""
    if not digits.isdigit():
        raise ExportError(f"{path}: malformed 'clm ' chunk {clm!r}")
    frame_size = int(digits)
    srge = struct.unpack("<ii", chunks["srge"][:8]) if "srge" in chunks else None
    try:
        y, sr = sf.read(str(path), dtype="float64", always_2d=True)
        subtype = sf.info(str(path)).subtype
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ExportError(f"{path}: unreadable WAV ({e})") from None
    if y.shape[1] != 1 or len(y) % frame_size:
        raise ExportError(
            f"{path}: {y.shape[1]} channel(s), {len(y)} samples: not mono whole {frame_size}-sample frames"
        )
    info = {
        "clm": clm,
        "srge": srge,
        "frame_size": frame_size,
        "sample_rate": sr,
        "subtype": subtype,
    }
    return y[:, 0].reshape(-1, frame_size), info


def export_wavetable(
    src: ExportSource,
    out_dir: str | Path,
    *,
    n_frames: int = 256,
    control: str | None = None,
    sample_format: str = "float",
    normalize: str = "frame",
    settle_steps: int = 32,
) -> ExportResult:
    """Write ``wms_wavetable.wav`` (+ ``wms_wavetable.json``) and check it against PyTorch.

    Frames: the controls of :func:`wavetable_path`, at the training map's median
    voiced f0 (voicedness >= ``pitch.voicing_threshold``), voicedness 1, each held
    ``settle_steps`` steps (:func:`settled_spectra`); harmonic amplitudes by
    :func:`harmonic_amplitudes`; one zero-phase cycle of 2048 samples per frame.
    ``normalize="frame"`` scales each frame to peak 1 (loudness left to the
    synth), ``"bank"`` scales all by one factor (keeps relative loudness).

    Check: the WAV is read back; frame count and size, the ``clm ``/``srge``
    chunks, and for every frame the FFT magnitudes of harmonics 1..H (and the
    absence of anything else) against the predicted amplitudes times the frame's
    gain, in full-scale units.

    Raises:
        ExportError: bad ``n_frames`` / ``sample_format`` / ``normalize`` /
        ``control``, an unwritable folder, or a failed check.
    """
    if not 2 <= n_frames <= 256:
        raise ExportError(f"n_frames = {n_frames}: a wavetable has 2..256 frames (default 256)")
    if sample_format not in WAV_FORMATS:
        raise ExportError(
            f"unknown WAV sample format {sample_format!r}; use {', '.join(WAV_FORMATS)}"
        )
    if normalize not in ("frame", "bank"):
        raise ExportError(f"normalize = {normalize!r}: use 'frame' or 'bank'")
    if settle_steps < 1:
        raise ExportError(f"settle_steps = {settle_steps} must be at least 1")
    out = prepare_out_dir(out_dir)
    frame_size = WAVETABLE_FRAME_SIZE
    tm = src.training_map
    voiced = tm["voicedness"] >= src.config.pitch.voicing_threshold
    f0_source = (
        "median of voiced training frames"
        if voiced.any()
        else "median of all training frames (none voiced)"
    )
    f0 = float(np.median(tm["f0"][voiced] if voiced.any() else tm["f0"]))
    controls = wavetable_path(src, n_frames, control=control)
    inputs = inputs_from_controls(
        controls,
        np.full(n_frames, f0),
        np.ones(n_frames),
        fmin=src.fmin,
        include_voicedness=src.include_voicedness,
    )
    spectra = settled_spectra(src.model, inputs, settle_steps=settle_steps)
    amps = harmonic_amplitudes(spectra, src.config.features.bins_per_harmonic)
    cycles = cycles_from_amplitudes(amps, frame_size)
    peaks = np.max(np.abs(cycles), axis=1)
    if normalize == "frame":
        gains = np.where(peaks > 0, 1.0 / np.where(peaks > 0, peaks, 1.0), 0.0)
    else:
        top = peaks.max()
        gains = np.full(n_frames, 1.0 / top if top > 0 else 0.0)
    frames = cycles * gains[:, None]
    wav = _write_bytes(
        out / "wms_wavetable.wav",
        _wav_bytes(
            frames,
            sample_rate=WAVETABLE_SAMPLE_RATE,
            frame_size=frame_size,
            sample_format=sample_format,
        ),
    )
    side = {
        "frames": n_frames,
        "frame_size": frame_size,
        "path": "first principal direction of the training map"
        if control is None
        else f"sweep of {control!r}",
        "control_names": list(src.control_names),
        "controls": controls.tolist(),
        "f0_hz": f0,
        "f0_source": f0_source,
        "voicedness": 1.0,
        "settle_steps": settle_steps,
        "harmonics": int(amps.shape[1]),
        "phase": "zero (cosine) phase: every harmonic peaks at sample 0",
        "normalize": normalize,
        "sample_format": sample_format,
        "silent_frames": int(np.sum(peaks == 0)),
    }
    sidecar = _write_text(out / "wms_wavetable.json", json.dumps(side, indent=2) + "\n")

    got, info = read_wavetable_wav(wav)
    if got.shape != (n_frames, frame_size) or info["srge"] != (1, frame_size):
        raise ExportError(
            f"{wav}: read back {got.shape[0]} frames of {info['frame_size']} samples "
            f"(srge {info['srge']}), expected {n_frames} of {frame_size}"
        )
    # Amplitudes in full-scale units (a cosine of amplitude a reads a), so the 16-bit
    # tolerance holds by construction: rounding (<= half a step a sample) moves a bin
    # by at most one step, 2**-15.
    mag = np.abs(np.fft.rfft(got, axis=1)) / (frame_size / 2)
    n_harm = amps.shape[1]
    expected = np.zeros_like(mag)
    expected[:, 1 : n_harm + 1] = amps * gains[:, None]
    diff = np.abs(mag - expected)
    checks = {
        "wav_harmonics_vs_torch": float(np.max(diff[:, 1 : n_harm + 1])),
        "wav_other_bins": float(np.max(np.delete(diff, np.s_[1 : n_harm + 1], axis=1))),
    }
    info_out = {
        k: side[k]
        for k in (
            "frames",
            "frame_size",
            "harmonics",
            "f0_hz",
            "path",
            "normalize",
            "sample_format",
        )
    }
    info_out["clm"] = info["clm"]
    return _finish("wavetable", out, [wav, sidecar], checks, WAV_FORMATS[sample_format], info_out)


# --------------------------------------------------------------------------- entry points


def export(src: ExportSource, fmt: str, out_dir: str | Path, **options: Any) -> ExportResult:
    """Export ``src`` in format ``fmt`` (one of :data:`FORMATS`) to ``out_dir``.

    ``options`` go to the format's function (``n_steps``/``seed`` for model
    formats; ``n_frames``, ``control``, ``sample_format``, ``normalize`` for
    ``wavetable``).

    Raises:
        ExportError: unknown format, unknown option, unwritable folder or failed check.
    """
    funcs = {
        "rtneural": export_rtneural,
        "onnx": export_onnx,
        "torchscript": export_torchscript,
        "wavetable": export_wavetable,
    }
    if fmt not in funcs:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    allowed = (
        {"n_steps", "seed"}
        if fmt != "wavetable"
        else {"n_frames", "control", "sample_format", "normalize", "settle_steps"}
    )
    unknown = set(options) - allowed
    if unknown:
        raise ExportError(f"--format {fmt} takes no option {', '.join(sorted(unknown))}")
    return funcs[fmt](src, out_dir, **options)


def run_export(args: Any) -> int:
    """``wms export BUNDLE --format FMT --out DIR``: load, export, check, report.

    Optional ``args`` fields (wavetable only): ``frames``, ``control``, ``wav_format``.
    """
    from wms.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    src = ExportSource.from_bundle(bundle, str(args.bundle))
    options: dict[str, Any] = {}
    if args.format == "wavetable":
        for opt, key in (
            ("frames", "n_frames"),
            ("control", "control"),
            ("wav_format", "sample_format"),
        ):
            if getattr(args, opt, None) is not None:
                options[key] = getattr(args, opt)
    result = export(src, args.format, args.out, **options)
    print(f"wms export: {args.format} export of {args.bundle} written to {result.out_dir}/")
    for p in result.files:
        print(f"  {p.name}")
    for name, diff in result.checks.items():
        print(f"  check {name}: max abs diff {diff:.3g} (tolerance {result.tolerance:g})")
    return 0
