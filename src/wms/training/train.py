"""``wms train``: prepare (or reuse the cache), split, fit the input map, train, write the bundle.

Read top to bottom:

1. :func:`build_training_data` — the held-out split (``wms.training.data.split_frames``),
   the :class:`~wms.analysis.inputmap.InputMap` fitted on *training* frames only, and the
   contiguous input/target arrays with their sequence starts.
2. :class:`WMSModule` — the LightningModule: WMSNet + the configured loss,
   optimizer and LR schedule, and a per-epoch history kept in every checkpoint.
3. :func:`fit` — the Lightning Trainer: a step budget (:func:`step_budget`), gradient
   clipping, optional early stopping and wall-clock cap, checkpoints every
   ``runtime.checkpoint_minutes`` and at the end, TensorBoard + CSV logs, one progress
   display, DDP across devices and nodes.
4. :func:`finish` (rank 0 only) — held-out metrics against the baselines, the
   training map, the bundle ``model.wms`` and the loss-curve PNG.

A resumed run rebuilds the model, the input map and the config from the
checkpoint (nanoGPT style), not from today's defaults.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import time
import warnings
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from wms.config import Config, from_dict, load_config
from wms.errors import BundleError, ConfigError, DataError, OutputError, TrainingError
from wms.evaluation.metrics import relative_floor
from wms.interface import ModelInterface
from wms.io import refuse_to_replace_inputs, write_text, zip_damage
from wms.training.data import (
    FileSplit,
    SequenceData,
    block_frames_for,
    build_arrays,
    global_rows,
    range_mask,
    sequence_loader,
    split_frames,
)
from wms.training.losses import WMSLoss
from wms.training.model import WMSNet, count_parameters
from wms.training.rundir import RUN_FILES, open_run_dir, remove_arrays

#: Training frames kept in the bundle's training map.
TRAINING_MAP_FRAMES = 5000
#: Config sections a resumed run must share with its checkpoint (they fix the data and model).
_FIXED_ON_RESUME = ("audio", "pitch", "features", "data", "model")
#: Lightning's own messages, under RUN/logs (kept out of the terminal).
LIGHTNING_LOG = "lightning.log"
#: How the frames of a file are used (wms.training.data.FileSplit).
_PARTS = ("train", "val", "test", "excluded")
#: The automatic step budget (``train.max_steps = 0``): passes over the training sequences,
#: at least / at most this many steps. Measured on real instruments (benchmarks/
#: bench_train.py): every one beats both baselines by 28 passes and still gains up to ~100;
#: 80 passes of 60 s of audio are about 3000 steps, a minute on 2 idle cores.
AUTO_EPOCHS, AUTO_MIN_STEPS, AUTO_MAX_STEPS = 80, 2000, 8000


# --------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """Everything the trainer and the bundle need from the corpus.

    ``files``: per file ``{"path", "key", "n_frames"}``; ``splits``: the held-out
    split; ``arrays``: concatenated inputs/targets and sequence starts;
    ``input_map`` and ``interface``: fitted on training frames.
    """

    files: list[dict[str, Any]]
    splits: list[FileSplit]
    arrays: SequenceData
    input_map: Any
    interface: ModelInterface
    summary: dict[str, Any]
    energy_floor: float = 0.0


def build_training_data(
    corpus, cfg: Config, *, saved: dict | None = None, out_dir: str | Path | None = None
) -> TrainingData:
    """Split the corpus, fit the input map and the interface on training frames, build arrays.

    Args:
        corpus: a :class:`wms.analysis.prepare.Corpus` (anything with ``.files`` of
            ``PreparedFile(path, key, analysis)``).
        cfg: the run's config (``data``, ``features``, ``pitch`` sections).
        saved: a checkpoint's ``{"input_map", "interface"}`` states, used instead of
            fitting (resume).
        out_dir: where large arrays are memory-mapped.

    Raises:
        DataError: no training sequence or nothing held out (see ``split_frames``).
    """
    from wms.analysis.features import timbre_features
    from wms.analysis.inputmap import InputMap, fit_input_map

    d = cfg.data
    analyses = [f.analysis for f in corpus.files]
    lengths = [len(a.f0) for a in analyses]
    block = block_frames_for(d, sample_rate=cfg.audio.sample_rate, hop_size=cfg.features.hop_size)
    splits = split_frames(
        lengths,
        seq_len=d.seq_len,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        block_frames=block,
        gap_frames=d.gap_frames,
        seed=d.seed,
        excluded=[getattr(f, "excluded", ()) for f in corpus.files],
    )
    # Fitted on training-range frames only: held-out statistics must not leak in.
    masks = [range_mask(s.n_frames, s.train) for s in splits]

    timbre = [timbre_features(a, cfg) for a in analyses]

    targets = [a.model_target() for a in analyses]  # spectrum bins, then the noise part

    def train_rows(name: str) -> np.ndarray:
        if name in ("timbre", "model_target"):
            arrays = timbre if name == "timbre" else targets
        else:
            arrays = [np.asarray(getattr(a, name)) for a in analyses]
        return np.concatenate([x[m] for x, m in zip(arrays, masks, strict=True)])

    if saved is not None:
        imap = InputMap.from_state(saved["input_map"])
        interface = ModelInterface.from_state(saved["interface"], where="checkpoint")
    else:
        imap = fit_input_map(train_rows("timbre"), cfg)
        interface = ModelInterface.fit_config(
            cfg,
            imap.controls(train_rows("timbre"), dtype=np.float64),
            train_rows("f0"),
            train_rows("voicedness"),
            control_names=imap.control_names,
            targets=train_rows("model_target"),
        )
    inputs = [
        interface.inputs(imap.controls(t), a.f0, a.voicedness)
        for a, t in zip(analyses, timbre, strict=True)
    ]
    # The loss leaves out frames this far under the corpus's loud frames (docs/DESIGN.md §6.1).
    energy_floor = relative_floor(train_rows("target"), d.silence_db)
    rates = [file_rate(f, cfg) for f in corpus.files]
    arrays = build_arrays(
        inputs,
        targets,
        splits,
        seq_len=d.seq_len,
        out_dir=out_dir,
        per_file_bands=low_rate_bands(analyses, rates, cfg),
        per_file_noise_bands=low_rate_noise_bands(rates, cfg),
        n_noise=cfg.features.noise_bands,
    )
    if d.val_fraction > 0 and len(arrays.val_starts) == 0:
        raise DataError(
            f"{len(lengths)} file(s): the held-out frames hold no whole sequence of "
            f"{d.seq_len} frames; use more audio, a longer data.val_block_seconds or a shorter data.seq_len"
        )
    files = [
        {"path": str(Path(f.path).resolve()), "key": f.key, "n_frames": n, "sample_rate": r}
        for f, n, r in zip(corpus.files, lengths, rates, strict=True)
    ]
    count = {k: sum(b - a for s in splits for a, b in getattr(s, k)) for k in _PARTS}
    summary = {
        "files": len(files),
        "frames": int(sum(lengths)),
        **{f"{k}_frames": int(v) for k, v in count.items()},
        "gap_frames": int(sum(lengths) - sum(count.values())),
        "train_sequences": int(len(arrays.train_starts)),
        "val_sequences": int(len(arrays.val_starts)),
        "test_sequences": int(len(arrays.test_starts)),
        "inputs": int(arrays.inputs.shape[1]),
        "bins": int(arrays.targets.shape[1]),
    }
    n_noise = cfg.features.noise_bands
    if arrays.bands is not None:
        k = summary["bins"] - n_noise
        summary["masked_bins"] = round(1.0 - float(arrays.bands.mean()) / k, 4)
    if arrays.noise_bands is not None:
        masked = 1.0 - float(arrays.noise_bands.mean()) / n_noise
        summary["masked_noise_bands"] = round(masked, 4)
    return TrainingData(files, splits, arrays, imap, interface, summary, energy_floor)


def file_rate(f, cfg: Config) -> int:
    """The rate a corpus file was recorded at, capped at the analysis rate (unknown: the
    analysis rate)."""
    sr = cfg.audio.sample_rate
    r = int(getattr(f, "file_rate", 0) or sr)
    return min(r, sr)


def low_rate_bands(analyses, rates: list[int], cfg: Config) -> list[np.ndarray | None]:
    """Per file, the bins each frame's loss and metrics use (docs/DESIGN.md §6.3), or
    ``None`` for all of them.

    A file recorded below the corpus's highest rate holds nothing above
    :data:`wms.analysis.features.LOW_RATE_PASSBAND` of its own Nyquist frequency: those
    bins are masked rather than learnt as silence, so the files that do hold them teach the
    model. Bins above every file's band are silent in all of them, and learnt as silence.
    """
    from wms.analysis.features import recorded_bins

    top = max(rates) if rates else 0
    return [
        recorded_bins(a.f0, a.voicedness, cfg, file_rate=r) if r < top else None
        for a, r in zip(analyses, rates, strict=True)
    ]


def low_rate_noise_bands(rates: list[int], cfg: Config) -> list[int | None]:
    """Per file, how many of the noise part's bands its loss and figures use, or ``None``
    for all of them: as :func:`low_rate_bands`, the bands a file recorded below the corpus's
    highest rate holds whole (:func:`wms.analysis.features.file_noise_bands`)."""
    from wms.analysis.features import file_noise_bands
    from wms.noise import band_edges

    n = cfg.features.noise_bands
    if not n:
        return [None] * len(rates)
    return file_noise_bands(rates, band_edges(cfg.audio.sample_rate, n))


# --------------------------------------------------------------------------- module


class WMSModule(L.LightningModule):
    """WMSNet trained with the configured loss, optimizer and schedule.

    The constructor's arguments are saved in every checkpoint (``hparams``), so
    a checkpoint alone rebuilds the architecture. ``history`` holds one dict per
    validation (``epoch, step, train_loss, val_loss, lr, seconds``) and ``best``
    the weights at the lowest validation loss; both travel in checkpoints.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        config: dict,
        input_map: dict,
        interface: dict,
        file_keys: list,
        energy_floor: float = 0.0,
        total_steps: int = 0,
        preset: str = "default",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = from_dict(config)
        self.model = WMSNet.from_config(n_inputs, n_outputs, self.cfg.model)
        f = self.cfg.features
        self.loss_fn = WMSLoss(
            self.cfg.train.loss,
            n_bins=n_outputs - f.noise_bands,
            cycles=f.bins_per_harmonic,
            smoothness_weight=self.cfg.train.smoothness_weight,
            energy_floor=energy_floor,
            n_noise=f.noise_bands,
        )
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"val_loss", "epoch", "state_dict"}
        self._seconds_before = 0.0  # training seconds of earlier (resumed) runs
        self._fit_start = time.perf_counter()
        self._train_losses: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]

    def _lr(self) -> float:
        return float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch, batch_idx):
        x, y, *bands = batch
        loss = self.loss_fn(self.model(x)[0], y, *bands)
        if not torch.isfinite(loss):
            raise Diverged(int(self.global_step), float(loss.detach()), self._lr())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        self.log("lr", self._lr(), prog_bar=True, batch_size=len(x))
        self._train_losses.append(loss.detach())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, *bands = batch
        loss = self.loss_fn(self.model(x)[0], y, *bands)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=len(x))

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()
        self._seconds_before = self.history[-1]["seconds"] if self.history else 0.0

    def _record(self, val_loss: float | None) -> None:
        train = (
            torch.stack(self._train_losses).mean() if self._train_losses else torch.tensor(math.nan)
        )
        train = float(self.trainer.strategy.reduce(train, reduce_op="mean"))
        self._train_losses.clear()
        self.history.append(
            {
                "epoch": int(self.current_epoch),
                "step": int(self.global_step),
                "train_loss": train,
                "val_loss": val_loss,
                "lr": self._lr(),
                "seconds": self._seconds_before + time.perf_counter() - self._fit_start,
            }
        )

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val = float(self.trainer.callback_metrics["val_loss"])
        self._record(val)
        if self.best is None or val < self.best["val_loss"]:
            self.best = {
                "val_loss": val,
                "epoch": int(self.current_epoch),
                "state_dict": {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                },
            }

    def on_train_epoch_end(self) -> None:
        if self.cfg.data.val_fraction == 0:  # no validation: record the epoch here
            self._record(None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wms"] = {"history": self.history, "best": self.best}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint["wms"]["history"])
        self.best = checkpoint["wms"]["best"]

    def configure_optimizers(self):
        t = self.cfg.train
        params = self.model.parameters()
        if t.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return opt
        if t.scheduler in ("cosine", "onecycle"):
            # Sized to the step budget (or max_epochs when that ends the run first), so the
            # schedule ends where training does whatever the machine's speed.
            total = max(1, int(self.trainer.estimated_stepping_batches))
            if self.hparams.total_steps > 0:
                total = min(total, int(self.hparams.total_steps))
            if t.scheduler == "onecycle":
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=total)
            else:
                sched = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda step: cosine_factor(step, total, t.warmup_fraction)
                )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=t.plateau_factor, patience=t.plateau_patience
        )
        monitor = "val_loss" if self.cfg.data.val_fraction > 0 else "train_loss_epoch"
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"},
        }


