"""The model bundle ``model.wms``: one self-contained file per trained model (docs/DESIGN.md §4).

A bundle is a ``torch.save`` of plain data only (dicts, lists, str, numbers, tensors), read
back with ``torch.load(weights_only=True)`` so loading never runs pickled code. Layout
(version 2)::

    format          "wms-bundle"
    version         2
    wms_version     str, the package version that wrote it
    config          Config.to_dict(): the resolved config of the run
    interface       ModelInterface.to_state(): controls (names, ranges, defaults), pitch
                    mapping, voicedness, output layout, analysis rate (wms.interface)
    input_map       InputMap.to_state(): the fitted MFCC -> control mapping
    model           {"n_inputs", "n_outputs", "state_dict": {name: tensor}}
    training_map    {"controls" [M, n_timbre], "f0" [M], "voicedness" [M],
                     "inputs" [M, D], "targets" [M, K] (float16), "frames" [M, 2] (file, frame)}:
                     a seeded subsample (M <= 5000) of the training frames
    data            {"files": [{"path", "key", "n_frames", "train", "val"}]}: where the
                    held-out frames are (frame ranges per source file and its content key)
    history         [{"epoch", "step", "train_loss", "val_loss", "lr", "seconds"}]
    metrics         held-out figures at the end of training (wms.evaluation.metrics)
    parameter_count int

Version 1 (wms 0.1.0) had no ``interface``: the control names and ranges sat at the top
level and, with the pitch mapping, inside its version-1 input map. :func:`load_bundle`
migrates such a file in memory (:func:`migrate_v1`) so it renders exactly as before.

The file is written to a temporary name beside the target and renamed, so a reader never
sees a half-written bundle.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wms import __version__
from wms.config import Config, from_dict, stored_config
from wms.config import migrate_v1 as migrate_config_v1
from wms.errors import BundleError, ConfigError
from wms.interface import ModelInterface, output_layout
from wms.io import atomic_target, zip_damage
from wms.training.model import WMSNet, count_parameters

BUNDLE_FORMAT = "wms-bundle"
BUNDLE_VERSION = 2
#: Versions this wms reads (older ones are migrated in memory).
READABLE_VERSIONS = (1, 2)

_REQUIRED = {
    1: (
        "config",
        "model",
        "input_map",
        "control_names",
        "control_ranges",
        "training_map",
        "data",
        "history",
        "metrics",
    ),
    2: ("config", "interface", "input_map", "model", "training_map", "data", "history", "metrics"),
}
#: f0 a version-1 bundle played by default when its training map held no voiced frame.
V1_F0_DEFAULT = 220.0


def _to_plain(x: Any) -> Any:
    """numpy arrays -> tensors, numpy scalars -> Python numbers, recursively (torch.save-able)."""
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
    interface: ModelInterface,
    input_map: Any,
    training_map: dict[str, np.ndarray],
    data_map: dict,
    history: list[dict],
    metrics: dict,
) -> Path:
    """Write a version-2 bundle atomically (temp file + rename); returns ``path``.

    ``input_map`` is a :class:`wms.analysis.inputmap.InputMap`.

    Raises:
        ValueError: the model's input/output width does not match the interface.
        OutputError: the file cannot be written.
    """
    if model.n_inputs != interface.n_inputs or model.n_outputs != interface.n_outputs:
        raise ValueError(
            f"the model maps {model.n_inputs} -> {model.n_outputs}, the interface "
            f"{interface.n_inputs} -> {interface.n_outputs}"
        )
    path = Path(path)
    obj = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "wms_version": __version__,
        "config": config.to_dict(),
        "interface": interface.to_state(),
        "input_map": _to_plain(input_map.to_state()),
        "model": {
            "n_inputs": model.n_inputs,
            "n_outputs": model.n_outputs,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        },
        "training_map": _to_plain(training_map),
        "data": _to_plain(data_map),
        "history": _to_plain(history),
        "metrics": _to_plain(metrics),
        "parameter_count": count_parameters(model),
    }
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)
    return path


@dataclass
class Bundle:
    """A loaded model bundle; see the module docstring for what each field holds.

    ``version`` is the file's format version (1 for a migrated wms 0.1.0 bundle).
    """

    path: Path
    model: WMSNet
    config: Config
    interface: ModelInterface
    input_map: Any
    training_map: dict[str, np.ndarray]
    data: dict
    history: list[dict]
    metrics: dict
    wms_version: str
    parameter_count: int
    version: int = BUNDLE_VERSION

    @torch.no_grad()
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network over one sequence from a zero GRU state.

        Args:
            inputs: ``[T, D]`` model inputs (see :meth:`inputs_from_audio`).

        Returns:
            ``[T, K]`` float32 model outputs (log1p magnitudes).

        Raises:
            ValueError: ``inputs`` is not ``[T, D]`` with this model's D.
        """
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.model.n_inputs:
            raise ValueError(
                f"{self.path}: predict needs inputs of shape [T, {self.model.n_inputs}], got {x.shape}"
            )
        y, _ = self.model(torch.from_numpy(x)[None])
        return y[0].numpy()

    def inputs_from_audio(
        self, y: np.ndarray, sample_rate: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model inputs of new audio, through the run's own feature pipeline.

        Resamples to the analysis rate, tracks pitch with the saved pitch settings,
        analyses, and maps with the saved input map and interface.

        Args:
            y: mono signal ``[n]``.
            sample_rate: its rate in Hz.

        Returns:
            ``(inputs[T, D], f0[T] in Hz, voicedness[T] in 0..1)``.
        """
        from wms.analysis.audio import resample
        from wms.analysis.features import analyse, timbre_features
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
            batch_size=cfg.pitch.crepe_batch_size,
        )
        a = analyse(y, f0, voiced, cfg)
        timbre = timbre_features(a, cfg)
        x = self.interface.inputs(self.input_map.controls(timbre), a.f0, a.voicedness)
        return x, np.asarray(a.f0), np.asarray(a.voicedness)


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
    damage = zip_damage(path, "bundle")  # torch.load does not check the zip's CRCs
    if damage is not None:
        raise BundleError(f"{path}: {damage}; re-copy it or re-run `wms train`")
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
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported; this wms "
            f"({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))} — a "
            "newer bundle needs a newer wms (pip install -U wms)"
        )
    missing = [k for k in _REQUIRED[version] if k not in obj]
    if missing:
        raise BundleError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
    return obj


def migrate_v1(obj: dict, config: Config) -> dict:
    """A version-1 bundle's contents in the version-2 layout (in memory; the file is kept).

    The interface is rebuilt exactly as wms 0.1.0's synthesiser derived it, so a migrated
    bundle renders sample-identically:

    - control names and ranges: the bundle's top-level ``control_names`` / ``control_ranges``
      (float32, as 0.1.0 read them);
    - control defaults: the median of the training map's controls;
    - f0 default: the median f0 of the training map's voiced frames (voicedness >=
      ``pitch.voicing_threshold``), or 220 Hz when it held none (0.1.0's rule);
    - f0 range: the version-1 input map's ``f0_range``, else the 1st/99th percentile of
      those voiced frames, else ``(pitch.fmin, pitch.fmax)``;
    - pitch mapping and voicedness: from the version-1 input map; output layout: the
      spectrum bins of ``features.n_bins`` with harmonics every ``bins_per_harmonic``;
    - level floor 0: every prediction is normalised up to the table level, as in 0.1.0.

    Raises:
        BundleError: a field the migration needs is missing or malformed.
    """
    from wms.analysis.inputmap import migrate_v1_state

    try:
        imap = _to_numpy(obj["input_map"])
        tm = _to_numpy(obj["training_map"])
        names = [str(n) for n in obj["control_names"]]
        ranges = np.asarray(_to_numpy(obj["control_ranges"]), dtype=np.float64)
        controls = np.asarray(tm["controls"], dtype=np.float64).reshape(-1, len(names))
        f0 = np.asarray(tm["f0"], dtype=np.float64).reshape(-1)
        v = np.asarray(tm["voicedness"], dtype=np.float64).reshape(-1)
        voiced = f0[(v >= config.pitch.voicing_threshold) & np.isfinite(f0)]
        f0_range = imap.get("f0_range")
        if f0_range is None:
            f0_range = (
                np.percentile(voiced, [1.0, 99.0])
                if voiced.size
                else (config.pitch.fmin, config.pitch.fmax)
            )
        interface = ModelInterface(
            control_names=tuple(names),
            control_ranges=ranges,
            control_defaults=np.median(controls, axis=0),
            fmin=float(imap["fmin"]),
            f0_range=(float(f0_range[0]), float(f0_range[1])),
            f0_default=float(np.median(voiced)) if voiced.size else V1_F0_DEFAULT,
            include_voicedness=bool(imap["include_voicedness"]),
            outputs=output_layout(config),
            sample_rate=config.audio.sample_rate,
            hop_size=config.features.hop_size,
        )
        input_map = migrate_v1_state(imap)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise BundleError(
            f"version-1 bundle cannot be migrated: missing or malformed {e} "
            "(re-run `wms train` to write a current bundle)"
        ) from None
    rest = {k: v for k, v in obj.items() if k not in ("control_names", "control_ranges")}
    return {
        **rest,
        "version": BUNDLE_VERSION,
        "interface": interface.to_state(),
        "input_map": input_map,
        "metrics": migrate_v1_metrics(_to_numpy(obj["metrics"])),
    }


def migrate_v1_metrics(m: dict) -> dict:
    """wms 0.1.0's flat held-out figures (all bins, on its validation blocks) in today's layout
    (``wms.evaluation.metrics.heldout_report``); empty stays empty."""
    if not isinstance(m, dict) or not all(_number(m.get(k)) for k in _FLAT_METRICS):
        return {}
    return {
        "split": "validation",
        "frames": int(m.get("n_frames", 0)),
        "model": {"lsd_db": m["lsd_db"], "sc": m["sc"]},
        "baseline_mean": {"lsd_db": m["lsd_db_mean_baseline"], "sc": m["sc_mean_baseline"]},
        "baseline_nearest": {"lsd_db": m["lsd_db_nn_baseline"], "sc": m["sc_nn_baseline"]},
    }


def _json_like(x: Any) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_json_like(v) for v in x)
    return x is None or isinstance(x, (str, bool, int, float))


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


#: history entry fields and whether None is allowed
_HISTORY = {"epoch": False, "step": False, "train_loss": False, "val_loss": True, "lr": False}
#: the frame ranges a data file may list (wms.training.data.FileSplit)
_RANGES = ("train", "val", "test", "excluded")


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _frame_ranges(r, n_frames: int) -> bool:
    """``r`` is a list of ``[start, stop]`` frame pairs within ``0 .. n_frames``."""
    return isinstance(r, (list, tuple)) and all(
        isinstance(p, (list, tuple))
        and len(p) == 2
        and all(_count(x) for x in p)
        and p[0] <= p[1] <= n_frames
        for p in r
    )


#: wms 0.1.0's (and early 0.2 development builds') flat metrics
_FLAT_METRICS = (
    "lsd_db",
    "sc",
    "lsd_db_mean_baseline",
    "sc_mean_baseline",
    "lsd_db_nn_baseline",
    "sc_nn_baseline",
)
#: the predictors a metrics table holds (wms.evaluation.metrics.heldout_report)
_PREDICTORS = ("model", "baseline_mean", "baseline_nearest")


def _checked_contents(obj: dict, interface: ModelInterface, path: Path) -> tuple:
    """The training map, data map, history and metrics, checked against their schema once,
    here, so no later command meets a malformed field."""

    def bad(field: str, why: str) -> BundleError:
        return BundleError(f"{path}: malformed bundle: {field} {why}")

    tm = _to_numpy(obj["training_map"])
    if not isinstance(tm, dict):
        raise bad("training_map", "is not a table")
    shapes = {"controls": (interface.n_timbre,), "f0": (), "voicedness": ()}
    shapes.update(inputs=(interface.n_inputs,), targets=(interface.n_outputs,), frames=(2,))
    m = None
    for key, tail in shapes.items():
        if key not in tm:
            if key in ("controls", "f0", "voicedness"):
                raise bad("training_map", f"has no {key!r} array")
            continue
        a = tm[key]
        if not isinstance(a, np.ndarray) or a.shape[1:] != tail or a.ndim != 1 + len(tail):
            raise bad(f"training_map[{key!r}]", f"is not an array of shape [M, *{list(tail)}]")
        if not np.all(np.isfinite(a)):
            raise bad(f"training_map[{key!r}]", "holds NaN or infinite values")
        if m is not None and len(a) != m:
            raise bad(f"training_map[{key!r}]", f"has {len(a)} rows, the others {m}")
        m = len(a)
    if not m or not np.all(tm["f0"] > 0):
        raise bad("training_map", "is empty or holds non-positive f0")
    data = _to_numpy(obj["data"])
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("path"), str)
        and isinstance(f.get("key"), str)
        and _count(f.get("n_frames"))
        and all(_frame_ranges(f.get(k, []), f["n_frames"]) for k in _RANGES)
        for f in files
    ):
        raise bad(
            "data",
            "is not {'files': [{'path', 'key', 'n_frames', 'train'/'val'/'test': [[start, stop], "
            "...]}]}",
        )
    history = obj["history"]
    if not isinstance(history, list) or not all(
        isinstance(h, dict)
        and all(
            k in h and (_number(h[k]) or (none_ok and h[k] is None))
            for k, none_ok in _HISTORY.items()
        )
        and _number(h.get("seconds", 0.0))
        for h in history
    ):
        raise bad("history", f"is not a list of {{{', '.join(_HISTORY)}}} entries")
    metrics = obj["metrics"]
    if not isinstance(metrics, dict) or not _json_like(metrics):
        raise bad("metrics", "is not a table of plain values")
    if "model" not in metrics and all(_number(metrics.get(k)) for k in _FLAT_METRICS):
        metrics = migrate_v1_metrics(metrics)  # the flat layout: same figures, renamed
    if metrics:
        scores_ok = all(
            isinstance(metrics.get(k), dict)
            and all(_number(v) for v in metrics[k].values())
            and {"sc", "lsd_db"} <= set(metrics[k])
            for k in _PREDICTORS
        )
        flags = metrics.get("flags", [])
        if not (
            scores_ok
            and isinstance(metrics.get("split"), str)
            and _number(metrics.get("frames"))
            and isinstance(flags, list)
            and all(isinstance(f, dict) and {"message", "advice"} <= set(f) for f in flags)
        ):
            raise bad("metrics", "is not a held-out report (split, frames, model, baselines)")
    return tm, data, list(history), dict(metrics)


def load_bundle(path: str | Path) -> Bundle:
    """Load ``model.wms`` in any process: nothing but the file is needed.

    Raises:
        BundleError: naming the file, when it is missing, truncated, not a bundle,
            of another format version, or its contents do not fit together.
    """
    from wms.analysis.inputmap import InputMap

    path = Path(path)
    obj = _read(path)
    version = int(obj["version"])
    try:
        stored = obj["config"]
        config = from_dict(
            stored_config(
                migrate_config_v1(stored) if version == 1 and isinstance(stored, dict) else stored
            ),
            source=f"{path} [config]",
        )
    except ConfigError as e:
        raise BundleError(f"{path}: the stored config is invalid: {e}") from None
    if version == 1:
        try:
            obj = migrate_v1(obj, config)
        except BundleError as e:
            raise BundleError(f"{path}: {e}") from None
    try:
        interface = ModelInterface.from_state(obj["interface"], where=f"{path} [interface]")
        input_map = InputMap.from_state(_to_numpy(obj["input_map"]))
    except (BundleError, ValueError) as e:
        raise BundleError(f"{path}: {e}") from None
    if input_map.n_controls != interface.n_timbre:
        raise BundleError(
            f"{path}: the input map gives {input_map.n_controls} controls, the interface "
            f"names {interface.n_timbre}"
        )
    m = obj["model"]
    try:
        model = WMSNet.from_config(int(m["n_inputs"]), int(m["n_outputs"]), config.model)
        model.load_state_dict(m["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError) as e:
        raise BundleError(
            f"{path}: the stored weights do not fit the stored model config ({e})"
        ) from None
    if model.n_inputs != interface.n_inputs or model.n_outputs != interface.n_outputs:
        raise BundleError(
            f"{path}: the network maps {model.n_inputs} -> {model.n_outputs} values, the "
            f"interface {interface.n_inputs} -> {interface.n_outputs}"
        )
    bad = [k for k, v in model.state_dict().items() if not torch.isfinite(v).all()]
    if bad:
        raise BundleError(
            f"{path}: corrupt bundle: the weights {', '.join(bad)} hold NaN or infinite values "
            "(training diverged, or the file was damaged); re-run `wms train`"
        )
    training_map, data, history, metrics = _checked_contents(obj, interface, path)
    model.eval()
    return Bundle(
        path=path,
        model=model,
        config=config,
        interface=interface,
        input_map=input_map,
        training_map=training_map,
        data=data,
        history=history,
        metrics=metrics,
        wms_version=str(obj["wms_version"]),
        parameter_count=count_parameters(model),
        version=version,
    )


def settings_origin(c: Config, preset: str | None = None, written_by: str | None = None) -> str:
    """Which preset a config starts from (``preset`` as recorded by ``wms train``, else the
    closest one), and what it changes (runtime settings aside), against the presets as the
    wms version ``written_by`` had them (today's when ``None``)."""
    from wms.config import CHANGED_DEFAULTS, PRESETS, load_config

    version = tuple(int(v) for v in re.findall(r"\d+", written_by or "")[:3]) or None

    def changes(preset: str) -> list[str]:
        base = load_config(None, preset=preset).to_dict()
        for since, before in CHANGED_DEFAULTS.items():
            if version is not None and version < since:
                for (sec, key), value in before.items():
                    base[sec][key] = value
        mine = c.to_dict()
        return [
            f"{sec}.{k}={mine[sec][k]!r}"
            for sec in mine
            if sec != "runtime"
            for k in mine[sec]
            if mine[sec][k] != base[sec].get(k)
        ]

    found = preset if preset in PRESETS else min(PRESETS, key=lambda p: len(changes(p)))
    diff = changes(found)
    return f"preset {found}" + (f", changed: {', '.join(diff)}" if diff else "")


def describe(b: Bundle) -> str:
    """A human-readable summary of a bundle (what ``wms info`` prints): what it is, how to
    play it (controls, their meaning and ranges, the pitch range) and how good it is."""
    from wms.synth.network import control_effects

    c, i = b.config, b.interface
    lo, hi = i.f0_range
    lines = [
        f"{b.path}: {BUNDLE_FORMAT} version {b.version}, written by wms {b.wms_version}",
        "settings: "
        + (
            settings_origin(c, b.data.get("preset"), b.wms_version)
            if b.version >= 2
            else f"wms {b.wms_version} (before presets)"
        ),
        f"model: {b.model.n_inputs} inputs -> encoder {c.model.encoder_size} -> GRU "
        f"{c.model.hidden_size} x {c.model.num_layers} -> {i.outputs.n_bins} bins"
        + (f" + {i.n_noise} noise bands" if i.n_noise else "")
        + f" ({c.model.output_activation}); {b.parameter_count:,} parameters",
        f"analysis: {c.audio.sample_rate} Hz, hop {c.features.hop_size}, window "
        f"{c.features.window_size}, {c.features.cycles_per_window} cycles, pitch "
        f"{c.pitch.method} {c.pitch.fmin:g}-{c.pitch.fmax:g} Hz, reduction {c.features.reduction}",
        f"pitch: trained on {lo:.0f}-{hi:.0f} Hz (default {i.f0_default:.0f} Hz); plays "
        f"{i.n_harmonics} harmonics per table",
        "controls (wms render --control NAME=V; default: the training median), and what each "
        f"does to the sound from the low to the high end of its range at {i.f0_default:.0f} Hz:",
    ]
    effects = control_effects(b)
    for (a, z), d, e in zip(i.control_ranges, i.control_defaults, effects, strict=True):
        lines.append(f"  {e.name:<9} {a:8.2f} .. {z:<8.2f} default {d:7.2f}   {e}")
    files = b.data.get("files", [])
    held = {
        k: sum(int(r[1]) - int(r[0]) for f in files for r in f.get(k, [])) for k in ("val", "test")
    }
    lines.append(
        f"data: {len(files)} file(s), {sum(int(f['n_frames']) for f in files)} frames, "
        f"{held['val']} for validation and {held['test']} for test; training map "
        f"{len(b.training_map.get('f0', []))} frames"
    )
    if b.history:
        last = b.history[-1]
        best = min(
            (h["val_loss"] for h in b.history if h.get("val_loss") is not None), default=None
        )
        lines.append(
            f"training: {last['epoch'] + 1} epochs, {last['step']} steps, "
            f"{last.get('seconds', 0.0) / 60:.1f} min; final train loss {last['train_loss']:.4f}"
            + (f", best val loss {best:.4f}" if best is not None else "")
            + (f"; weights: {b.metrics['weights']}" if "weights" in b.metrics else "")
        )
    from wms.evaluation.metrics import describe_heldout

    lines += describe_heldout(b.metrics)
    return "\n".join(lines)


def run_info(args) -> int:
    """``wms info BUNDLE``."""
    print(describe(load_bundle(args.bundle)))
    return 0
