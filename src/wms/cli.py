"""The ``wms`` command: one entry point with subcommands.

Each subcommand's work lives in its stage module (``wms.analysis.prepare.run_prepare``,
``wms.training.train.run_train`` ...); this file only declares the arguments and turns
:class:`~wms.errors.WMSError` into a one-line message and exit status 2.
Heavy modules are imported lazily so ``wms --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import textwrap
import threading

from wms import __version__
from wms.config import PRESETS
from wms.errors import WMSError


def _config_args(p: argparse.ArgumentParser, example: str = "features.hop_size=128") -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="settings file: TOML with [audio], [pitch], [features], [data], [model], [train], "
        "[runtime], [synth] sections, or a reference params.json (default: none)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one setting, e.g. --set {example}; repeatable, applied after --config "
        "(every key with its meaning: src/wms/config.py)",
    )


def _preset_arg(p: argparse.ArgumentParser, recorded: str) -> None:
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="starting settings under --config and --set, shipped as wms/presets/NAME.toml: "
        "default (full band: 44.1 kHz analysis, 160 harmonics, pitch 30-4200 Hz, a noise "
        "part of 32 bands, Schroeder table phases); fullband (the same, its name in wms 0.2); "
        "reference (the reference project's 16 kHz analysis with 39 harmonics and no noise, "
        "its cosine tables, 256-wide model and optimisation, for its plugins' contract) "
        "(default: default). " + recorded,
    )


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="feature cache folder (default: $WMS_CACHE_DIR, else ~/.cache/wms)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="parallel analysis processes (default: the number of CPU cores)",
    )


def _bundle_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="a model bundle (RUN_DIR/model.wms)")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {x}" for x in lines)


#: ``wms --help``: the subcommands in the order of the data flow.
OVERVIEW = """\
Train a small recurrent network on your own recordings so that it generates wavetables
from timbre controls, then play, evaluate and export it.