def cosine_factor(step: int, total: int, warmup_fraction: float) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up from ``1/w`` to 1
    over the first ``w = round(warmup_fraction * total)`` steps, then half a cosine down
    to 0 at ``total`` (and 0 beyond it)."""
    w = round(warmup_fraction * total)
    if step < w:
        return (step + 1) / w
    if step >= total:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / max(1, total - w)))


class Diverged(Exception):
    """Internal: a non-finite training loss (turned into a TrainingError by :func:`fit`)."""

    def __init__(self, step: int, loss: float, lr: float):
        super().__init__(f"loss {loss} at step {step}")
        self.step, self.loss, self.lr = step, loss, lr


class _Batches(L.LightningDataModule):
    """Builds the loaders once the trainer knows this process's rank and the world size."""

    def __init__(self, arrays: SequenceData, cfg: Config):
        super().__init__()
        self.arrays, self.cfg = arrays, cfg

    def _loader(self, starts: np.ndarray, shuffle: bool):
        return sequence_loader(
            self.arrays,
            starts,
            batch_size=self.cfg.data.batch_size,
            shuffle=shuffle,
            seed=self.cfg.data.seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )

    def train_dataloader(self):
        return self._loader(self.arrays.train_starts, shuffle=True)

    def val_dataloader(self):
        if len(self.arrays.val_starts) == 0:
            return []
        return self._loader(self.arrays.val_starts, shuffle=False)


