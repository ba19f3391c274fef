"""Training benchmark: throughput, held-out quality vs baselines, new defaults vs the reference.

    python benchmarks/bench_train.py                         # full: 60 s of basic waves, 4 min per run
    python benchmarks/bench_train.py --minutes 1 --seconds-audio 20   # quick, during development

1. Throughput at the reference model and batch (hidden 256, encoder 256, T = 50,
   batch 512): frames/s of a plain training loop, with batch fetching timed
   separately from forward/backward/step. Target: the reference's ~28,000 frames/s.
2. Quality: the same data, the same wall-clock budget, trained twice through
   Lightning: the reference's settings (AdamW lr 1e-4, weight decay 1e-5,
   ReduceLROnPlateau, spectral loss, no dropout) and WMS's defaults (config.py).
   Held-out log-spectral distance (dB) and spectral convergence of both, against
   the mean-spectrum and nearest-frame baselines (docs/DESIGN.md §5); held-out LSD of
   both runs against wall time (after every validation) is saved to
   docs/img/train_vs_reference.png. The run reported is the one at the lowest
   validation loss (what `wms train` puts in the bundle).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from wms.analysis.audio import write_audio
from wms.analysis.basic_waves import basic_waves
from wms.analysis.prepare import prepare
from wms.config import Config
from wms.evaluation.figures import curves_vs_time, save_figure
from wms.evaluation.metrics import log_spectral_distance
from wms.training.data import sequence_loader
from wms.training.losses import WMSLoss
from wms.training.model import WMSNet, count_parameters
from wms.training.train import build_training_data, fit, heldout_metrics, predict_ranges

REFERENCE_FRAMES_PER_S = 28_000
ROOT = Path(__file__).resolve().parents[1]


def throughput(data, cfg: Config, *, steps: int) -> dict[str, float]:
    """Frames/s of a plain loop at ``cfg``'s model/batch; data vs compute seconds per step."""
    a = data.arrays
    model = WMSNet.from_config(a.inputs.shape[1], a.targets.shape[1], cfg.model)
    loss_fn = WMSLoss(
        cfg.train.loss, n_bins=a.targets.shape[1], cycles=cfg.features.cycles_per_window
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=cfg.train.weight_decay)
    loader = sequence_loader(a, a.train_starts, batch_size=cfg.data.batch_size, shuffle=True)
    t_data, t_compute, frames, done = 0.0, 0.0, 0, -2  # two warm-up steps are not timed
    while done < steps:
        it = iter(loader)
        while done < steps:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            x, y = batch
            t1 = time.perf_counter()
            loss = loss_fn(model(x)[0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.gradient_clip)
            opt.step()
            t2 = time.perf_counter()
            if done >= 0:
                t_data, t_compute, frames = (
                    t_data + t1 - t0,
                    t_compute + t2 - t1,
                    frames + x.shape[0] * x.shape[1],
                )
            done += 1
    return {
        "frames_per_s": frames / (t_data + t_compute),
        "data_ms": 1e3 * t_data / steps,
        "compute_ms": 1e3 * t_compute / steps,
        "params": count_parameters(model),
    }


class HeldoutLSD(L.Callback):
    """After every validation: held-out LSD (dB) of the current weights, against training seconds.

    LSD, not the validation loss, so that runs trained with different losses share one axis.
    """

    def __init__(self, data):
        self.data, self.curve = data, []

    def on_validation_end(self, trainer, module):  # after the module recorded its history
        if trainer.sanity_checking:
            return
        a = self.data.arrays
        val = [
            (a.offsets[i] + s, a.offsets[i] + e)
            for i, sp in enumerate(self.data.splits)
            for s, e in sp.val
        ]
        rows = np.concatenate([np.arange(s, e) for s, e in val])
        pred = predict_ranges(module.model, a.inputs, val)
        self.curve.append(
            (module.history[-1]["seconds"], log_spectral_distance(pred, a.targets[rows]))
        )


def run(label: str, data, cfg: Config, out: Path, *, max_steps: int) -> dict:
    t0 = time.perf_counter()
    tracker = HeldoutLSD(data)
    module, _ = fit(
        data, cfg, out / label, progress=False, max_steps=max_steps, callbacks=(tracker,)
    )
    wall = time.perf_counter() - t0
    model = module.model.cpu()
    if module.best is not None:
        model.load_state_dict(module.best["state_dict"])
    m = heldout_metrics(model, data)
    h = module.history
    steps = h[-1]["step"] if h else 0
    frames = steps * cfg.data.batch_size * cfg.data.seq_len
    t = cfg.train
    return {
        "label": label,
        "config": f"{t.optimizer} lr {t.lr:g} {t.scheduler}, {t.loss} loss",
        "metrics": m,
        "history": h,
        "lsd_curve": tracker.curve,
        "wall": wall,
        "steps": steps,
        "lightning_frames_per_s": frames / h[-1]["seconds"] if h else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget per run")
    ap.add_argument("--seconds-audio", type=float, default=60.0, help="seconds of basic waves")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of the throughput loop")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=-1,
        help="also stop each run after this many steps: a fair comparison on a busy machine",
    )
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_train"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "train_vs_reference.png"))
    ap.add_argument(
        "--threads", type=int, default=2, help="torch threads (the machine has 2 cores)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cfg = Config()
    wav = write_audio(
        out / "basic_waves.wav", basic_waves(args.seconds_audio, sample_rate=16000, seed=0), 16000
    )
    corpus = prepare(wav, cfg, cache_dir=out / "cache", jobs=1, progress=False)
    data = build_training_data(corpus, cfg)
    s = data.summary
    print(
        f"data: {args.seconds_audio:g} s of basic waves, {s['frames']} frames, {s['train_sequences']} "
        f"training sequences, {s['val_frames']} held-out frames; torch threads {torch.get_num_threads()}"
    )

    ref_model = cfg.replace(
        model={"hidden_size": 256, "encoder_size": 256}, data={"seq_len": 50, "batch_size": 512}
    )
    tp = throughput(data, ref_model, steps=args.steps)
    print(
        f"throughput (hidden 256, enc 256, T 50, batch 512; {tp['params']:,} parameters): "
        f"{tp['frames_per_s']:,.0f} frames/s = {tp['frames_per_s'] / REFERENCE_FRAMES_PER_S:.2f}x the "
        f"reference's {REFERENCE_FRAMES_PER_S:,}; per step: data {tp['data_ms']:.1f} ms, "
        f"forward/backward/step {tp['compute_ms']:.0f} ms ({100 * tp['data_ms'] / (tp['data_ms'] + tp['compute_ms']):.1f} % data)"
    )

    budget = {"max_epochs": 100_000}
    cap = {"max_minutes": args.minutes}
    # The reference's settings (docs/DESIGN.md §1-2): AdamW lr 1e-4, weight decay 1e-5,
    # ReduceLROnPlateau, the spectral loss (SC + L1 on log1p), no dropout.
    reference = cfg.replace(
        train={
            **budget,
            "optimizer": "adamw",
            "lr": 1e-4,
            "weight_decay": 1e-5,
            "scheduler": "plateau",
            "plateau_patience": 5,
            "plateau_factor": 0.5,
            "loss": "spectral",
        },
        model={"dropout": 0.0},
        runtime=cap,
    )
    runs = [
        run("reference", data, reference, out, max_steps=args.max_steps),
        run(
            "wms_defaults",
            data,
            cfg.replace(train=budget, runtime=cap),
            out,
            max_steps=args.max_steps,
        ),
    ]
    d = cfg.train
    print(
        f"WMS defaults: {d.optimizer} lr {d.lr:g}, weight decay {d.weight_decay:g}, dropout "
        f"{cfg.model.dropout:g}, {d.loss} loss, {d.scheduler} (patience {d.plateau_patience}, "
        f"factor {d.plateau_factor})"
    )

    m0 = runs[0]["metrics"]
    print(
        f"baselines on {m0['n_frames']} held-out frames: mean spectrum LSD {m0['lsd_db_mean_baseline']:.2f} dB "
        f"(SC {m0['sc_mean_baseline']:.3f}); nearest training frame LSD {m0['lsd_db_nn_baseline']:.2f} dB "
        f"(SC {m0['sc_nn_baseline']:.3f})"
    )
    for r in runs:
        m = r["metrics"]
        best = min(m["lsd_db_mean_baseline"], m["lsd_db_nn_baseline"])
        print(
            f"{r['label']:>13}: {r['wall'] / 60:.1f} min, {r['steps']} steps, {r['lightning_frames_per_s']:,.0f} frames/s "
            f"in Lightning; held-out LSD {m['lsd_db']:.2f} dB (best baseline / model = {best / m['lsd_db']:.2f}x, "
            f"{'beats' if m['lsd_db'] < best else 'DOES NOT beat'} both), SC {m['sc']:.3f}, "
            "best val loss {0[val_loss]:.4f} at epoch {0[epoch]}".format(
                min(r["history"], key=lambda h: h["val_loss"])
            )
        )
    ratio = runs[0]["metrics"]["lsd_db"] / runs[1]["metrics"]["lsd_db"]
    print(f"reference LSD / WMS-defaults LSD = {ratio:.2f}x (> 1: the defaults are better)")

    curves = {
        f"{r['label']} ({r['config']}; best {r['metrics']['lsd_db']:.2f} dB)": tuple(
            zip(*r["lsd_curve"], strict=True)
        )
        for r in runs
    }
    curves[f"nearest training frame baseline ({m0['lsd_db_nn_baseline']:.2f} dB)"] = (
        [0, max(r["lsd_curve"][-1][0] for r in runs)],
        [m0["lsd_db_nn_baseline"]] * 2,
    )
    fig = curves_vs_time(
        curves,
        ylabel="held-out log-spectral distance (dB)",
        log_y=False,
        title=f"{args.seconds_audio:g} s basic waves, {args.minutes:g} min CPU budget each"
        + (f" (at most {args.max_steps} steps)" if args.max_steps > 0 else ""),
    )
    print(f"plot: {save_figure(fig, args.plot)}")


if __name__ == "__main__":
    main()
