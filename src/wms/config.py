"""The one typed configuration of WMS.

A :class:`Config` holds sections (``audio``, ``pitch``, ``features``, ``data``, ``model``,
``train``, ``runtime``, ``synth``), each a frozen dataclass. ``runtime`` says how and where
a run executes (accelerator, devices, nodes, a wall-clock cap, checkpoint interval) and
never changes the model: :meth:`Config.model_hash` leaves it (and ``synth``) out.

Every config is built by one function, :func:`resolve`, from layers applied in order:

1. the defaults,
2. a base layer when there is one: a checkpoint's config (``wms train --resume``) or a
   bundle's (``wms render``, which may change ``synth.*`` only),
3. an optional TOML file (``--config run.toml``), or a reference-project ``params.json``
   (detected by its ``.json`` suffix, keys translated by :data:`REFERENCE_KEYS`),
4. ``--set section.key=value`` overrides,
5. command-line flags that set a key (``--max-minutes``, ``--devices``, ...).

Unknown sections or keys, values of the wrong type and values outside their range
(:data:`RULES`, one table for every key) raise :class:`~wms.errors.ConfigError` naming the
key and the layer it came from. ``config.to_dict()`` gives the resolved config, written
next to every run and inside every bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wms.errors import ConfigError


@dataclass(frozen=True)
class AudioConfig:
    #: Analysis sample rate in Hz; every file is resampled to it. 44.1 kHz holds the whole
    #: audible band (the reference analysed at 16 kHz: ``--preset reference``); a file
    #: recorded at a lower rate is masked above its own Nyquist (docs/DESIGN.md §6.3).
    sample_rate: int = 44100
    #: File suffixes (lower case) picked up when a folder is searched.
    extensions: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")
    #: A file whose peak is below this (dBFS) is reported as silent.
    silence_db: float = -60.0


@dataclass(frozen=True)
class PitchConfig:
    #: Pitch tracker: ``"yin"``, ``"pyin"``, ``"crepe"`` or ``"fast"`` (the default).
    method: str = "fast"
    #: Lowest and highest f0 in Hz searched by the tracker and used for log-pitch: a bass's
    #: low B (31 Hz) to a piccolo's top (4.2 kHz); the reference searched 46-1600 Hz.
    fmin: float = 30.0
    fmax: float = 4200.0
    #: CREPE capacity, ``"tiny"`` or ``"full"``.
    crepe_model: str = "tiny"
    #: Frames whose voicedness is below this count as unvoiced.
    voicing_threshold: float = 0.5
    #: Frames per batch when running CREPE.
    crepe_batch_size: int = 2048


@dataclass(frozen=True)
class FeatureConfig:
    #: Analysis hop in samples (frames are centred at ``i * hop_size``): 706 is 16.0 ms at
    #: 44.1 kHz, the synth's control interval.
    hop_size: int = 706
    #: Length W of the N-cycle window in samples: N = 2 cycles of 30 Hz fit without
    #: compressing the signal.
    window_size: int = 4096
    #: FFT length (>= window_size).
    n_fft: int = 4096
    #: Number K of lowest rfft bins kept as the target spectrum: 321 = 160 harmonics at
    #: 2 bins per harmonic (a 110 Hz note reaches 17.6 kHz; the reference kept 80 = 39).
    n_bins: int = 321
    #: Cycles N of the fundamental resampled into one window.
    cycles_per_window: int = 2
    n_mfcc: int = 8
    n_mels: int = 40
    #: Mel filterbank range in Hz; ``mel_fmax = 0`` means sample_rate / 2. 3456 Hz is the top
    #: of the 321 bins (321 * 44100 / 4096): the MFCC see the harmonics the model predicts,
    #: not the N-cycle window's empty top (on basic waves the model's test LSD 4.6 dB instead
    #: of 10.6, where low saws were played as squares; README "Configuration").
    mel_fmin: float = 0.0
    mel_fmax: float = 3456.0
    #: What unvoiced frames use as f0 when cut into N cycles:
    #: ``"hold"`` the last voiced f0 (the next one before the first voiced frame),
    #: ``"raw"`` no pitch normalisation (the window is taken as it is).
    #: Either way every frame keeps its place, so features and targets stay aligned.
    unvoiced: str = "hold"
    #: Give the model the voicedness input.
    include_voicedness: bool = True
    #: What the timbre controls are computed from: ``"mfcc"`` (the MFCC of the N-cycle
    #: window) or ``"envelope"`` (the log1p levels of harmonics 1..``envelope_harmonics``,
    #: pitch-invariant by construction: docs/DESIGN.md §1.4).
    timbre: str = "mfcc"
    #: Harmonics in the ``"envelope"`` timbre features (at most the target's harmonics).
    envelope_harmonics: int = 12
    #: Bands of the noise part (docs/DESIGN.md §1.7): the model also predicts the level of
    #: the sound the harmonics do not explain (breath, bow, consonants) in this many mel
    #: bands, and the synth adds noise shaped by it. 0: harmonics only (the reference).
    noise_bands: int = 32
    #: With a noise part, what the harmonic target does with the noise's expected share of
    #: each of its bins (docs/DESIGN.md §1.7): ``"removed"`` (the harmonics hold the periodic
    #: sound, the noise part the rest) or ``"kept"`` (the first noise part's analysis, which
    #: played that share twice, as harmonics and as noise; runs stored without this key).
    harmonic_noise: str = "removed"
    #: Timbre reduction fitted at training time: ``"none"`` (the standardised features, as
    #: the reference), ``"pca"`` or ``"pacmap"``. PCA (the default since wms 0.4.0) orders the
    #: controls by how much of the timbre each explains, ``pc0`` first (docs/DESIGN.md §1.4).
    reduction: str = "pca"
    #: Number of reduced timbre dimensions when ``reduction != "none"``. 0: for PCA the
    #: principal components that each explain at least 1 % of the training frames' timbre
    #: variance (``wms.analysis.inputmap.MIN_EXPLAINED``), at least one; for PaCMAP 3.
    reduction_dims: int = 0

    @property
    def bins_per_harmonic(self) -> int:
        """Spectrum bins between harmonics: harmonic h sits at bin ``h * bins_per_harmonic``.

        N cycles fill the W-sample window, zero-padded to n_fft, so this is
        ``N * n_fft / W`` (N at the default n_fft = W); the config check keeps it whole.
        """
        return self.cycles_per_window * self.n_fft // self.window_size


@dataclass(frozen=True)
class DataConfig:
    #: Training sequence length T in frames. Many small batches learn more per CPU second
    #: than few large ones (the cost of a step is close to batch x T x width; measured in
    #: benchmarks/bench_train.py); the reference used T 50, batch 512.
    seq_len: int = 32
    batch_size: int = 64
    #: Share of each file's frames held out for validation, in contiguous blocks: early
    #: stopping, the LR schedule and the choice of weights look at these.
    val_fraction: float = 0.1
    #: Share held out for test, in blocks of their own: reported, never used for a choice.
    test_fraction: float = 0.1
    #: Length of one held-out block in seconds.
    val_block_seconds: float = 10.0
    #: Frames left unused between a training region and a held-out block.
    gap_frames: int = 50
    #: A frame is silent when its level is this many dB (< 0) under its file's loud level
    #: (the 95th percentile of its frames); runs of silent frames of at least
    #: ``trim_silence_seconds`` are trimmed: no sequence, loss or metric uses them.
    silence_db: float = -60.0
    trim_silence_seconds: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    #: 128 is as good as 256 on 20-60 s corpora and 2.9x cheaper per frame (the reference
    #: and its plugins use 256: ``--preset reference``).
    encoder_size: int = 128
    hidden_size: int = 128
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
    lr: float = 5e-3
    weight_decay: float = 0.1
    #: ``"cosine"`` (linear warm-up over ``warmup_fraction`` of the step budget, then a
    #: cosine decay to 0 at its end), ``"plateau"`` (ReduceLROnPlateau on the validation
    #: loss, the reference's), ``"onecycle"`` (over the step budget) or ``"none"``. On a
    #: small corpus an epoch is a few dozen steps and plateau halves the rate every few
    #: of them: it had decayed to 0 by step 800 in the measurement.
    scheduler: str = "cosine"
    warmup_fraction: float = 0.05
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    #: ``"log_spectral"`` (spectral convergence + L1 on log(magnitude + 0.01)),
    #: ``"spectral"`` (the reference's: spectral convergence + L1 on log1p),
    #: ``"mse"`` or ``"weighted_mse"`` (low-frequency weighted); see wms.training.losses.
    loss: str = "log_spectral"
    #: Weight of the smoothness-along-frequency penalty (0 disables it).
    smoothness_weight: float = 0.0
    max_epochs: int = 1000
    #: Step budget (0: automatic, a number of passes over the training data scaled to the
    #: corpus; see wms.training.train.step_budget). Steps, not minutes: the same on any machine.
    max_steps: int = 0
    #: Epochs without a lower validation loss before training stops (0: off, the
    #: default: the step budget ends the run).
    early_stopping_patience: int = 0
    #: The weights the bundle keeps: ``"final"`` (after the last step) or ``"best"`` (at
    #: the lowest validation loss). On 5-10 s validation blocks the best-validation
    #: weights lost to the final ones on the test blocks in 32 of 38 measured runs.
    weights: str = "final"
    gradient_clip: float = 1.0
    #: Validation runs this many times per epoch at most (1.0 = once an epoch).
    val_check_interval: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class RuntimeConfig:
    """How and where a run executes: nothing here changes what the model is."""

    #: Lightning accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda"`` or ``"mps"``.
    accelerator: str = "auto"
    #: Devices per node in Lightning's syntax: ``"auto"``, a count (``"2"``, ``"-1"`` = all)
    #: or a list of device indices (``"0,1"``).
    devices: str = "auto"
    num_nodes: int = 1
    #: Wall-clock cap in minutes (0 = none); a safety net, not a reproducible budget.
    max_minutes: float = 0.0
    #: Minutes between checkpoints (one is also written at the end).
    checkpoint_minutes: float = 10.0
    #: CPU threads for training (0: automatic, 1 for models up to 128 wide, else torch's
    #: default). On 2 shared cores two threads ran 3-8x slower than one for small models.
    threads: int = 0


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
    #: The fixed phase of each harmonic in every table: ``"zero"`` (cosines, the reference's;
    #: a bright spectrum is a peaky waveform) or ``"schroeder"`` (``-pi h (h - 1) / H``: the
    #: same spectrum at a far lower crest factor, docs/SYNTH.md). 160 zero-phase harmonics of
    #: a bright spectrum make a peaky table that reaches the soft limiter: Schroeder's phases
    #: keep a flat spectrum at a crest factor of 1.7 instead of 18.
    phases: str = "schroeder"
    #: Second-order band-pass stages per noise band (docs/DESIGN.md §1.7): each falls 6 dB
    #: per octave outside its band, so more stages keep a band's noise out of its neighbours'
    #: (a voice with nothing above 11 kHz: its held-out resynthesis 21 % closer with 3 than
    #: with 2, which bundles made before 0.3.0 keep); each stage is one biquad per band and
    #: sample.
    noise_stages: int = 3


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    pitch: PitchConfig = field(default_factory=PitchConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
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
        return resolve([("config", self.to_dict()), ("replace()", sections)])

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def model_dict(self) -> dict[str, dict[str, Any]]:
        """The sections that decide what model a run produces (not runtime, not synth)."""
        return {k: v for k, v in self.to_dict().items() if k in MODEL_SECTIONS}

    def model_hash(self) -> str:
        """sha256 (hex) of :meth:`model_dict`: equal for runs that train the same model."""
        blob = json.dumps(self.model_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


#: Sections that describe the model (and so its hash); ``runtime`` and ``synth`` do not.
MODEL_SECTIONS = ("audio", "pitch", "features", "data", "model", "train")


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class Rule:
    """The allowed values of one key: a closed or open interval, or a set of choices."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()

    def check(self, v: Any) -> str | None:
        """Why ``v`` is not allowed, or None."""
        if self.choices:
            return None if v in self.choices else f"is not one of {', '.join(self.choices)}"
        if not math.isfinite(v):
            return "must be a finite number"
        below = v <= self.lo if self.lo_open else v < self.lo
        above = v >= self.hi if self.hi_open else v > self.hi
        if below or above:
            return f"must be in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        return None