# --------------------------------------------------------------------------- trainer


def _devices(value: str) -> int | str:
    """``"auto"``, ``"2"``, ``"-1"`` or ``"0,1"`` (Lightning's syntax)."""
    v = str(value).strip()
    if v.lstrip("-").isdigit():
        return int(v)
    return v


def check_hardware(cfg: Config) -> None:
    """Refuse, before any analysis, an accelerator this machine lacks or devices Lightning
    would reject (``runtime.accelerator``, ``runtime.devices``, ``--devices``)."""
    r = cfg.runtime
    acc, devices = r.accelerator, _devices(r.devices)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if acc in ("gpu", "cuda") and not gpus:
        raise ConfigError(
            f"runtime.accelerator = {acc!r}, but this machine has no CUDA GPU that torch can "
            "use; use auto (the default) or cpu"
        )
    if acc == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("runtime.accelerator = 'mps', but this machine has no Apple GPU")
    if devices == 0 or (isinstance(devices, int) and devices < -1):
        raise ConfigError(
            f"--devices / runtime.devices = {devices}: give a count of at least 1, -1 for "
            "all, auto, or device indices such as 0,1"
        )
    on_gpu = acc in ("gpu", "cuda") or (acc == "auto" and gpus > 0)
    if isinstance(devices, str) and devices != "auto":
        ids = [int(i) for i in devices.split(",") if i.strip()]
        if not on_gpu:
            raise ConfigError(
                f"--devices / runtime.devices = {devices!r} selects GPUs by index, but training "
                "runs on the CPU; give a count of processes instead (e.g. 2)"
            )
        if max(ids, default=0) >= gpus:
            raise ConfigError(
                f"--devices / runtime.devices = {devices!r}: this machine has {gpus} GPU(s), "
                f"indices 0..{gpus - 1}"
            )
    elif on_gpu and isinstance(devices, int) and devices > gpus:
        raise ConfigError(f"--devices {devices}: this machine has {gpus} GPU(s)")


