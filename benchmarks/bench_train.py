"""Training benchmark: wms 0.1's defaults against today's, on real instruments.

    python benchmarks/bench_train.py                  # violin + flute with pauses, ~12 min
    python benchmarks/bench_train.py --old-steps 100  # quicker, during development
    python benchmarks/bench_train.py --analysis reference  # both at the 0.2 default's 16 kHz

The material is ``benchmarks/real_audio.py``'s violin_vibrato (60 s, legato, vibrato)
and flute_pauses (60 s, pauses of digital silence and a -60 dBFS noise floor), rendered
into ``--out`` unless ``--audio`` names folders. Each is prepared once and trained twice
on the same split:

- **0.1 defaults**: 256 wide, T 50, batch 512, lr 2e-3 with ReduceLROnPlateau, early
  stopping (patience 20), the best-validation weights, 0.1's loss (spectral convergence
  divided per sequence, over every frame) and no silence trimming — stopped after
  ``--old-steps`` steps at most, since left alone it runs up to 1000 epochs. Its held-out
  blocks sit where today's do (they depend on lengths and seed only) and both are scored
  on the same sounding frames;
- **today's defaults** (``wms train`` with no flags): 128 wide, T 32, batch 64, lr 5e-3
  with a cosine schedule over the automatic step budget, the silence-robust loss, the
  final weights.

After every epoch the current weights are scored on the **test** blocks: harmonic-bin
LSD (dB) on the sounding frames, the figure ``wms train`` reports. The curves against
wall time go to ``docs/img/train_old_vs_new.png``; the table gives each run's steps,
time, steps/s and final test figures beside both baselines. Time depends on the
machine's load (run it alone); steps and LSD do not (seeds are fixed). Both runs analyse
alike: the default (full band) or ``--analysis reference`` (16 kHz, K 80: the analysis of
0.2's defaults, which the README's figures were measured with).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import numpy as np

from wms.analysis.prepare import prepare
from wms.config import Config, load_config, preset_sections
from wms.evaluation.figures import _figure, save_figure
from wms.evaluation.metrics import log_spectral_distance, sounding
from wms.training import losses
from wms.training import train as train_mod
from wms.training.data import global_rows
from wms.training.train import build_training_data, fit, heldout_metrics, predict_ranges

ROOT = Path(__file__).resolve().parents[1]
PIECES = ("violin_vibrato", "flute_pauses")


class V01Loss(losses.WMSLoss):
    """wms 0.1's ``log_spectral`` loss: convergence divided per sequence (+1e-8), every frame."""

    def forward(self, pred, target):
        return losses.log_spectral_loss(pred, target)


def old_defaults(max_steps: int) -> Config:
    return load_config(
        None,
        [
            "model.hidden_size=256",
            "model.encoder_size=256",
            "data.seq_len=50",
            "data.batch_size=512",
            "train.lr=2e-3",
            "train.scheduler=plateau",
            "train.early_stopping_patience=20",
            "train.weights=best",
            f"train.max_steps={max_steps}",
            "data.trim_silence_seconds=0",  # 0.1 trimmed nothing
        ],
    )


class TestCurve(L.Callback):
    """After each validation: (training seconds, test harmonic LSD of the current weights)."""

    def __init__(self, data):
        self.data, self.curve = data, []
        a = data.arrays
        held = [sp.test for sp in data.splits]
        self.ranges = [
            (a.offsets[i] + s, a.offsets[i] + e) for i, rs in enumerate(held) for s, e in rs
        ]
        target = a.targets[global_rows(a.offsets, held)]
        self.keep = sounding(target, data.energy_floor)
        self.h = data.interface.outputs.harmonic_index
        self.target = target[self.keep][:, self.h]

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        was = module.model.training
        pred = predict_ranges(module.model, self.data.arrays.inputs, self.ranges)
        module.model.train(was)
        lsd = log_spectral_distance(pred[self.keep][:, self.h], self.target)
        self.curve.append((module.history[-1]["seconds"], lsd))