def _in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Rule:
    return Rule(lo, hi, lo_open, hi_open)


def _one_of(*choices: str) -> Rule:
    return Rule(choices=choices)


_SECONDS = _in(0, 600)
#: Every checked key and its allowed values, in one place. Cross-key rules are in _check.
RULES: dict[tuple[str, str], Rule] = {
    ("audio", "sample_rate"): _in(8000, 192000),
    ("audio", "silence_db"): _in(-200, 0),
    ("pitch", "method"): _one_of("fast", "yin", "pyin", "crepe"),
    ("pitch", "fmin"): _in(1, 20000),
    ("pitch", "fmax"): _in(1, 96000),
    ("pitch", "crepe_model"): _one_of("tiny", "full"),
    ("pitch", "voicing_threshold"): _in(0, 1, lo_open=True, hi_open=True),
    ("pitch", "crepe_batch_size"): _in(1, 65536),
    ("features", "hop_size"): _in(1, 65536),
    ("features", "window_size"): _in(16, 65536),
    ("features", "n_fft"): _in(16, 131072),
    ("features", "n_bins"): _in(2, 65537),
    ("features", "cycles_per_window"): _in(1, 64),
    ("features", "n_mfcc"): _in(1, 128),
    ("features", "n_mels"): _in(1, 512),
    ("features", "mel_fmin"): _in(0, 96000),
    ("features", "mel_fmax"): _in(0, 96000),
    ("features", "unvoiced"): _one_of("hold", "raw"),
    ("features", "timbre"): _one_of("mfcc", "envelope"),
    ("features", "envelope_harmonics"): _in(1, 1024),
    ("features", "noise_bands"): _in(0, 64),
    ("features", "harmonic_noise"): _one_of("removed", "kept"),
    ("features", "reduction"): _one_of("none", "pca", "pacmap"),
    ("features", "reduction_dims"): _in(0, 128),
    ("data", "seq_len"): _in(1, 10000),
    ("data", "batch_size"): _in(1, 65536),
    ("data", "val_fraction"): _in(0, 1, hi_open=True),
    ("data", "test_fraction"): _in(0, 1, hi_open=True),
    ("data", "silence_db"): _in(-200, 0, hi_open=True),
    ("data", "trim_silence_seconds"): _in(0, 3600),
    ("data", "val_block_seconds"): _in(0, 3600, lo_open=True),
    ("data", "gap_frames"): _in(0, 100000),
    ("data", "seed"): _in(0, 2**32 - 1),
    ("model", "encoder_size"): _in(1, 4096),
    ("model", "hidden_size"): _in(1, 4096),
    ("model", "num_layers"): _in(1, 16),
    ("model", "dropout"): _in(0, 1, hi_open=True),
    ("model", "output_activation"): _one_of("softplus", "relu", "none"),
    ("train", "optimizer"): _one_of("adamw", "adam", "sgd"),
    ("train", "lr"): _in(0, 10, lo_open=True),
    ("train", "weight_decay"): _in(0, 10),
    ("train", "scheduler"): _one_of("cosine", "plateau", "onecycle", "none"),
    ("train", "warmup_fraction"): _in(0, 1, hi_open=True),
    ("train", "weights"): _one_of("final", "best"),
    ("train", "plateau_patience"): _in(0, 10000),
    ("train", "plateau_factor"): _in(0, 1, lo_open=True, hi_open=True),
    ("train", "loss"): _one_of("log_spectral", "spectral", "mse", "weighted_mse"),
    ("train", "smoothness_weight"): _in(0, 1000),
    ("train", "max_epochs"): _in(1, 10**6),
    ("train", "max_steps"): _in(0, 10**8),
    ("train", "early_stopping_patience"): _in(0, 10**6),
    ("train", "gradient_clip"): _in(0, 10**6),
    ("train", "val_check_interval"): _in(0, 1, lo_open=True),
    ("train", "seed"): _in(0, 2**32 - 1),
    ("runtime", "accelerator"): _one_of("auto", "cpu", "gpu", "cuda", "mps"),
    ("runtime", "num_nodes"): _in(1, 4096),
    ("runtime", "max_minutes"): _in(0, 10**6),
    ("runtime", "checkpoint_minutes"): _in(0, 10**6, lo_open=True),
    ("runtime", "threads"): _in(0, 1024),
    ("synth", "sample_rate"): _in(8000, 192000),
    ("synth", "control_interval"): _in(0.001, 1.0),
    ("synth", "table_size"): _in(16, 65536),
    ("synth", "phases"): _one_of("zero", "schroeder"),
    ("synth", "noise_stages"): _in(1, 8),
    ("synth", "voices"): _in(1, 256),
    ("synth", "attack"): _SECONDS,
    ("synth", "decay"): _SECONDS,
    ("synth", "sustain"): _in(0, 1),
    ("synth", "release"): _SECONDS,
    ("synth", "glide"): _SECONDS,
    ("synth", "pitch_bend_range"): _in(0, 48),
    ("synth", "gain"): _in(0, 16),
    ("synth", "out_of_range"): _one_of("clamp", "extrapolate"),
}
#: Keys whose values are checked by type or form rather than by a Rule.
FREE_KEYS = {
    ("audio", "extensions"),
    ("features", "include_voicedness"),
    ("runtime", "devices"),
    ("synth", "midi_cc"),
}
_DEVICES = re.compile(r"auto|-1|\d+|\d+(,\d+)+,?")


