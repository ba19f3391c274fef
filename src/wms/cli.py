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
import threading

from wms import __version__
from wms.config import PRESETS
from wms.errors import WMSError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config (or a reference params.json)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set features.hop_size=128 (repeatable)",
    )


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir", metavar="DIR", help="feature cache (default $WMS_CACHE_DIR or ~/.cache/wms)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="parallel analysis processes (default: cores)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wms", description="Wavetable Manifold Synthesis: train, render, evaluate, export."
    )
    parser.add_argument("--version", action="version", version=f"wms {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("basic-waves", help="write the synthetic basic-waves training set")
    p.add_argument("out", metavar="OUT.wav")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.set_defaults(handler="wms.analysis.basic_waves:run_basic_waves")

    p = sub.add_parser("prepare", help="analyse audio into cached training pairs")
    p.add_argument(
        "audio", metavar="AUDIO", help="an audio file or a folder (searched recursively)"
    )
    _config_args(p)
    _data_args(p)
    p.set_defaults(handler="wms.analysis.prepare:run_prepare")

    p = sub.add_parser("train", help="prepare (or reuse the cache) and train a model bundle")
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _config_args(p)
    _data_args(p)
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="starting settings under --config and --set: 'default', or 'reference' (the "
        "reference project's 256-wide model and optimisation)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps (default: train.max_steps; 0 there = scaled to the corpus)",
    )
    p.add_argument(
        "--max-minutes", type=float, default=None, metavar="M", help="wall-clock cap in minutes"
    )
    p.add_argument("--resume", metavar="CKPT", help="continue from a Lightning checkpoint")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier run in RUN_DIR (only what training wrote there is deleted)",
    )
    p.add_argument("--devices", default=None, help="devices per node (Lightning syntax)")
    p.add_argument("--num-nodes", type=int, default=None)
    p.set_defaults(handler="wms.training.train:run_train")

    p = sub.add_parser("render", help="play a bundle to a WAV file")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--out", required=True, metavar="OUT.wav")
    p.add_argument(
        "--sr", type=int, default=None, help="output sample rate (default synth.sample_rate)"
    )
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--f0", type=float, default=None, help="fixed pitch in Hz")
    p.add_argument("--control", action="append", default=[], metavar="NAME=V")
    p.add_argument("--controls", metavar="FILE", help="automation curves (CSV or JSON)")
    p.add_argument("--midi", metavar="FILE", help="standard MIDI file")
    p.add_argument("--audio", metavar="FILE", help="timbre transfer from a recording")
    p.add_argument(
        "--path", choices=["lorenz", "tour"], help="generative path through control space"
    )
    p.add_argument(
        "--format", choices=["16", "24", "float"], default="24", help="WAV sample format"
    )
    p.add_argument(
        "--normalize",
        choices=["loudness", "peak", "none"],
        default="loudness",
        help="loudness policy: loudness = sounding parts at -20 dBFS RMS (peak <= -1 dBFS); "
        "peak = peak at -1 dBFS; none = the engine's own level (default: loudness)",
    )
    p.add_argument(
        "--gain", type=float, default=0.0, metavar="DB", help="gain added after --normalize, dB"
    )
    p.add_argument("--seed", type=int, default=0)
    _config_args(p)
    p.set_defaults(handler="wms.synth.render:run_render")

    p = sub.add_parser("evaluate", help="metrics, plots and audio examples for a bundle")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "audio",
        metavar="AUDIO",
        nargs="?",
        help="held-out audio (default: the bundle's test blocks)",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--allow-seen",
        action="store_true",
        help="evaluate AUDIO even if the bundle was trained on it (the figures are then optimistic)",
    )
    _data_args(p)
    p.set_defaults(handler="wms.evaluation.evaluate:run_evaluate")

    p = sub.add_parser("export", help="export a bundle for realtime engines and synths")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--format",
        required=True,
        choices=["rtneural", "onnx", "torchscript", "wavetable", "web"],
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--frames", type=int, default=None, help="wavetable: frames, 2..256 (default 256)"
    )
    p.add_argument(
        "--control",
        default=None,
        metavar="NAME",
        help="wavetable: sweep this control (default: first principal direction of the training map)",
    )
    p.add_argument(
        "--wav-format",
        choices=["float", "24", "16"],
        default=None,
        help="wavetable: WAV sample format (default float)",
    )
    p.set_defaults(handler="wms.export:run_export")

    p = sub.add_parser("play", help="play a bundle in the browser (serves the web export)")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--no-browser", action="store_true", help="only serve; print the URL")
    p.set_defaults(handler="wms.export.web:run_play")

    p = sub.add_parser("info", help="describe a bundle")
    p.add_argument("bundle", metavar="BUNDLE")
    p.set_defaults(handler="wms.bundle:run_info")

    p = sub.add_parser("demo", help="basic waves -> prepare -> train briefly -> render -> report")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of basic waves")
    p.add_argument("--max-minutes", type=float, default=2.0, help="training budget")
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