class StepProgress(L.Callback):
    """One display over the whole step budget (rank 0): steps done, the training loss,
    the last validation loss and the time left (``wms.progress``: a bar on a terminal,
    plain lines in a log file)."""

    def __init__(self, total: int):
        self.total, self.bar, self.val = total, None, None

    def on_train_start(self, trainer, module) -> None:
        from wms.progress import progress_bar

        if trainer.is_global_zero:
            self.bar = progress_bar(
                total=self.total, desc="training", unit="steps", initial=trainer.global_step
            )

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            val = f", val {self.val:.3f}" if self.val is not None else ""
            self.bar.set_postfix_str(f"loss {loss:.3f}{val}", refresh=False)
            self.bar.update(1)

    def on_validation_end(self, trainer, module) -> None:
        v = trainer.callback_metrics.get("val_loss")
        self.val = float(v) if v is not None else self.val

    def on_train_end(self, trainer, module) -> None:
        self._close()

    def on_exception(self, trainer, module, exception) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def quiet_lightning(log_file: Path | None = None):
    """Send Lightning's chatter (accelerator lines, tips, notes on how it estimates steps,
    checkpoint restores) to ``log_file`` instead of the terminal, and keep two warnings
    that are not the user's to act on out of the output; all restored afterwards."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    saved = [(lg, list(lg.handlers)) for lg in loggers]
    handler = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        lg.addHandler(handler if handler is not None else logging.NullHandler())
    try:
        with warnings.catch_warnings():
            # Lightning 2.6 calls a torch API torch 2.13 deprecated.
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            # --resume and --force manage the run folder's checkpoints themselves.
            warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
            # data.val_fraction = 0: WMS gives Lightning no validation loader on purpose.
            warnings.filterwarnings("ignore", r"Total length of `list` across ranks is zero")
            yield
    finally:
        for lg, handlers in saved:
            for h in list(lg.handlers):
                lg.removeHandler(h)
            for h in handlers:
                lg.addHandler(h)
        if handler is not None:
            handler.close()


class StepBudget(L.Callback):
    """Stop once ``trainer.global_step`` reaches ``max_steps`` (the same on every rank)."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True