def run(label: str, data, cfg: Config, out: Path, *, old_loss: bool) -> dict:
    tracker = TestCurve(data)
    real = train_mod.WMSLoss
    if old_loss:
        train_mod.WMSLoss = V01Loss
    try:
        t0 = time.perf_counter()
        module, _ = fit(data, cfg, out / label, progress=False, callbacks=(tracker,))
        wall = time.perf_counter() - t0
    finally:
        train_mod.WMSLoss = real
    model = module.model.cpu()
    if cfg.train.weights == "best" and module.best is not None:
        model.load_state_dict(module.best["state_dict"])
    steps = module.history[-1]["step"]
    return {
        "label": label,
        "metrics": heldout_metrics(model, data),
        "curve": tracker.curve,
        "wall": wall,
        "steps": steps,
        "train_seconds": module.history[-1]["seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", nargs="*", help="folders to train on (default: the two pieces)")
    ap.add_argument("--old-steps", type=int, default=400, help="step cap of the 0.1 defaults")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_train"))
    ap.add_argument(
        "--analysis", default="default", help="preset whose analysis both runs use (reference)"
    )
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "train_old_vs_new.png"))
    args = ap.parse_args()
    out = Path(args.out)
    folders = [Path(p) for p in args.audio or ()]
    if not folders:
        import real_audio

        real_audio.make_real_audio(out / "audio", only=PIECES)
        folders = [out / "audio" / p for p in PIECES]

    fig = _figure(width=11, height=4.2)
    axes = fig.subplots(1, len(folders), squeeze=False)[0]
    analysis = preset_sections(args.analysis, ("audio", "pitch", "features"))
    rows = []
    for ax, folder in zip(axes, folders, strict=True):
        new = Config().replace(**analysis)
        corpus = prepare(folder, new, cache_dir=out / "cache", jobs=1, progress=False)
        data = build_training_data(corpus, new)  # the split depends on lengths and seed only
        old_cfg = old_defaults(args.old_steps).replace(**analysis)
        old_data = build_training_data(corpus, old_cfg)
        runs = [
            run("0.1 defaults", old_data, old_cfg, out / folder.name, old_loss=True),
            run("today's defaults", data, new, out / folder.name, old_loss=False),
        ]
        m = runs[1]["metrics"]
        for r in runs:
            rm = r["metrics"]
            rows.append(
                f"| {folder.name} | {r['label']} | {r['steps']} | {r['wall'] / 60:.1f} | "
                f"{r['steps'] / r['train_seconds']:.1f} | {rm['model']['harm_lsd_db']:.2f} | "
                f"{rm['baseline_nearest']['harm_lsd_db']:.2f} | "
                f"{rm['baseline_mean']['harm_lsd_db']:.2f} | {rm['energy_db']:+.1f} | "
                f"{'yes' if rm['beats_both_baselines'] else 'no'} |"
            )
            t, y = zip(*r["curve"], strict=True)
            ax.plot(np.asarray(t) / 60, y, marker=".", label=f"{r['label']} ({r['steps']} steps)")
        for key, name, style in (
            ("baseline_nearest", "nearest training frame", "--"),
            ("baseline_mean", "mean spectrum", ":"),
        ):
            ax.axhline(m[key]["harm_lsd_db"], color="0.4", linestyle=style, label=name)
        ax.set_title(f"{folder.name}: {m['frames']} test frames")
        ax.set_xlabel("training time (min, 2 cores)")
        ax.set_ylabel("test harmonic-bin LSD (dB)")
        ax.set_ylim(0, 2 * m["baseline_mean"]["harm_lsd_db"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    print(
        "| audio | defaults | steps | minutes | steps/s | test harm. LSD (dB) | nearest frame "
        "| mean spectrum | energy (dB) | beats both |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"plot: {save_figure(fig, args.plot)}")


if __name__ == "__main__":
    main()