def check_section(name: str, section: Any, *, source: str = "config") -> None:
    """Apply the :data:`RULES` of section ``name`` to a section object built in code
    (e.g. a ``SynthConfig`` a host passes to the engine). Raises ConfigError."""
    for (sec, key), rule in RULES.items():
        if sec == name:
            v = getattr(section, key)
            why = rule.check(v)
            if why:
                raise ConfigError(f"{source}: {sec}.{key} = {v!r} {why}")


def _check(cfg: Config, origin: dict[tuple[str, str], str]) -> Config:
    """Ranges (:data:`RULES`) and cross-key consistency; errors name where a value came from."""

    def fail(keys: tuple[tuple[str, str], ...], message: str) -> None:
        where = sorted({origin.get(k, "defaults") for k in keys})
        raise ConfigError(f"{', '.join(where)}: {message}")

    for (sec, key), rule in RULES.items():
        v = getattr(getattr(cfg, sec), key)
        why = rule.check(v)
        if why:
            fail(((sec, key),), f"{sec}.{key} = {v!r} {why}")
    if not _DEVICES.fullmatch(cfg.runtime.devices.strip()):
        fail(
            (("runtime", "devices"),),
            f"runtime.devices = {cfg.runtime.devices!r} is not Lightning's syntax: "
            '"auto", a count ("2", "-1" for all) or device indices ("0,1")',
        )
    f, p, a = cfg.features, cfg.pitch, cfg.audio
    if p.fmin >= p.fmax:
        fail(
            (("pitch", "fmin"), ("pitch", "fmax")),
            f"pitch.fmin = {p.fmin} must be below pitch.fmax = {p.fmax}",
        )
    if p.fmax >= a.sample_rate / 2:
        fail(
            (("pitch", "fmax"), ("audio", "sample_rate")),
            f"pitch.fmax = {p.fmax} Hz must be below the Nyquist frequency "
            f"{a.sample_rate / 2} Hz of audio.sample_rate = {a.sample_rate}",
        )
    if f.hop_size > f.window_size:
        fail(
            (("features", "hop_size"), ("features", "window_size")),
            f"features.hop_size = {f.hop_size} exceeds features.window_size = {f.window_size}: "
            "frames would skip audio",
        )
    if f.n_fft < f.window_size:
        fail(
            (("features", "n_fft"), ("features", "window_size")),
            f"features.n_fft = {f.n_fft} must be >= features.window_size = {f.window_size}",
        )
    if (f.cycles_per_window * f.n_fft) % f.window_size:
        fail(
            (("features", "cycles_per_window"), ("features", "n_fft"), ("features", "window_size")),
            f"features.cycles_per_window * n_fft / window_size = {f.cycles_per_window} * "
            f"{f.n_fft} / {f.window_size} must be a whole number (the spacing of harmonics "
            "in bins); use n_fft = window_size or a power-of-two multiple of it",
        )
    if f.n_bins > f.n_fft // 2 + 1:
        fail(
            (("features", "n_bins"), ("features", "n_fft")),
            f"features.n_bins = {f.n_bins} exceeds n_fft // 2 + 1 = {f.n_fft // 2 + 1}",
        )
    if f.n_bins <= f.bins_per_harmonic:
        fail(
            (("features", "n_bins"),),
            f"features.n_bins = {f.n_bins} holds no harmonic (harmonic 1 is bin "
            f"{f.bins_per_harmonic})",
        )
    if f.n_mfcc > f.n_mels:
        fail(
            (("features", "n_mfcc"), ("features", "n_mels")),
            f"features.n_mfcc = {f.n_mfcc} must be <= features.n_mels = {f.n_mels}",
        )
    harmonics = (f.n_bins - 1) // f.bins_per_harmonic
    if f.timbre == "envelope" and f.envelope_harmonics > harmonics:
        fail(
            (("features", "envelope_harmonics"), ("features", "n_bins")),
            f"features.envelope_harmonics = {f.envelope_harmonics} exceeds the {harmonics} "
            f"harmonics the target holds (features.n_bins = {f.n_bins})",
        )
    width, width_key = (
        (f.envelope_harmonics, "envelope_harmonics")
        if f.timbre == "envelope"
        else (f.n_mfcc, "n_mfcc")
    )
    if f.reduction != "none" and f.reduction_dims > width:
        fail(
            (("features", "reduction_dims"), ("features", width_key)),
            f"features.reduction_dims = {f.reduction_dims} must be <= features.{width_key} = {width}",
        )
    if cfg.train.weights == "best" and cfg.data.val_fraction == 0:
        fail(
            (("train", "weights"), ("data", "val_fraction")),
            'train.weights = "best" needs validation blocks (data.val_fraction > 0)',
        )
    if cfg.data.val_fraction + cfg.data.test_fraction >= 0.9:
        fail(
            (("data", "val_fraction"), ("data", "test_fraction")),
            f"data.val_fraction + test_fraction = "
            f"{cfg.data.val_fraction + cfg.data.test_fraction:g} leaves too little to train on",
        )
    mel_top = f.mel_fmax or a.sample_rate / 2
    if not f.mel_fmin < mel_top <= a.sample_rate / 2:
        fail(
            (("features", "mel_fmin"), ("features", "mel_fmax")),
            f"features.mel_fmin = {f.mel_fmin}, mel_fmax = {f.mel_fmax}: need "
            f"0 <= mel_fmin < mel_fmax <= sample_rate / 2 (0 means sample_rate / 2)",
        )
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
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `--set runtime.devices=2` reads 2 as a TOML integer
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
#: A config layer: where it came from (a file, ``--set``, a bundle ...) and its values.
Layer = tuple[str, dict[str, Any]]