def make_trainer(
    cfg: Config,
    out_dir: Path,
    *,
    n_train_batches: int,
    progress: bool = True,
    max_steps: int = -1,
    callbacks: tuple = (),
) -> L.Trainer:
    """The Lightning Trainer for ``cfg.train`` writing logs and checkpoints under ``out_dir``.

    ``max_steps`` (-1: none) is the step budget, enforced by :class:`StepBudget` rather
    than Lightning's ``max_steps`` (which makes a resumed run skip an epoch: Lightning 2.6
    treats every step-limited run as restarting mid-epoch); ``callbacks`` are added to
    WMS's own (checkpoints, early stopping).
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    t, r = cfg.train, cfg.runtime
    devices = _devices(r.devices)
    multi = (
        r.num_nodes > 1
        or (isinstance(devices, int) and devices > 1)
        or (isinstance(devices, str) and "," in devices)
    )
    callbacks = [
        *callbacks,
        *([StepBudget(max_steps)] if max_steps >= 0 else []),
        *([StepProgress(max_steps)] if progress and max_steps >= 0 else []),
        ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            filename="last",
            enable_version_counter=False,
            train_time_interval=timedelta(minutes=r.checkpoint_minutes),
            save_top_k=1,
        ),
    ]
    # One version per (resumed) run: logs/{tensorboard,csv}/version_N.
    version = f"version_{len(list((out_dir / 'logs' / 'csv').glob('version_*')))}"
    if cfg.data.val_fraction > 0 and t.early_stopping_patience > 0:
        # checked when validation ends, the only time val_loss is fresh (also on resume)
        callbacks.append(
            EarlyStopping(
                "val_loss",
                patience=t.early_stopping_patience,
                mode="min",
                check_on_train_epoch_end=False,
            )
        )
    return L.Trainer(
        accelerator=r.accelerator,
        devices=devices,
        num_nodes=r.num_nodes,
        strategy="ddp" if multi else "auto",
        max_epochs=t.max_epochs,
        max_time=timedelta(minutes=r.max_minutes) if r.max_minutes > 0 else None,
        gradient_clip_val=t.gradient_clip if t.gradient_clip > 0 else None,
        val_check_interval=t.val_check_interval,
        callbacks=callbacks,
        logger=[
            TensorBoardLogger(
                out_dir / "logs", name="tensorboard", version=version, default_hp_metric=False
            ),
            CSVLogger(out_dir / "logs", name="csv", version=version),
        ],
        default_root_dir=out_dir,
        log_every_n_steps=max(1, min(50, n_train_batches)),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # SequenceSampler shards by rank itself
        enable_progress_bar=False,  # StepProgress instead: one display for the whole run
        enable_model_summary=False,
    )


def read_checkpoint(path: str | Path) -> dict:
    """The WMS part of a Lightning checkpoint: ``{"config", "input_map", "interface",
    "file_keys", ...}``.

    Raises:
        BundleError: missing file, not a checkpoint, not written by ``wms train``, or
            written by wms 0.1.0 (which this version cannot resume).
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such checkpoint (use RUN_DIR/checkpoints/last.ckpt)")
    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            raise BundleError(f"{path}: not a checkpoint (not a torch zip file)")
    damage = zip_damage(path, "checkpoint")
    if damage is not None:
        raise BundleError(
            f"{path}: {damage}; resume from another checkpoint, or start again with --force"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise BundleError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "config" not in hp or "wms" not in ckpt:
        raise BundleError(f"{path}: not a `wms train` checkpoint (no WMS hyper-parameters)")
    if "interface" not in hp:
        raise BundleError(
            f"{path}: a checkpoint of wms 0.1.0, which this version cannot resume; its "
            "finished bundle (model.wms) still loads, or start a new run"
        )
    state = ckpt.get("state_dict", {})
    for name, t in state.items() if isinstance(state, dict) else ():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise BundleError(
                f"{path}: corrupt checkpoint: the weights {name} hold NaN or infinite values; "
                "resume from another checkpoint, or start again with --force"
            )
    return hp


def describe_controls(imap) -> str:
    """One line: the timbre controls training fitted (``wms info`` says what each does)."""
    names = imap.control_names
    span = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
    source = {"mfcc": "MFCC", "envelope": "harmonic levels"}[imap.source]
    if imap.reduction == "pca":
        share = 100 * float(np.sum(imap.explained_variance_ratio))
        what = (
            f"{len(names)} principal components of the standardised {source} "
            f"({share:.1f} % of their variance)"
        )
    elif imap.reduction == "pacmap":
        what = f"{len(names)} axes of a PaCMAP map of the {source}"
    else:
        what = f"the {len(names)} standardised {source}"
    return f"controls: {span}, {what}; wms info RUN/model.wms says what each does"


def resume_config(ckpt_path: str | Path, config_file: str | None, overrides: list[str]) -> Config:
    """The run's config from its checkpoint, with this command's file/``--set`` overrides.

    Raises:
        ConfigError: an override changes a section that fixes the data or the model.
    """
    from wms.config import stored_config

    saved = stored_config(read_checkpoint(ckpt_path)["config"])
    cfg = load_config(config_file, overrides, base=(str(ckpt_path), saved))
    new = cfg.to_dict()
    changed = [f"{s}.{k}" for s in _FIXED_ON_RESUME for k in new[s] if new[s][k] != saved[s][k]]
    if changed:
        raise ConfigError(
            f"--resume {ckpt_path}: cannot change {', '.join(changed)} of a run in progress "
            f"(they fix its data and model); start a new run instead"
        )
    return cfg


def training_threads(cfg: Config) -> int:
    """``runtime.threads``, or when 0: 1 for models up to 128 wide (two threads' barriers
    cost more than they share on such small matrices, 3-8x more when the cores are
    shared), else torch's own choice."""
    if cfg.runtime.threads > 0:
        return cfg.runtime.threads
    if max(cfg.model.hidden_size, cfg.model.encoder_size) <= 128:
        return 1
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(
    data: TrainingData,
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    max_steps: int = -1,
    callbacks: tuple = (),
    preset: str = "default",
) -> tuple[WMSModule, L.Trainer]:
    """Train on ``data``; returns the module (weights = last step) and the trainer.
    ``preset`` is recorded (the preset the settings started from).

    ``module.best`` holds the weights of the lowest validation loss.
    """
    out_dir = Path(out_dir)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    a = data.arrays
    n_batches = math.ceil(len(a.train_starts) / cfg.data.batch_size)
    if max_steps < 0:
        max_steps = step_budget(cfg, len(a.train_starts))
    module = WMSModule(
        a.inputs.shape[1],
        a.targets.shape[1],
        cfg.to_dict(),
        data.input_map.to_state(),
        data.interface.to_state(),
        [f["key"] for f in data.files],
        data.energy_floor,
        max_steps,
        preset,
    )
    try:
        with (
            torch_threads(training_threads(cfg)),
            quiet_lightning(out_dir / "logs" / LIGHTNING_LOG),
        ):
            trainer = make_trainer(
                cfg,
                out_dir,
                n_train_batches=n_batches,
                progress=progress,
                max_steps=max_steps,
                callbacks=callbacks,
            )
            trainer.fit(
                module,
                datamodule=_Batches(a, cfg),
                ckpt_path=str(resume) if resume else None,
                weights_only=True,
            )
    except Diverged as e:
        # No final checkpoint: the last one on disk holds weights from before the failure.
        kept = out_dir / "checkpoints" / "last.ckpt"
        raise TrainingError(
            f"training diverged: the loss became {e.loss} at step {e.step} (learning rate "
            f"{e.lr:g} of train.lr = {cfg.train.lr:g}). Usually the learning rate is too high "
            f"for this data (try --set train.lr={cfg.train.lr / 4:g}); otherwise check the "
            "audio for clipping or corruption. No bundle was written"
            + (f"; the last good checkpoint is {kept}" if kept.is_file() else "")
        ) from None
    # The final checkpoint (all ranks call it; rank 0 writes), so --resume can extend any run.
    trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return module, trainer


# --------------------------------------------------------------------------- finish


def step_budget(cfg: Config, n_train_sequences: int) -> int:
    """The training's step budget: ``train.max_steps``, or when 0, :data:`AUTO_EPOCHS`
    passes over the training sequences, kept within [AUTO_MIN_STEPS, AUTO_MAX_STEPS]; early
    stopping may end it sooner. A budget in steps gives the same model on any machine."""
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps
    per_epoch = math.ceil(n_train_sequences / cfg.data.batch_size)
    return int(min(AUTO_MAX_STEPS, max(AUTO_MIN_STEPS, AUTO_EPOCHS * per_epoch)))


def predict_ranges(model: WMSNet, inputs: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Run ``model`` over each ``inputs[a:b]`` from a zero state; concatenated ``[sum, K]``."""
    model.eval()
    outs = []
    with torch.no_grad():
        for a, b in ranges:
            outs.append(
                model(torch.from_numpy(np.ascontiguousarray(inputs[a:b]))[None])[0][0].numpy()
            )
    return np.concatenate(outs) if outs else np.zeros((0, model.n_outputs), np.float32)


def heldout_metrics(model: WMSNet, data: TrainingData) -> dict[str, Any]:
    """The model and both baselines on the **test** blocks (``wms.evaluation.metrics``):
    SC and LSD over all bins and the harmonic bins, the energy ratio, the verdict and flags.

    Each block is predicted as one sequence from a zero state; the baselines look at every
    training frame. Without test blocks (``data.test_fraction = 0``) the validation blocks
    are used and ``split`` says so; empty when nothing is held out.
    """
    from wms.evaluation.metrics import baseline_predictions, heldout_report

    split = "test" if any(sp.test for sp in data.splits) else "validation"
    part = "test" if split == "test" else "val"
    a = data.arrays
    held = [getattr(sp, part) for sp in data.splits]
    ranges = [(a.offsets[i] + s, a.offsets[i] + e) for i, rs in enumerate(held) for s, e in rs]
    if not ranges:
        return {}
    rows = global_rows(a.offsets, held)
    train_rows = global_rows(a.offsets, [sp.train for sp in data.splits])
    preds = {
        "model": predict_ranges(model, a.inputs, ranges),
        **baseline_predictions(
            a.inputs[train_rows],
            a.targets[train_rows],
            a.inputs[rows],
            energy_floor=data.energy_floor,
            train_bands=None if a.bands is None else a.bands[train_rows],
            n_noise=data.interface.n_noise,
            train_noise_bands=None if a.noise_bands is None else a.noise_bands[train_rows],
        ),
    }
    return heldout_report(
        preds,
        a.targets[rows],
        harmonic_index=data.interface.outputs.harmonic_index,
        split=split,
        energy_floor=data.energy_floor,
        bands=None if a.bands is None else a.bands[rows],
        n_noise=data.interface.n_noise,
        noise_bands=None if a.noise_bands is None else a.noise_bands[rows],
    )


def training_map(
    data: TrainingData, corpus, *, seed: int, max_frames: int = TRAINING_MAP_FRAMES
) -> dict:
    """A seeded subsample of training frames: controls, f0, voicedness, inputs, targets,
    and each frame's ``(file index, frame)``. Targets are float16 (half the size; ample
    precision for nearest-neighbour baselines and plots)."""
    a = data.arrays
    rows = global_rows(a.offsets, [sp.train for sp in data.splits])
    if len(rows) > max_frames:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_frames, replace=False))
    file_idx = np.searchsorted(a.offsets, rows, side="right") - 1
    f0 = np.concatenate([np.asarray(f.analysis.f0) for f in corpus.files])
    voiced = np.concatenate([np.asarray(f.analysis.voicedness) for f in corpus.files])
    return {
        "controls": np.asarray(a.inputs[rows, : data.interface.n_timbre], np.float32),
        "f0": f0[rows].astype(np.float32),
        "voicedness": voiced[rows].astype(np.float32),
        "inputs": np.asarray(a.inputs[rows], np.float32),
        "targets": np.asarray(a.targets[rows], np.float16),
        "frames": np.stack([file_idx, rows - a.offsets[file_idx]], axis=1).astype(np.int64),
    }


def finish(
    module: WMSModule, data: TrainingData, corpus, cfg: Config, out_dir: Path
) -> tuple[Path, dict]:
    """Rank 0: best weights -> held-out metrics -> bundle + loss-curve PNG. Returns (bundle, metrics)."""
    from wms.bundle import save_bundle
    from wms.evaluation.figures import loss_curves, save_figure

    model = module.model.cpu()
    if cfg.train.weights == "best" and module.best is not None:
        model.load_state_dict(module.best["state_dict"])
    model.eval()
    metrics = heldout_metrics(model, data)
    if metrics:
        metrics["weights"] = (
            f"best validation loss (epoch {module.best['epoch']})"
            if cfg.train.weights == "best" and module.best is not None
            else f"final (step {module.global_step})"
        )
    data_map = {
        "files": [
            {**f, **{k: [list(r) for r in getattr(s, k)] for k in _PARTS}}
            for f, s in zip(data.files, data.splits, strict=True)
        ],
        # frames at or under this energy were left out of the loss and the figures
        "energy_floor": data.energy_floor,
        "preset": module.hparams.get("preset", "default"),
    }
    bundle = save_bundle(
        out_dir / "model.wms",
        model=model,
        config=cfg,
        interface=data.interface,
        input_map=data.input_map,
        training_map=training_map(data, corpus, seed=cfg.data.seed),
        data_map=data_map,
        history=module.history,
        metrics=metrics,
    )
    h = module.history
    if h:
        fig = loss_curves(
            [x["epoch"] + 1 for x in h],
            [x["train_loss"] for x in h],
            [x["val_loss"] for x in h],
            [x["lr"] for x in h],
            title=f"{out_dir.name}: {cfg.train.loss} loss",
        )
        save_figure(fig, out_dir / "loss_curves.png")
    return bundle, metrics


def check_run_inputs(out_dir: Path, audio_path, cfg: Config, cache_dir, inputs, resume) -> None:
    """Refuse a run whose outputs would replace an input or land in the feature cache.

    A resumed run overwrites its own ``checkpoints/last.ckpt``: that is what resuming means.
    """
    from wms.analysis.audio import find_audio_files
    from wms.analysis.cache import FeatureCache

    cache_root = FeatureCache(cache_dir).root.resolve()
    out = out_dir.resolve()
    if out == cache_root or cache_root in out.parents:
        raise OutputError(
            out_dir, f"--out lies inside the feature cache {cache_root}; choose another --out"
        )
    files = find_audio_files(audio_path, cfg.audio.extensions).files
    outputs = [out_dir / n for n in RUN_FILES]
    if resume is None:
        outputs.append(out_dir / "checkpoints" / "last.ckpt")
    refuse_to_replace_inputs(outputs, [*files, *inputs, resume])


def train(
    audio_path: str | Path,
    out_dir: str | Path,
    cfg: Config,
    *,
    cache_dir: str | Path | None = None,
    jobs: int | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    inputs: tuple[str | Path, ...] = (),
    preset: str | None = None,
) -> Path:
    """Prepare ``audio_path`` (or reuse the cache), train, and write ``out_dir/model.wms``.

    ``out_dir`` must not hold another run unless ``resume`` continues it or ``force``
    replaces what that run wrote (:mod:`wms.training.rundir`); nothing training writes may
    replace one of its inputs (the audio files, the checkpoint, ``inputs`` such as the config
    file) or sit inside the feature cache. Both are checked before any work.

    With ``resume`` (a checkpoint of this run), training continues where it
    stopped: epoch, step, optimizer, scheduler, early stopping, timer and history;
    the input map is the checkpoint's. The wall-clock cap (``runtime.max_minutes``)
    counts the earlier runs too: pass a larger ``--max-minutes`` to extend a run that
    stopped on its budget, or a larger ``train.max_epochs`` one that stopped on epochs. ``cfg`` should come from
    :func:`resume_config` then. Only global rank 0 writes the bundle, the
    config and the plot; every rank returns the bundle path.

    Raises:
        DataError, AudioError, ConfigError: bad audio, too little data, bad config.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from wms.analysis.prepare import format_summary, prepare
    from wms.evaluation.metrics import describe_heldout

    out_dir = Path(out_dir)
    rank0 = rank_zero_only.rank == 0
    check_hardware(cfg)
    if rank0:  # other DDP ranks start with rank 0's folder already prepared
        check_run_inputs(out_dir, audio_path, cfg, cache_dir, inputs, resume)
        open_run_dir(out_dir, resume=resume is not None, force=force)
    corpus = prepare(audio_path, cfg, cache_dir=cache_dir, jobs=jobs, progress=progress and rank0)
    saved = read_checkpoint(resume) if resume else None
    if saved is not None:  # a resumed run keeps the preset it started from
        preset = saved.get("preset", "default")
    preset = preset or "default"
    data = build_training_data(
        corpus,
        cfg,
        saved=saved,
        out_dir=out_dir / "arrays" / f"rank{rank_zero_only.rank}",  # no shared memmap
    )
    if saved and list(saved["file_keys"]) != [f["key"] for f in data.files]:
        raise DataError(
            f"--resume {resume}: the audio differs from the run's (file contents or list "
            f"changed); resume with the same AUDIO or start a new run"
        )
    if rank0:
        write_text(
            out_dir / "config.toml",
            f"# wms train --preset {preset}, then the config file and --set (this is the "
            f"result)\n{cfg.to_toml()}",
        )
        print(format_summary(corpus.summary))
        s = data.summary
        print(
            f"data: {s['files']} file(s), {s['frames']} frames: {s['train_frames']} train "
            f"({s['train_sequences']} sequences of {cfg.data.seq_len}), {s['val_frames']} "
            f"validation and {s['test_frames']} test in contiguous blocks, {s['gap_frames']} in "
            f"gaps" + (f", {s['excluded_frames']} trimmed" if s["excluded_frames"] else "")
        )
        probe = WMSNet.from_config(s["inputs"], s["bins"], cfg.model)
        budget = step_budget(cfg, s["train_sequences"])
        per_epoch = math.ceil(s["train_sequences"] / cfg.data.batch_size)
        t = cfg.train
        ends = [f"{budget} steps" + ("" if t.max_steps else f" ({budget / per_epoch:.0f} passes)")]
        if t.max_epochs * per_epoch < budget:
            ends.append(f"{t.max_epochs} epochs")
        if t.early_stopping_patience and cfg.data.val_fraction > 0:
            ends.append(f"{t.early_stopping_patience} epochs without a better validation loss")
        if cfg.runtime.max_minutes:
            ends.append(f"{cfg.runtime.max_minutes:g} minutes")
        print(
            f"model: {s['inputs']} inputs -> {s['bins']} outputs, "
            f"{count_parameters(probe):,} parameters, {cfg.model.hidden_size} wide; batch "
            f"{cfg.data.batch_size}, lr {t.lr:g} ({t.scheduler}); ends after " + " or ".join(ends)
        )
        print(describe_controls(data.input_map))
    module, trainer = fit(data, cfg, out_dir, resume=resume, progress=progress, preset=preset)
    bundle = out_dir / "model.wms"
    if trainer.is_global_zero:
        bundle, m = finish(module, data, corpus, cfg, out_dir)
        # Large corpora's memory-mapped training arrays: --resume rebuilds them from the cache.
        remove_arrays(out_dir, list(data.arrays.files))
        print("\n".join(describe_heldout(m)))
        print(
            f"bundle: {bundle}\nlogs: {out_dir / 'logs'} "
            f"(tensorboard --logdir {out_dir / 'logs' / 'tensorboard'})"
        )
        print(
            f"resume: wms train {audio_path} --out {out_dir} --resume {out_dir / 'checkpoints' / 'last.ckpt'}"
        )
    return bundle


def run_train(args) -> int:
    """``wms train AUDIO --out RUN_DIR [--config F] [--set k=v] [--max-minutes M] [--resume CKPT]
    [--devices D] [--num-nodes N] [--cache-dir D] [--jobs N]``."""
    from wms.analysis.prepare import _reference_audio_path

    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps = {args.max_steps} must be at least 1")
    steps = [("--max-steps", {"train": {"max_steps": args.max_steps}})] if args.max_steps else []
    flags = {
        "max_minutes": ("--max-minutes", args.max_minutes),
        "devices": ("--devices", None if args.devices is None else str(args.devices)),
        "num_nodes": ("--num-nodes", args.num_nodes),
    }
    extra = [(flag, {"runtime": {key: v}}) for key, (flag, v) in flags.items() if v is not None]
    extra += steps
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes = {args.max_minutes} must be a positive number")
    if args.resume:
        if args.preset:
            raise ConfigError(
                "--preset starts a new run; a resumed run keeps its checkpoint's settings"
            )
        cfg = resume_config(args.resume, args.config, args.overrides)
        cfg = load_config(base=("checkpoint", cfg.to_dict()), extra=extra) if extra else cfg
    else:
        cfg = load_config(args.config, args.overrides, extra=extra, preset=args.preset)
    audio = args.audio or _reference_audio_path(args.config)
    if not audio:
        raise ConfigError("no AUDIO given (and the config has no audio_files_path)")
    train(
        audio,
        args.out,
        cfg,
        cache_dir=args.cache_dir,
        jobs=args.jobs,
        resume=args.resume,
        force=args.force,
        inputs=tuple(p for p in (args.config,) if p),
        preset=args.preset,
    )
    return 0
