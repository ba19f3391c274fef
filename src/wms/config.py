"""The one typed configuration of WMS.

A :class:`Config` holds sections (``audio``, ``pitch``, ``features``, ``data``,
``model``, ``train``, ``synth``), each a frozen dataclass whose defaults are the
reference project's (DESIGN.md §1). A config is built from, in order:

1. the defaults,
2. an optional TOML file (``load_config(path)``), or a reference-project
   ``params.json`` (detected by its ``.json`` suffix, keys translated by
   :data:`REFERENCE_KEYS`),
3. ``--set section.key=value`` overrides (``apply_overrides``).

Unknown sections or keys and values of the wrong type or out of range raise
:class:`~wms.errors.ConfigError` naming the key. ``config.to_dict()`` gives the
resolved config, written next to every run and inside every bundle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wms.errors import ConfigError


@dataclass(frozen=True)
class AudioConfig:
    #: Analysis sample rate in Hz; every file is resampled to it.
    sample_rate: int = 16000
    #: File suffixes (lower case) picked up when a folder is searched.
    extensions: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")
    #: A file whose peak is below this (dBFS) is reported as silent.
    silence_db: float = -60.0


@dataclass(frozen=True)
class PitchConfig:
    #: Pitch tracker: ``"yin"``, ``"pyin"``, ``"crepe"`` or ``"fast"`` (the default).
    method: str = "fast"
    #: Lowest and highest f0 in Hz searched by the tracker and used for log-pitch.
    fmin: float = 46.0
    fmax: float = 1600.0
    #: CREPE capacity, ``"tiny"`` or ``"full"``.
    crepe_model: str = "tiny"
    #: Frames whose voicedness is below this count as unvoiced.
    voicing_threshold: float = 0.5
    #: Frames per batch when running CREPE.
    crepe_batch_size: int = 2048


@dataclass(frozen=True)
class FeatureConfig:
    #: Analysis hop in samples (frames are centred at ``i * hop_size``).
    hop_size: int = 256
    #: Length W of the N-cycle window in samples.
    window_size: int = 1024
    #: FFT length (>= window_size).
    n_fft: int = 1024
    #: Number K of lowest rfft bins kept as the target spectrum.
    n_bins: int = 80
    #: Cycles N of the fundamental resampled into one window.
    cycles_per_window: int = 2
    n_mfcc: int = 8
    n_mels: int = 40
    #: Mel filterbank range in Hz; ``mel_fmax = 0`` means sample_rate / 2.
    mel_fmin: float = 0.0
    mel_fmax: float = 0.0
    #: What unvoiced frames use as f0 when cut into N cycles:
    #: ``"hold"`` the last voiced f0 (the next one before the first voiced frame),
    #: ``"raw"`` no pitch normalisation (the window is taken as it is).
    #: Either way every frame keeps its place, so features and targets stay aligned.
    unvoiced: str = "hold"
    #: Give the model the voicedness input.
    include_voicedness: bool = True
    #: Timbre reduction fitted at training time: ``"none"``, ``"pca"`` or ``"pacmap"``.
    reduction: str = "none"
    #: Number of reduced timbre dimensions when ``reduction != "none"``.
    reduction_dims: int = 3

    @property
    def bins_per_harmonic(self) -> int:
        """Spectrum bins between harmonics: harmonic h sits at bin ``h * bins_per_harmonic``.

        N cycles fill the W-sample window, zero-padded to n_fft, so this is
        ``N * n_fft / W`` (N at the default n_fft = W); the config check keeps it whole.
        """
        return self.cycles_per_window * self.n_fft // self.window_size


@dataclass(frozen=True)
class DataConfig:
    #: Training sequence length T in frames.
    seq_len: int = 50
    batch_size: int = 512
    #: Share of each file's frames held out for validation, in contiguous blocks.
    val_fraction: float = 0.1
    #: Length of one held-out block in seconds.
    val_block_seconds: float = 10.0
    #: Frames left unused between a training region and a validation block.
    gap_frames: int = 50
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    encoder_size: int = 256
    hidden_size: int = 256
    num_layers: int = 1
    #: Dropout after the dense layer (and between GRU layers); the reference used 0.
    #: 0.2 with weight_decay 0.1 generalised best on held-out data (benchmarks/bench_train.py).
    dropout: float = 0.2
    #: Final activation: ``"softplus"`` (reference), ``"relu"`` or ``"none"``.
    output_activation: str = "softplus"


@dataclass(frozen=True)
class TrainConfig:
    #: ``"adamw"``, ``"adam"`` or ``"sgd"``.
    optimizer: str = "adamw"
    #: The reference used lr 1e-4 and weight_decay 1e-5 with the "spectral" loss; these
    #: defaults reach a lower held-out LSD in the same time (benchmarks/bench_train.py).
    lr: float = 2e-3
    weight_decay: float = 0.1
    #: ``"plateau"`` (ReduceLROnPlateau, reference), ``"onecycle"`` or ``"none"``.
    scheduler: str = "plateau"
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    #: ``"log_spectral"`` (spectral convergence + L1 on log(magnitude + 0.01)),
    #: ``"spectral"`` (the reference's: spectral convergence + L1 on log1p),
    #: ``"mse"`` or ``"weighted_mse"`` (low-frequency weighted); see wms.training.losses.
    loss: str = "log_spectral"
    #: Weight of the smoothness-along-frequency penalty (0 disables it).
    smoothness_weight: float = 0.0
    max_epochs: int = 1000
    #: Wall-clock budget in minutes (0 = none).
    max_minutes: float = 0.0
    early_stopping_patience: int = 20
    gradient_clip: float = 1.0
    checkpoint_minutes: float = 10.0
    #: Validation runs this many times per epoch at most (1.0 = once an epoch).
    val_check_interval: float = 1.0
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    seed: int = 0


@dataclass(frozen=True)
class SynthConfig:
    #: Output sample rate in Hz.
    sample_rate: int = 48000
    #: Seconds between model steps (one new table per step).
    control_interval: float = 0.016
    #: Samples per cycle of the played table.
    table_size: int = 2048
    voices: int = 8
    attack: float = 0.01
    decay: float = 0.1
    sustain: float = 0.8
    release: float = 0.2
    #: Glide time in seconds (0 = none).
    glide: float = 0.0
    #: Pitch-bend range in semitones.
    pitch_bend_range: float = 2.0
    #: Output gain applied after the voices are summed.
    gain: float = 0.5
    #: MIDI CC number -> timbre control name, e.g. ``{"1" = "timbre0"}``.
    midi_cc: dict[str, str] = field(default_factory=dict)
    #: Controls outside the training range: ``"clamp"`` or ``"extrapolate"``.
    out_of_range: str = "clamp"


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    pitch: PitchConfig = field(default_factory=PitchConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved config as plain JSON/TOML-able data."""
        out = {}
        for f in dataclasses.fields(self):
            sec = dataclasses.asdict(getattr(self, f.name))
            out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
        return out

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys changed: ``cfg.replace(features={"hop_size": 128})``."""
        return from_dict(_merge(self.to_dict(), sections))

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("pitch", "method"): ("fast", "yin", "pyin", "crepe"),
    ("pitch", "crepe_model"): ("tiny", "full"),
    ("features", "unvoiced"): ("hold", "raw"),
    ("features", "reduction"): ("none", "pca", "pacmap"),
    ("model", "output_activation"): ("softplus", "relu", "none"),
    ("train", "optimizer"): ("adamw", "adam", "sgd"),
    ("train", "scheduler"): ("plateau", "onecycle", "none"),
    ("train", "loss"): ("log_spectral", "spectral", "mse", "weighted_mse"),
    ("synth", "out_of_range"): ("clamp", "extrapolate"),
}


def _check(cfg: Config) -> Config:
    """Range and consistency checks that types alone cannot express."""
    for (sec, key), choices in _CHOICES.items():
        v = getattr(getattr(cfg, sec), key)
        if v not in choices:
            raise ConfigError(f"{sec}.{key} = {v!r} is not one of {', '.join(choices)}")
    positive = [
        ("audio", "sample_rate"),
        ("features", "hop_size"),
        ("features", "window_size"),
        ("features", "n_fft"),
        ("features", "n_bins"),
        ("features", "cycles_per_window"),
        ("features", "n_mfcc"),
        ("features", "n_mels"),
        ("features", "reduction_dims"),
        ("pitch", "fmin"),
        ("pitch", "fmax"),
        ("pitch", "crepe_batch_size"),
        ("data", "seq_len"),
        ("data", "batch_size"),
        ("data", "val_block_seconds"),
        ("model", "encoder_size"),
        ("model", "hidden_size"),
        ("model", "num_layers"),
        ("train", "lr"),
        ("train", "max_epochs"),
        ("train", "num_nodes"),
        ("synth", "sample_rate"),
        ("synth", "control_interval"),
        ("synth", "table_size"),
        ("synth", "voices"),
    ]
    for sec, key in positive:
        v = getattr(getattr(cfg, sec), key)
        if not v > 0 or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"{sec}.{key} = {v!r} must be a positive number")
    f, p, a = cfg.features, cfg.pitch, cfg.audio
    if p.fmin >= p.fmax:
        raise ConfigError(f"pitch.fmin = {p.fmin} must be below pitch.fmax = {p.fmax}")
    if p.fmax >= a.sample_rate / 2:
        raise ConfigError(
            f"pitch.fmax = {p.fmax} Hz must be below the Nyquist frequency "
            f"{a.sample_rate / 2} Hz of audio.sample_rate = {a.sample_rate}"
        )
    if f.n_fft < f.window_size:
        raise ConfigError(
            f"features.n_fft = {f.n_fft} must be >= features.window_size = {f.window_size}"
        )
    if (f.cycles_per_window * f.n_fft) % f.window_size:
        raise ConfigError(
            f"features.cycles_per_window * n_fft / window_size = {f.cycles_per_window} * "
            f"{f.n_fft} / {f.window_size} must be a whole number (the spacing of harmonics "
            "in bins); use n_fft = window_size or a power-of-two multiple of it"
        )
    if f.n_bins > f.n_fft // 2 + 1:
        raise ConfigError(
            f"features.n_bins = {f.n_bins} exceeds n_fft // 2 + 1 = {f.n_fft // 2 + 1}"
        )
    if f.n_mfcc > f.n_mels:
        raise ConfigError(f"features.n_mfcc = {f.n_mfcc} must be <= features.n_mels = {f.n_mels}")
    if f.reduction != "none" and f.reduction_dims > f.n_mfcc:
        raise ConfigError(
            f"features.reduction_dims = {f.reduction_dims} must be <= features.n_mfcc = {f.n_mfcc}"
        )
    mel_top = f.mel_fmax or a.sample_rate / 2
    if not 0 <= f.mel_fmin < mel_top <= a.sample_rate / 2:
        raise ConfigError(
            f"features.mel_fmin = {f.mel_fmin}, mel_fmax = {f.mel_fmax}: need "
            f"0 <= mel_fmin < mel_fmax <= sample_rate / 2 (0 means sample_rate / 2)"
        )
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction = {cfg.data.val_fraction} must be in [0, 1)")
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout = {cfg.model.dropout} must be in [0, 1)")
    if not 0 <= cfg.synth.sustain <= 1:
        raise ConfigError(f"synth.sustain = {cfg.synth.sustain} must be in [0, 1]")
    if not 0 < p.voicing_threshold < 1:
        raise ConfigError(f"pitch.voicing_threshold = {p.voicing_threshold} must be in (0, 1)")
    return cfg


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            (item_tp, _) = typing.get_args(tp)
            return tuple(_coerce(where, v, item_tp) for v in value)
    elif origin is dict:
        if isinstance(value, dict):
            k_tp, v_tp = typing.get_args(tp)
            return {_coerce(where, str(k), k_tp): _coerce(where, v, v_tp) for k, v in value.items()}
    elif origin in (typing.Union, types.UnionType, Literal):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where} = {value!r} has the wrong type: expected {name}")


_HINTS = typing.get_type_hints(Config)


def from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Build a checked :class:`Config` from nested ``{section: {key: value}}`` data."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of sections, got {type(data).__name__}")
    sections = {}
    for sec_name, values in data.items():
        if sec_name not in _HINTS:
            raise ConfigError(
                f"{source}: unknown section [{sec_name}]; sections are {', '.join(_HINTS)}"
            )
        cls = _HINTS[sec_name]
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{sec_name}] must be a table of keys")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                close = [k for k in hints if k.startswith(key[:3])]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown key {sec_name}.{key}{hint}")
            kwargs[key] = _coerce(f"{source}: {sec_name}.{key}", value, hints[key])
        sections[sec_name] = cls(**kwargs)
    return _check(Config(**sections))


def _merge(base: dict, over: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


#: Reference-project ``params.json`` keys -> WMS keys. ``None`` means "known,
#: has no WMS equivalent, ignored" (plotting switches, comments, ...).
REFERENCE_KEYS: dict[str, str | None] = {
    "sample_rate": "audio.sample_rate",
    "hop_size": "features.hop_size",
    "window_size": "features.window_size",
    "n_fft": "features.n_fft",
    "n_fft_preserved": "features.n_bins",
    "cycles_per_window": "features.cycles_per_window",
    "n_mfcc": "features.n_mfcc",
    "n_mel": "features.n_mels",
    "n_mels": "features.n_mels",
    "f_low": "pitch.fmin",
    "f_high": "pitch.fmax",
    "pitch_detection_method": "pitch.method",
    "include_voicedness": "features.include_voicedness",
    "mfcc_dim_reduction": "features.reduction",
    "hidden_size": "model.hidden_size",
    "num_layers": "model.num_layers",
    "dropout": "model.dropout",
    "criterion": "train.loss",
    "optimizer": "train.optimizer",
    "batch_size": "data.batch_size",
    "learning_rate": "train.lr",
    "weight_decay": "train.weight_decay",
    "num_epochs": "train.max_epochs",
    "training_seq_length": "data.seq_len",
    "sequence_length": "data.seq_len",
    # Known reference keys without a WMS meaning.
    "audio_files_path": None,  # returned separately: it is the AUDIO argument
    "power": None,
    "fft_type": None,
    "model_type": None,
    "amsgrad": None,
    "lr_decay": None,
    "num_batches": None,
    "animate_weights": None,
    "record_weights_every": None,
    "do_plotting_on_prediction": None,
    "write_audio": None,
    "write_spectrum": None,
}

_REFERENCE_VALUES = {
    "train.loss": {"mse": "mse", "weightedmse": "weighted_mse", "spectral": "spectral"},
    "train.optimizer": {"adam": "adam", "adamw": "adamw", "sgd": "sgd"},
    "features.reduction": {"none": "none", "null": "none", "pca": "pca", "pacmap": "pacmap"},
}


def from_reference_params(
    params: dict[str, Any], *, source: str = "params.json"
) -> tuple[dict, str | None]:
    """Translate a reference ``params.json`` into WMS overrides.

    Returns ``(nested overrides, audio_files_path or None)``. Keys ending in
    ``_comment`` are skipped; keys that are neither known nor comments raise.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a JSON object of reference params")
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.endswith("_comment"):
            continue
        if key not in REFERENCE_KEYS:
            raise ConfigError(f"{source}: unknown reference key {key!r}")
        target = REFERENCE_KEYS[key]
        if target is None:
            continue
        if target in _REFERENCE_VALUES:
            table = _REFERENCE_VALUES[target]
            norm = "none" if value is None else str(value).lower()
            if norm not in table:
                raise ConfigError(f"{source}: {key} = {value!r} is not one of {', '.join(table)}")
            value = table[norm]
        sec, k = target.split(".")
        nested.setdefault(sec, {})[k] = value
    return nested, params.get("audio_files_path")


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults, then ``path`` (TOML, or a reference ``params.json``), then ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
    return from_dict(_merge(data, parse_overrides(overrides)), source=str(path or "config"))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested overrides a TOML or reference-JSON file holds (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.suffix.lower() == ".json":
            data, _ = from_reference_params(json.loads(path.read_text()), source=str(path))
            return data
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: not a valid config file: {e}") from None


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["features.hop_size=128", "pitch.method=yin"]`` -> nested dict.

    Values are read as TOML literals (``128``, ``1e-3``, ``true``, ``[1, 2]``);
    anything that is not a TOML literal is taken as a string.
    """
    nested: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(
                f"--set {item!r}: expected section.key=value, e.g. features.hop_size=128"
            )
        sec, _, k = key.strip().partition(".")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        nested.setdefault(sec, {})[k] = value
    return nested


def dumps_toml(data: dict[str, dict[str, Any]]) -> str:
    """A small TOML writer for the config's own shape (sections of scalars, lists, tables)."""

    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {lit(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = []
    for sec, values in data.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {lit(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)