def resolve(layers: list[Layer] | tuple[Layer, ...]) -> Config:
    """The one way a config is built: defaults, then each layer in order, then the checks.

    Each layer is ``(source, {section: {key: value}})``; later layers override earlier ones
    key by key. Unknown sections or keys, wrong types and out-of-range values raise a
    :class:`ConfigError` that names the layer the offending value came from.
    """
    values: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], str] = {}
    for source, data in layers:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of sections, got {type(data).__name__}")
        for sec_name, section in data.items():
            if sec_name not in _HINTS:
                raise ConfigError(
                    f"{source}: unknown section [{sec_name}]; sections are {', '.join(_HINTS)}"
                )
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: [{sec_name}] must be a table of keys")
            hints = typing.get_type_hints(_HINTS[sec_name])
            for key, value in section.items():
                if key not in hints:
                    moved = MOVED_KEYS.get((sec_name, key))
                    close = [k for k in hints if k.startswith(key[:3])]
                    hint = (
                        f" (it moved to {moved[0]}.{moved[1]})"
                        if moved
                        else f" (did you mean {', '.join(close)}?)"
                        if close
                        else ""
                    )
                    raise ConfigError(f"{source}: unknown key {sec_name}.{key}{hint}")
                values.setdefault(sec_name, {})[key] = _coerce(
                    f"{source}: {sec_name}.{key}", value, hints[key]
                )
                origin[(sec_name, key)] = source
    cfg = Config(**{sec: _HINTS[sec](**kw) for sec, kw in values.items()})
    return _check(cfg, origin)