The usual order: wms prepare AUDIO (optional: train does it too) -> wms train AUDIO --out
RUN -> wms info / evaluate / render / play RUN/model.wms -> wms export. Every command's
--help ends with examples. Exit status: 0 done, 2 a problem with the input (the message
says which and what to do), 130/143 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="wms",
        description=OVERVIEW,
        formatter_class=raw,
        epilog=_examples(
            "wms demo                                   # everything once, on synthetic waves",
            "wms train recordings/ --out run            # then: wms play run/model.wms",
            "wms render run/model.wms --midi song.mid --out song.wav",
        ),
    )
    parser.add_argument("--version", action="version", version=f"wms {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, examples: tuple[str, ...], description: str = ""):
        text = description or help[0].upper() + help[1:] + "."
        return sub.add_parser(
            name,
            help=help,
            description="\n\n".join(textwrap.fill(par, 88) for par in text.split("\n\n")),
            epilog=_examples(*examples),
            formatter_class=raw,
        )

    p = command(
        "basic-waves",
        "write synthetic training audio: sine, triangle, square and saw waves whose pitch and "
        "shape drift",
        ("wms basic-waves waves.wav --seconds 30", "wms basic-waves w.wav --sample-rate 16000"),
    )
    p.add_argument("out", metavar="OUT.wav", help="the WAV file to write")
    p.add_argument("--seconds", type=float, default=60.0, help="length in seconds (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the drift (default: 0)")
    p.add_argument(
        "--sample-rate",
        type=int,
        default=44100,
        help="sample rate in Hz (default: 44100, the default analysis rate)",
    )
    p.set_defaults(handler="wms.analysis.basic_waves:run_basic_waves")

    p = command(
        "prepare",
        "analyse audio into training pairs (pitch, timbre features, spectra) in the feature cache",
        (
            "wms prepare recordings/",
            "wms prepare take1.wav --set pitch.method=crepe --jobs 2",
            "wms prepare recordings/ --preset reference",
        ),
        description="Analyse audio into training pairs in the feature cache: pitch and "
        "voicedness, timbre features (MFCC) and pitch-synchronous spectra. A file already "
        "analysed with the same settings is read from the cache. wms train runs this itself; "
        "run it alone to check the audio (what is skipped, silence trimmed) first.",
    )
    p.add_argument(
        "audio",
        metavar="AUDIO",
        help="an audio file or a folder, searched recursively (WAV, FLAC, OGG, AIFF, MP3)",
    )
    _config_args(p)
    _preset_arg(
        p, "Analyse with the preset you will train with, so that wms train finds it in the cache."
    )
    _data_args(p)
    p.set_defaults(handler="wms.analysis.prepare:run_prepare")

    p = command(
        "train",
        "prepare (or reuse the cache) and train a model bundle",
        (
            "wms train recordings/ --out run",
            "wms train take.wav --out run --max-steps 500 --set model.hidden_size=64",
            "wms train take.wav --out run --resume run/checkpoints/last.ckpt --max-steps 6000",
        ),
        description="Prepare AUDIO (or reuse the cache) and train a model bundle in RUN_DIR: "
        "model.wms, config.toml, loss curves, checkpoints and logs. Training ends after a "
        "step budget scaled to the audio (about 3000 steps, two or three minutes on 2 cores, for "
        "60 s); the summary compares the model with two baselines on held-out test blocks "
        "and warns when it is weak. The default analysis is full band (44.1 kHz, 160 "
        "harmonics and a noise part); --preset reference trains the reference's. Timbre "
        "controls are the principal components of the MFCC, pc0 the one that explains most "
        "(wms info says what each does); --set features.reduction=none gives the 8 MFCC, "
        "and --set features.timbre=envelope makes the controls pitch-invariant levels of the "
        "first harmonics (good for instruments, not for voices).",
    )
    p.add_argument(
        "audio", metavar="AUDIO", help="an audio file or a folder of recordings of one instrument"
    )
    p.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="folder for the run (created if needed)"
    )
    _config_args(p)
    _data_args(p)
    _preset_arg(p, "RUN_DIR/config.toml and wms info say which was used.")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps (default: train.max_steps; 0 there = scaled to the audio)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="wall-clock cap in minutes, on top of the step budget (default: none)",
    )
    p.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue this run from its checkpoint (RUN_DIR/checkpoints/last.ckpt)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier run in RUN_DIR (only what training wrote there is deleted)",
    )
    p.add_argument(
        "--devices",
        default=None,
        help="devices per node, Lightning's syntax: auto, a count (2; -1 = all) or indices "
        "(0,1) (default: auto)",
    )
    p.add_argument(
        "--num-nodes",
        type=int,
        default=None,
        metavar="N",
        help="machines for multi-node DDP training (default: 1)",
    )
    p.set_defaults(handler="wms.training.train:run_train")

    p = command(
        "info",
        "describe a bundle: controls and their ranges, pitch range, settings, held-out figures",
        (
            "wms info run/model.wms",
            "wms info old.wms        # a bundle of wms 0.1 loads too (or says how to convert it)",
        ),
    )
    _bundle_arg(p)
    p.set_defaults(handler="wms.bundle:run_info")

    p = command(
        "evaluate",
        "metrics, plots and audio examples for a bundle, against two baselines",
        (
            "wms evaluate run/model.wms --out run/eval",
            "wms evaluate run/model.wms other_take.wav --out eval_other",
        ),
        description="Metrics, plots and audio examples for a bundle: spectral figures on "
        "the harmonic bins and all bins against the mean-spectrum and nearest-frame baselines, "
        "and the held-out audio resynthesised by the model, both baselines and the oracle. "
        "Writes report.md, index.html, metrics.json, figures and WAVs to --out.",
    )
    _bundle_arg(p)
    p.add_argument(
        "audio",
        metavar="AUDIO",
        nargs="?",
        help="held-out audio, a file or a folder (default: the bundle's test blocks)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument(
        "--allow-seen",
        action="store_true",
        help="evaluate AUDIO even if the bundle was trained on it (the figures are then optimistic)",
    )
    _data_args(p)
    p.set_defaults(handler="wms.evaluation.evaluate:run_evaluate")

    p = command(
        "render",
        "play a bundle to a WAV file: a fixed note, automation, MIDI, another recording or a "
        "generative path",
        (
            "wms render run/model.wms --out a.wav --f0 220 --seconds 3 --control pc0=0.5",
            "wms render run/model.wms --out song.wav --midi song.mid",
            "wms render run/model.wms --out voice_as_flute.wav --audio voice.wav",
        ),
        description="Play a bundle to a WAV file. The control source is one of: a fixed "
        "note (--f0, --control, --seconds; the default), --controls FILE, --midi FILE, "
        "--audio FILE (timbre transfer: the recording's pitch, loudness and timbre drive "
        "the model) or --path. Loudness: see --normalize.\n\n"
        "--controls FILE holds breakpoints, linearly interpolated. CSV: a header row with "
        "time (seconds) and any of f0 (Hz), voicedness (0..1), level (linear gain) and the "
        "bundle's control names (wms info lists them), then one row per breakpoint; an empty "
        'cell is no breakpoint. JSON: columns {"time": [0, 2], "f0": 220, "pc0": [0, 1]} '
        '(a number is a constant) or rows [{"time": 0, "f0": 220}, {"time": 2, "pc0": 1}].',
    )
    _bundle_arg(p)
    p.add_argument("--out", required=True, metavar="OUT.wav", help="the WAV file to write")
    p.add_argument(
        "--sr",
        type=int,
        default=None,
        metavar="HZ",
        help="output sample rate in Hz (default: synth.sample_rate, 48000)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length in seconds (default: 2 for a fixed note, 10 for --path, the whole "
        "file for --controls, --midi and --audio, which it cuts)",
    )
    p.add_argument(
        "--f0",
        type=float,
        default=None,
        metavar="HZ",
        help="pitch of a fixed note or a --path in Hz (default: the training audio's median)",
    )
    p.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="NAME=V",
        help="hold a timbre control at V (in its training range; wms info lists them), "
        "repeatable (default: the training median)",
    )
    p.add_argument(
        "--controls", metavar="FILE", help="automation curves, CSV or JSON (format above)"
    )
    p.add_argument(
        "--midi",
        metavar="FILE",
        help="a standard MIDI file: notes, velocity, pitch bend; CCs per synth.midi_cc",
    )
    p.add_argument(
        "--audio", metavar="FILE", help="timbre transfer: play this recording's pitch and timbre"
    )
    p.add_argument(
        "--path",
        choices=["lorenz", "tour"],
        help="a generative path through the controls: lorenz (a chaotic attractor) or tour "
        "(from one training sound to the next)",
    )
    p.add_argument(
        "--format",
        choices=["16", "24", "float"],
        default="24",
        help="WAV sample format: 16- or 24-bit integer, or 32-bit float (default: 24)",
    )
    p.add_argument(
        "--normalize",
        choices=["loudness", "peak", "none"],
        default="loudness",
        help="loudness policy: loudness = sounding parts at -20 dBFS RMS (peak <= -1 dBFS); "
        "peak = peak at -1 dBFS; none = the engine's own level. A near-silent render is never "
        "amplified (default: loudness)",
    )
    p.add_argument(
        "--gain",
        type=float,
        default=0.0,
        metavar="DB",
        help="gain after --normalize in dB (default: 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of --path (default: 0)")
    _config_args(p, "synth.phases=schroeder (only [synth] settings; the bundle's are the default)")
    p.set_defaults(handler="wms.synth.render:run_render")

    p = command(
        "play",
        "play a bundle live in the browser: mouse, computer keyboard or MIDI controller",
        ("wms play run/model.wms", "wms play run/model.wms --no-browser"),
        description="Play a bundle live in the browser: exports the web instrument to a "
        "temporary folder, serves it on 127.0.0.1 and opens it. Play with the mouse (the "
        "timbre pad), the computer keyboard or a MIDI controller; Ctrl-C stops the server. "
        "For a folder to keep or host: wms export BUNDLE --format web --out DIR.",
    )
    _bundle_arg(p)
    p.add_argument("--no-browser", action="store_true", help="only serve and print the URL")
    p.set_defaults(handler="wms.export.web:run_play")

    p = command(
        "export",
        "export a bundle for realtime engines (RTNeural, ONNX, TorchScript), wavetable synths "
        "and the browser",
        (
            "wms export run/model.wms --format rtneural --out plugin/",
            "wms export run/model.wms --format wavetable --out bank/ --frames 64",
            "wms export run/model.wms --format web --out site/",
        ),
        description="Export a bundle: rtneural (JSON weights and a C++ header for a JUCE "
        "plugin), onnx, torchscript, wavetable (a WAV bank for Serum, Vital, Surge, "
        "Bitwig...) or web (a static folder that plays in a browser). Each export is "
        "checked against PyTorch before it is written; see docs/EXPORT.md.",
    )
    _bundle_arg(p)
    p.add_argument(
        "--format",
        required=True,
        choices=["rtneural", "onnx", "torchscript", "wavetable", "web"],
        help="what to write (see above)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the export")
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="wavetable: frames in the bank, 2..256 (default: 256)",
    )
    p.add_argument(
        "--control",
        default=None,
        metavar="NAME",
        help="wavetable: sweep this control across the bank (default: the first principal "
        "direction of the training sounds)",
    )
    p.add_argument(
        "--wav-format",
        choices=["float", "24", "16"],
        default=None,
        help="wavetable: WAV sample format; Surge XT reads float and 16 only (default: float)",
    )
    p.set_defaults(handler="wms.export:run_export")

    p = command(
        "demo",
        "the whole pipeline once on synthetic basic waves: prepare, train, render, report, export",
        ("wms demo", "wms demo --out /tmp/demo --seconds 30 --max-steps 500"),
        description="The whole pipeline once on synthetic basic waves: prepare, train, "
        "render three ways, evaluate and export, each step printed as the wms command it "
        "runs. Ends with whether the model beats both baselines.",
    )
    p.add_argument(
        "--out",
        default="runs/demo",
        metavar="DIR",
        help="folder for everything (default: runs/demo)",
    )
    p.add_argument(
        "--seconds", type=float, default=60.0, help="seconds of basic waves (default: 60)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps (default: scaled to the audio, as wms train does)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="wall-clock cap on training in minutes (default: none)",
    )
    p.set_defaults(handler="wms.demo:run_demo")
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so it unwinds like Ctrl-C (workers stopped, temp
    files removed, nothing half-written kept)."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    module, func = args.handler.split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except WMSError as e:
        print(f"wms {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"wms {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"wms {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
