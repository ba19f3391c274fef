"""Exports of a trained model for realtime engines and wavetable synths (``wms export``).

Four formats, each written to its own folder and each checked by a round trip
against the PyTorch model before the export is reported as done:

``rtneural``
    ``wms_model.json`` (the state_dict as nested lists, keys as in
    :class:`~wms.training.model.WMSNet`, read by RTNeural's ``torch_helpers``),
    ``wms_model.h`` (the matching ``RTNeural::ModelT`` type, a loader, the
    input-mapping constants and the output activation), ``wms_constants.json``
    (everything a host needs to map f0 / controls to model inputs) and
    ``wms_test_vectors.json`` (inputs -> expected pre-activation and final
    outputs). Checked by a numpy re-implementation of the forward pass that
    reads only the JSON files.
``onnx``
    ``wms_step.onnx``: one recurrent step ``(x[1, D], h[L, 1, H]) -> (y[1, K],
    h_out[L, 1, H])`` with the metadata in ``metadata_props``. Checked through
    onnxruntime, feeding ``h_out`` back.
``torchscript``
    ``wms_step.pt``: the same step, scripted, metadata in the ``_extra_files``
    entry ``wms_metadata.json``. Checked through ``torch.jit.load``.
``wavetable``
    ``wms_wavetable.wav``: a bank of single-cycle 2048-sample frames along a path
    through the control space, with Serum's ``clm `` and Surge's ``srge`` chunks.
    Checked by re-reading the WAV and comparing each frame's spectrum with the
    harmonic amplitudes the PyTorch model predicts.

Every export writes ``export_summary.json`` (files, max abs differences,
tolerances, pass/fail) and raises :class:`~wms.errors.ExportError` when a check
fails. Each format is one module (``rtneural``, ``onnx``, ``torchscript``,
``wavetable``); what they share (metadata from the bundle's model interface, check
inputs, the PyTorch reference, the summary) is :mod:`wms.export.common`.

Noise part: a model with ``features.noise_bands = B > 0`` has ``B`` noise band levels after
its ``K`` spectrum bins. The model formats carry all ``K + B`` outputs; the metadata
(``wms_constants.json``, ONNX ``metadata_props``, the TorchScript extra file) gains a
``noise`` object (:func:`wms.export.common.noise_metadata`: offset, band edges, generator,
filter design, level normalisation) and the C++ header the matching constants and a
reference implementation of the host algorithm (docs/EXPORT.md "The noise part"). The
wavetable bank holds only the harmonic part and says so. Harmonics-only models export
exactly as before.

Softplus: RTNeural has no Softplus layer. The RTNeural ``ModelT`` ends at the
last Dense layer; the header provides ``wms::softplus`` / ``wms::applyOutputActivation``
(PyTorch's Softplus, beta 1, threshold 20) for the host to apply to each output,
and the test vectors hold both the pre-activation and the final outputs. ONNX
and TorchScript contain the activation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from wms.errors import ExportError
from wms.export.common import CHECK_STEPS, SUMMARY_NAME, TOLERANCE, ExportResult
from wms.export.onnx import export_onnx
from wms.export.rtneural import export_rtneural
from wms.export.torchscript import export_torchscript
from wms.export.wavetable import export_wavetable
from wms.export.web import MODEL_FILE, WEB_ASSETS, export_web
from wms.io import refuse_to_replace_inputs

#: The export formats ``wms export --format`` accepts.
FORMATS = ("rtneural", "onnx", "torchscript", "wavetable", "web")
#: The files each format writes in its folder (besides export_summary.json).
OUTPUTS = {
    "rtneural": ("wms_model.json", "wms_model.h", "wms_constants.json", "wms_test_vectors.json"),
    "onnx": ("wms_step.onnx",),
    "torchscript": ("wms_step.pt",),
    "wavetable": ("wms_wavetable.wav", "wms_wavetable.json"),
    "web": (*WEB_ASSETS, MODEL_FILE),
}

__all__ = [
    "CHECK_STEPS",
    "FORMATS",
    "SUMMARY_NAME",
    "TOLERANCE",
    "ExportResult",
    "export",
    "export_onnx",
    "export_rtneural",
    "export_torchscript",
    "export_wavetable",
    "export_web",
    "run_export",
]


def export(bundle: Any, fmt: str, out_dir: str | Path, **options: Any) -> ExportResult:
    """Export a loaded bundle in format ``fmt`` (one of :data:`FORMATS`) to ``out_dir``.

    ``options`` go to the format's function (``n_steps``/``seed`` for model
    formats; ``n_frames``, ``control``, ``sample_format``, ``normalize`` for
    ``wavetable``).

    Raises:
        ExportError: unknown format, unknown option or failed check.
        OutputError: the folder cannot be written.
    """
    funcs = {
        "rtneural": export_rtneural,
        "onnx": export_onnx,
        "torchscript": export_torchscript,
        "wavetable": export_wavetable,
        "web": export_web,
    }
    if fmt not in funcs:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    allowed = {
        "wavetable": {"n_frames", "control", "sample_format", "normalize", "settle_steps"},
        "web": set(),
    }.get(fmt, {"n_steps", "seed"})
    unknown = set(options) - allowed
    if unknown:
        raise ExportError(f"--format {fmt} takes no option {', '.join(sorted(unknown))}")
    names = (*OUTPUTS[fmt], SUMMARY_NAME)
    refuse_to_replace_inputs([Path(out_dir) / n for n in names], [bundle.path])
    return funcs[fmt](bundle, out_dir, **options)


def run_export(args: Any) -> int:
    """``wms export BUNDLE --format FMT --out DIR``: load, export, check, report.

    Optional ``args`` fields (wavetable only): ``frames``, ``control``, ``wav_format``.
    """
    from wms.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    options: dict[str, Any] = {}
    if args.format == "wavetable":
        for opt, key in (
            ("frames", "n_frames"),
            ("control", "control"),
            ("wav_format", "sample_format"),
        ):
            if getattr(args, opt, None) is not None:
                options[key] = getattr(args, opt)
    if args.format != "wavetable":
        given = [
            o for o in ("frames", "control", "wav_format") if getattr(args, o, None) is not None
        ]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ExportError(f"--format {args.format} takes no option {flags} (wavetable only)")
    result = export(bundle, args.format, args.out, **options)
    print(f"wms export: {args.format} export of {args.bundle} written to {result.out_dir}/")
    for p in result.files:
        print(f"  {p.name}")
    for name, diff in result.checks.items():
        print(f"  check {name}: max abs diff {diff:.3g} (tolerance {result.tolerance:g})")
    if "open" in result.info:
        print(f"  open {result.info['open']} in a browser")
    for warning in result.info.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0
