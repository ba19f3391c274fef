"""The model bundle ``model.wms``: one self-contained file per trained model (DESIGN.md §4).

A bundle is a ``torch.save`` of plain data only (dicts, lists, str, numbers,
tensors), read back with ``torch.load(weights_only=True)`` so loading never runs
pickled code. Layout (version 1)::

    format          "wms-bundle"
    version         1
    wms_version     str, the package version that wrote it
    config          Config.to_dict(): the resolved config of the run
    model           {"n_inputs", "n_outputs", "state_dict": {name: tensor}}
    input_map       InputMap.to_state(): MFCC statistics, reducer, pitch mapping, controls
    control_names   [n_timbre] str
    control_ranges  tensor [n_timbre, 2]: (low, high) over the training frames
    training_map    {"controls" [M, n_timbre], "f0" [M], "voicedness" [M],
                     "inputs" [M, D], "targets" [M, K] (float16), "frames" [M, 2] (file, frame)}:
                     a seeded subsample (M <= 5000) of the training frames
    data            {"files": [{"path", "key", "n_frames", "train", "val"}]}: where the
                     held-out frames are (frame ranges per source file and its content key)
    history         [{"epoch", "step", "train_loss", "val_loss", "lr", "seconds"}]
    metrics         held-out figures at the end of training (see wms.evaluation.metrics.heldout_report)
    parameter_count int

The file is written to a temporary name beside the target and renamed, so a
reader never sees a half-written bundle.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wms import __version__
from wms.config import Config, from_dict
from wms.errors import BundleError, ConfigError, DataError
from wms.training.model import WMSNet, count_parameters

BUNDLE_FORMAT = "wms-bundle"
BUNDLE_VERSION = 1

_REQUIRED = (
    "config",
    "model",
    "input_map",
    "control_names",
    "control_ranges",
    "training_map",
    "data",
    "history",
    "metrics",
)


def _to_plain(x: Any) -> Any:
    """numpy arrays -> tensors, numpy scalars -> Python numbers, recursively."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone()
    if isinstance(x, dict):
        return {str(k): _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    return x


def save_bundle(
    path: str | Path,
    *,
    model: WMSNet,
    config: Config,
    input_map_state: dict,
    control_names: list[str],
    control_ranges: np.ndarray,
    training_map: dict[str, np.ndarray],
    data_map: dict,
    history: list[dict],
    metrics: dict,
) -> Path:
    """Write a version-1 bundle atomically (temp file + ``os.replace``); returns ``path``.

    Raises :class:`BundleError` when the file cannot be written.
    """
    path = Path(path)
    obj = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "wms_version": __version__,
        "config": config.to_dict(),
        "model": {
            "n_inputs": model.n_inputs,
            "n_outputs": model.n_outputs,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        },
        "input_map": _to_plain(input_map_state),
        "control_names": list(control_names),
        "control_ranges": _to_plain(np.asarray(control_ranges, dtype=np.float32)),
        "training_map": _to_plain(training_map),
        "data": _to_plain(data_map),
        "history": _to_plain(history),
        "metrics": _to_plain(metrics),
        "parameter_count": count_parameters(model),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch raises RuntimeError when the disk is full
        tmp.unlink(missing_ok=True)
        raise BundleError(f"{path}: cannot write the bundle ({e})") from None
    return path


@dataclass
class Bundle:
    """A loaded model bundle; see the module docstring for what each field holds."""

    path: Path
    model: WMSNet
    config: Config
    input_map: Any
    control_names: list[str]
    control_ranges: np.ndarray
    training_map: dict[str, np.ndarray]
    data: dict
    history: list[dict]
    metrics: dict
    wms_version: str
    parameter_count: int
    version: int = BUNDLE_VERSION
    extra: dict = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network over one sequence from a zero GRU state.

        Args:
            inputs: ``[T, D]`` model inputs (see :meth:`inputs_from_audio`).

        Returns:
            ``[T, K]`` float32 log1p magnitude spectra.

        Raises:
            DataError: when ``inputs`` is not ``[T, D]`` with this model's D.
        """
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.model.n_inputs:
            raise DataError(
                f"{self.path}: predict needs inputs of shape [T, {self.model.n_inputs}], got {x.shape}"
            )
        y, _ = self.model(torch.from_numpy(x)[None])
        return y[0].numpy()

    def inputs_from_audio(
        self, y: np.ndarray, sample_rate: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model inputs of new audio, through the run's own feature pipeline.

        Resamples to the analysis rate, tracks pitch with the saved pitch settings,
        analyses, and maps with the saved InputMap.

        Args:
            y: mono signal ``[n]``.
            sample_rate: its rate in Hz.

        Returns:
            ``(inputs[T, D], f0[T] in Hz, voicedness[T] in 0..1)``.
        """
        from wms.analysis.audio import resample
        from wms.analysis.features import analyse, model_inputs
        from wms.analysis.pitch import estimate_pitch

        cfg = self.config
        y = resample(np.asarray(y, dtype=np.float32), int(sample_rate), cfg.audio.sample_rate)
        f0, voiced = estimate_pitch(
            y,
            sample_rate=cfg.audio.sample_rate,
            hop_size=cfg.features.hop_size,
            method=cfg.pitch.method,
            fmin=cfg.pitch.fmin,
            fmax=cfg.pitch.fmax,
            crepe_model=cfg.pitch.crepe_model,
        )
        a = analyse(y, f0, voiced, cfg)
        x = model_inputs(self.input_map, a.mfcc, a.f0, a.voicedness)
        return np.asarray(x, dtype=np.float32), np.asarray(a.f0), np.asarray(a.voicedness)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":
        kind = "a WAV/RIFF file" if magic == b"RIFF" else "not a zip archive"
        raise BundleError(
            f"{path}: not a WMS bundle ({kind}); pass the model.wms written by `wms train`"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise BundleError(
            f"{path}: truncated or corrupt bundle ({e}); re-copy it or re-run `wms train`"
        ) from None
    except pickle.UnpicklingError as e:
        raise BundleError(
            f"{path}: not a WMS bundle (it holds objects a bundle never does: {e})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != BUNDLE_FORMAT:
        what = (
            "a Lightning checkpoint"
            if isinstance(obj, dict) and "pytorch-lightning_version" in obj
            else "a torch file"
        )
        raise BundleError(
            f"{path}: not a WMS bundle ({what} without format = {BUNDLE_FORMAT!r}); "
            f"a training checkpoint is resumed with `wms train --resume`, not loaded as a bundle"
        )
    version = obj.get("version")
    if version != BUNDLE_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported; this wms "
            f"({__version__}) reads version {BUNDLE_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise BundleError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
    return obj


def load_bundle(path: str | Path) -> Bundle:
    """Load ``model.wms`` in any process: nothing but the file is needed.

    Raises:
        BundleError: naming the file, when it is missing, truncated, not a bundle,
            of another format version, or its contents do not fit together.
    """
    from wms.analysis.features import InputMap

    path = Path(path)
    obj = _read(path)
    try:
        config = from_dict(obj["config"], source=f"{path} [config]")
    except ConfigError as e:
        raise BundleError(f"{path}: the stored config is invalid: {e}") from None
    m = obj["model"]
    try:
        model = WMSNet.from_config(int(m["n_inputs"]), int(m["n_outputs"]), config.model)
        model.load_state_dict(m["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError) as e:
        raise BundleError(
            f"{path}: the stored weights do not fit the stored model config ({e})"
        ) from None
    model.eval()
    return Bundle(
        path=path,
        model=model,
        config=config,
        input_map=InputMap.from_state(obj["input_map"]),
        control_names=list(obj["control_names"]),
        control_ranges=obj["control_ranges"].numpy(),
        training_map=_to_numpy(obj["training_map"]),
        data=_to_numpy(obj["data"]),
        history=list(obj["history"]),
        metrics=dict(obj["metrics"]),
        wms_version=str(obj.get("wms_version", "?")),
        parameter_count=int(obj.get("parameter_count", count_parameters(model))),
        version=int(obj["version"]),
    )


def describe(b: Bundle) -> str:
    """A human-readable summary of a bundle (what ``wms info`` prints)."""
    c = b.config
    lines = [
        f"{b.path}: {BUNDLE_FORMAT} version {b.version}, written by wms {b.wms_version}",
        f"model: {b.model.n_inputs} inputs -> encoder {c.model.encoder_size} -> GRU "
        f"{c.model.hidden_size} x {c.model.num_layers} -> {b.model.n_outputs} bins "
        f"({c.model.output_activation}); {b.parameter_count:,} parameters",
        f"analysis: {c.audio.sample_rate} Hz, hop {c.features.hop_size}, window "
        f"{c.features.window_size}, {c.features.cycles_per_window} cycles, pitch "
        f"{c.pitch.method} {c.pitch.fmin:g}-{c.pitch.fmax:g} Hz, reduction {c.features.reduction}",
        "controls:",
    ]
    for name, (lo, hi) in zip(b.control_names, b.control_ranges, strict=True):
        lines.append(f"  {name:<12} {lo:9.3f} .. {hi:9.3f}")
    files = b.data.get("files", [])
    n_val = sum(int(np.asarray(r)[1] - np.asarray(r)[0]) for f in files for r in f["val"])
    lines.append(
        f"data: {len(files)} file(s), {sum(int(f['n_frames']) for f in files)} frames, "
        f"{n_val} held out; training map {len(b.training_map.get('f0', []))} frames"
    )
    if b.history:
        last = b.history[-1]
        best = min(
            (h["val_loss"] for h in b.history if h.get("val_loss") is not None), default=None
        )
        lines.append(
            f"training: {last['epoch'] + 1} epochs, {last['step']} steps, {last['seconds'] / 60:.1f} min; "
            f"final train loss {last['train_loss']:.4f}"
            + (f", best val loss {best:.4f}" if best is not None else "")
        )
    if b.metrics:
        m = b.metrics
        lines.append(
            f"held-out: LSD {m['lsd_db']:.2f} dB (mean-spectrum baseline {m['lsd_db_mean_baseline']:.2f}, "
            f"nearest-frame baseline {m['lsd_db_nn_baseline']:.2f}); spectral convergence {m['sc']:.3f}"
        )
    return "\n".join(lines)


def run_info(args) -> int:
    """``wms info BUNDLE``."""
    print(describe(load_bundle(args.bundle)))
    return 0