def from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Build a checked :class:`Config` from nested ``{section: {key: value}}`` data."""
    return resolve([(source, data)])


#: Keys that moved between sections (wms 0.1.0 -> 0.2): old place -> new place.
MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("train", k): ("runtime", k)
    for k in ("accelerator", "devices", "num_nodes", "max_minutes", "checkpoint_minutes")
}


#: What a config a run stored (a bundle's, a checkpoint's) means by a key it lacks, where
#: that is not today's default: the value the run had, from before the key existed or before
#: wms 0.3.0 made full band the default. Every run stores its whole config, so a key is
#: missing only when it is newer than the run (a test holds this table to the keys a
#: version-1 bundle lacks).
STORED_DEFAULTS: dict[tuple[str, str], Any] = {
    # the analysis before 0.3.0 (every stored config has these; kept here to say so)
    ("audio", "sample_rate"): 16000,
    ("pitch", "fmin"): 46.0,
    ("pitch", "fmax"): 1600.0,
    ("features", "hop_size"): 256,
    ("features", "window_size"): 1024,
    ("features", "n_fft"): 1024,
    ("features", "n_bins"): 80,
    ("features", "mel_fmax"): 0.0,
    # added after 0.1.0: harmonics only, cosine tables, and a noise part stored without
    # harmonic_noise kept the noise's share in its harmonic targets
    ("features", "noise_bands"): 0,
    ("features", "harmonic_noise"): "kept",
    ("synth", "phases"): "zero",
    ("synth", "noise_stages"): 2,  # added in 0.3.0
}

#: Defaults that a version changed (keys every stored config has), and what they were
#: before it: ``wms info`` compares a stored config with the defaults of the version that
#: wrote it (``wms.bundle.settings_origin``).
CHANGED_DEFAULTS: dict[tuple[int, int, int], dict[tuple[str, str], Any]] = {
    (0, 4, 0): {("features", "reduction"): "none", ("features", "reduction_dims"): 3},
}


def stored_config(data: Any) -> Any:
    """A config a run stored (in a bundle or a checkpoint) with each key it lacks set as that
    run had it (:data:`STORED_DEFAULTS`), not to today's default. Anything but a nested dict
    is returned as it is (the checks that follow name what is wrong with it)."""
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        return data
    out = {sec: dict(kv) for sec, kv in data.items()}
    for (sec, key), value in STORED_DEFAULTS.items():
        out.setdefault(sec, {}).setdefault(key, value)
    return out


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A config written by wms 0.1.0 (in a version-1 bundle) in today's layout.

    Only :data:`MOVED_KEYS` changed: the runtime keys left ``[train]`` for ``[runtime]``.
    """
    out = {sec: dict(v) for sec, v in data.items() if isinstance(v, dict)}
    for (sec, key), (new_sec, new_key) in MOVED_KEYS.items():
        if key in out.get(sec, {}):
            out.setdefault(new_sec, {})[new_key] = out[sec].pop(key)
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


