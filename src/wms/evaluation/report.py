"""The report of ``wms evaluate`` (Markdown + HTML).

:func:`write_figures_and_report` makes every figure for one evaluation
(:mod:`wms.evaluation.figures`) and writes ``report.md`` and ``index.html`` that show the
same images.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from wms.evaluation.figures import (
    brightness,
    control_map_figure,
    loss_curves,
    save_figure,
    spectra_figure,
    spectrogram_figure,
    waveforms_figure,
)
from wms.io import write_text

# --------------------------------------------------------------------------- report


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


_LABELS = {
    "model": "**model**",
    "baseline_mean": "baseline: mean spectrum",
    "baseline_nearest": "baseline: nearest training frame",
    "oracle": "oracle: the audio's own harmonics",
}


def metrics_markdown(m: dict[str, Any]) -> str:
    """The spectral table, the verdict and flags, and the resynthesis table, as Markdown
    (blocks separated by blank lines; tables start with ``|``)."""
    rows = [
        "| | harmonic LSD (dB) | harmonic SC | LSD, all bins (dB) | SC, all bins |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in ("model", "baseline_mean", "baseline_nearest"):
        s = m[key]
        rows.append(
            f"| {_LABELS[key]} | {s['harm_lsd_db']:.2f} | {s['harm_sc']:.3f} | "
            f"{s['lsd_db']:.2f} | {s['sc']:.3f} |"
        )
    verdict = (
        "The model **beats both baselines** on the harmonic bins (what the synth plays)."
        if m["beats_both_baselines"]
        else "The model does **not** beat both baselines on the harmonic bins."
    )
    verdict += f" Its predicted energy is {m['energy_db']:+.1f} dB against the held-out audio's."
    blocks = ["\n".join(rows), verdict]
    blocks += [f"**Warning:** {f['message']}. {f['advice']}." for f in m.get("flags", [])]
    r = m["resynthesis"]
    res = [
        "| resynthesis by | MR-STFT distance | SC | log-magnitude L1 | within 80 dB | "
        "level match (dB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("model", "baseline_mean", "baseline_nearest", "oracle"):
        st = r["stft_distance"][key]
        res.append(
            f"| {_LABELS[key]} | {st['total']:.3f} | {st['sc']:.3f} | {st['log_mag_l1']:.3f} | "
            f"{st['total_floored']:.3f} | {r['level_match_db'][key]:+.1f} |"
        )
    blocks.append(
        f"Resynthesis: {r['seconds']:.1f} s of held-out audio played through the synth four ways "
        f"(same pitch and loudness, the timbre from each predictor) at the audio's own rate "
        f"({r['sample_rate']} Hz) and compared with the original over the full band by a "
        f"multi-resolution STFT distance (FFT sizes {', '.join(map(str, r['fft_sizes']))}; "
        'lower is better; the oracle is the best this representation can do). "Within 80 '
        "dB\" is the same distance with both spectra clamped at 80 dB under the original's "
        "loudest bin: a band the original holds in digital silence (a source resampled from "
        "a lower rate) then costs nothing for a render's inaudible noise there."
    )
    blocks.append("\n".join(res))
    osc = r["oscillator_f0_cents"]
    if osc["frames"]:
        blocks.append(
            f"Oscillator check: the model's render plays the pitch it is given to within "
            f"{_fmt(osc['median_abs'], '.1f')} cents (median; 90th percentile "
            f"{_fmt(osc['p90_abs'], '.1f')} cents) over {osc['frames']} voiced frames."
        )
    blocks += [f"Note: {n}" for n in m.get("notes", [])]
    return "\n\n".join(blocks) + "\n"


def _data_line(m: dict[str, Any]) -> str:
    d, b = m["data"], m["bundle"]
    files = ", ".join(f"`{Path(f['path']).name}` ({f['seconds']:.1f} s)" for f in d["files"])
    skipped = (
        f" Skipped: {', '.join(s['path'] + ' (' + s['reason'] + ')' for s in d['skipped'])}."
        if d["skipped"]
        else ""
    )
    return (
        f"Bundle `{b['path']}` (wms {b['written_by_wms']}, {b['parameters']:,} parameters, "
        f"{b['epochs']} epochs, config {b['config_sha256']}). Evaluated on {d['frames']} frames "
        f"({d['seconds']:.1f} s, {d['voiced_frames']} voiced): {d['description']}; {files}. "
        f"Baselines from {d['baselines_from']}.{skipped}"
    )


def write_report(
    out: Path,
    metrics: dict[str, Any],
    figures: Sequence[tuple[str, str, str]],
    audio: Sequence[tuple[str, str]],
) -> tuple[Path, Path]:
    """Write ``out/report.md`` and ``out/index.html``.

    Args:
        metrics: the evaluation metrics (``wms.evaluation.evaluate``).
        figures: ``(file name, title, caption)`` of PNGs in ``out``.
        audio: ``(file name, description)`` of WAVs in ``out``.

    Returns:
        ``(report.md, index.html)`` paths.

    Raises:
        OutputError: a file cannot be written.
    """
    md = ["# WMS evaluation report", "", _data_line(metrics), "", "## Metrics", ""]
    md.append(metrics_markdown(metrics))
    md += ["## Figures", ""]
    for name, title, caption in figures:
        md += [f"### {title}", "", f"![{title}]({name})", "", caption, ""]
    md += ["## Audio", ""]
    md += [f"- [{name}]({name}): {desc}" for name, desc in audio]
    md.append("")

    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    def table(block: str) -> str:
        rows = [r for r in block.splitlines() if not r.startswith("|---")]
        cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
        return (
            "<table>"
            + "".join(
                "<tr>"
                + "".join(
                    f"<{'th' if i == 0 else 'td'}>{inline(c)}</{'th' if i == 0 else 'td'}>"
                    for c in row
                )
                + "</tr>"
                for i, row in enumerate(cells)
            )
            + "</table>"
        )

    blocks = [b for b in metrics_markdown(metrics).split("\n\n") if b.strip()]
    body = [
        "<h1>WMS evaluation report</h1>",
        f"<p>{inline(_data_line(metrics))}</p>",
        "<h2>Metrics</h2>",
        *(table(b) if b.startswith("|") else f"<p>{inline(b)}</p>" for b in blocks),
        "<h2>Figures</h2>",
    ]
    for name, title, caption in figures:
        body.append(
            f"<figure><h3>{html.escape(title)}</h3><img src='{html.escape(name)}' "
            f"alt='{html.escape(title)}'><figcaption>{inline(caption)}</figcaption></figure>"
        )
    body.append("<h2>Audio</h2><ul>")
    for name, desc in audio:
        body.append(
            f"<li><a href='{html.escape(name)}'>{html.escape(name)}</a>: {inline(desc)}<br>"
            f"<audio controls preload='none' src='{html.escape(name)}'></audio></li>"
        )
    body.append("</ul>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>WMS evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "figure{margin:1.5em 0}figcaption{color:#444}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    paths = (out / "report.md", out / "index.html")
    for p, text in zip(paths, ("\n".join(md), page), strict=True):
        write_text(p, text)
    return paths


def write_figures_and_report(
    out: Path,
    *,
    bundle,
    metrics: dict[str, Any],
    examples: Sequence[dict],
    resyn,
    heldout_inputs: np.ndarray,
    audio_files: dict[str, str],
) -> dict[str, str]:
    """Every evaluation figure, then ``report.md`` / ``index.html``; returns ``{name: file}``."""
    cfg = bundle.config
    layout = bundle.interface.outputs
    figs: list[tuple[str, str, str]] = []
    files: dict[str, str] = {}

    def save(key: str, fig: Figure, title: str, caption: str) -> None:
        name = f"{key}.png"
        save_figure(fig, out / name)
        figs.append((name, title, caption))
        files[key] = name

    save(
        "spectra",
        spectra_figure(examples, layout=layout),
        "Predicted vs target spectra",
        "log1p magnitude per bin of held-out frames (x in harmonics: harmonic h is bin B·h, B = features.bins_per_harmonic, the "
        "bins between are window leakage). Frames are picked at the 10th/50th/75th/95th "
        "percentile of the model's per-frame LSD among voiced frames; the dashed line is the "
        "nearest-training-frame baseline.",
    )
    save(
        "waveforms",
        waveforms_figure(examples, layout=layout),
        "Wavetables of the same frames",
        "Two cycles of the one-cycle table the synth builds from the target and the predicted "
        "harmonics (zero phase, RMS-normalised), for the frames above.",
    )
    h = bundle.history
    if h:
        fig = loss_curves(
            [x["epoch"] + 1 for x in h],
            [x["train_loss"] for x in h],
            [x.get("val_loss") for x in h],
            [x["lr"] for x in h],
            title=f"training history ({cfg.train.loss} loss)",
        )
        save(
            "loss_curves",
            fig,
            "Loss curves",
            "Training and validation loss per epoch "
            "(from the bundle's history) and the learning rate.",
        )
    tm = bundle.training_map or {}
    if "controls" in tm and len(tm["controls"]):
        from wms.synth.network import control_effects

        effects = control_effects(bundle)
        if "targets" in tm:
            colour, label = brightness(tm["targets"], layout), "brightness (centroid, harmonics)"
        else:
            colour, label = np.asarray(tm["voicedness"]), "voicedness"
        fig = control_map_figure(
            tm["controls"],
            tm["f0"],
            colour,
            names=[f"{e.name} ({e.label})" for e in effects],
            colour_label=label,
            heldout=heldout_inputs[:, : bundle.interface.n_timbre],
        )
        save(
            "control_map",
            fig,
            "Training data in control space",
            f"The bundle's training map ({len(tm['controls'])} training frames) on the first two "
            f"timbre controls, coloured by pitch (left) and by {label} (right); crosses are the "
            "evaluated frames. From the low to the high end of its range, at "
            f"{bundle.interface.f0_default:.0f} Hz, "
            + "; ".join(f"{e.name}: {e}" for e in effects[:2])
            + ".",
        )
    fig = spectrogram_figure(
        resyn.original,
        resyn.renders["model"],
        sample_rate=resyn.sample_rate,
        boundaries=resyn.boundaries,
    )
    n_harm = layout.n_harmonics
    save(
        "spectrogram",
        fig,
        "Original vs resynthesis",
        "Spectrograms (first 10 s) of the held-out audio and of its resynthesis by the model "
        f"(timbre transfer), at the audio's own rate ({resyn.sample_rate} Hz); dashed lines mark "
        f"where held-out segments join. The model holds {n_harm} harmonics, so the resynthesis "
        f"of a note stops at {n_harm}·f0.",
    )

    audio = [(audio_files["original"], "the held-out audio (segments joined by short silences)")]
    audio += [
        (
            audio_files[f"resynthesis_{k}"],
            f"its resynthesis by the {_LABELS[k].strip('*')} (level matched to the original)",
        )
        for k in ("model", "baseline_mean", "baseline_nearest", "oracle")
    ]
    for e in examples:
        audio.append(
            (
                e["wav_target"],
                f"frame {e['frame']} ({e['label']}): target table looped 1 s at {e['f0']:.0f} Hz",
            )
        )
        audio.append(
            (e["wav_model"], f"frame {e['frame']}: predicted table looped 1 s at {e['f0']:.0f} Hz")
        )
    md, page = write_report(out, metrics, figs, audio)
    files["report"], files["html"] = md.name, page.name
    return files