#: Where the shipped presets live: one TOML file per preset, a layer over the defaults.
PRESET_DIR = Path(__file__).parent / "presets"


def _read_presets() -> dict[str, dict[str, dict[str, Any]]]:
    files = sorted(PRESET_DIR.glob("*.toml"), key=lambda p: (p.stem != "default", p.stem))
    return {p.stem: tomllib.loads(p.read_text(encoding="utf-8")) for p in files}


#: Named starting points for a new run (``wms train --preset NAME``): ``default`` first.
PRESETS: dict[str, dict[str, dict[str, Any]]] = _read_presets()


#: The sections that fix how audio is analysed and played (not how a model is trained).
ANALYSIS_SECTIONS = ("audio", "pitch", "features", "synth")


def preset_sections(name: str, sections: tuple[str, ...] = ANALYSIS_SECTIONS) -> dict:
    """What preset ``name`` sets in ``sections`` (``Config.replace`` keywords), e.g. the
    reference's analysis and tables without its training. Raises ConfigError for an unknown
    name."""
    preset_layer(name)  # the check and its message
    return {sec: dict(PRESETS[name].get(sec, {})) for sec in sections}


def preset_layer(name: str) -> Layer:
    """``("--preset NAME", overrides)`` from ``presets/NAME.toml``. Raises ConfigError for
    an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not one of {', '.join(PRESETS)}")
    return (f"--preset {name} ({PRESET_DIR / name}.toml)", PRESETS[name])


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    base: Layer | None = None,
    extra: list[Layer] | tuple[Layer, ...] = (),
    only: tuple[str, ...] | None = None,
    preset: str | None = None,
) -> Config:
    """Defaults, then ``preset`` (:data:`PRESETS`; ``reference`` for a reference
    ``params.json`` with neither preset nor base), then ``base`` (e.g. a checkpoint's or a
    bundle's config), then ``path`` (TOML, or a reference ``params.json``), then ``--set``
    overrides, then ``extra`` layers (CLI flags such as ``--max-minutes``); see :func:`resolve`.

    ``only``: the sections the file, ``--set`` and ``extra`` may change (``wms render`` allows
    ``synth`` only); anything else raises ConfigError.
    """
    if preset is None and base is None and path is not None and _is_json(path):
        preset = "reference"  # a reference params.json: what it leaves out is the reference's
    layers: list[Layer] = [preset_layer(preset)] if preset is not None else []
    if base is not None:
        layers.append(base)
    if path is not None:
        layers.append((str(path), read_config_file(path)))
    if overrides:
        layers.append(("--set", parse_overrides(overrides)))
    layers += list(extra)
    if only is not None:
        for source, data in layers[(base is not None) + (preset is not None) :]:
            other = sorted(s for s in data if s not in only)
            if other:
                raise ConfigError(
                    f"{source}: only {', '.join(s + '.*' for s in only)} settings can change "
                    f"here, not [{', '.join(other)}]"
                )
    return resolve(layers)


def _is_json(path: str | Path) -> bool:
    """A config file read as a reference ``params.json`` (any other is TOML)."""
    return Path(path).suffix.lower() == ".json"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested overrides a TOML or reference-JSON file holds (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if _is_json(path):
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
