"""RTNeural export: the state_dict as JSON, the matching ``ModelT`` type, test vectors.

``wms_model.json`` holds the state_dict as nested lists with the key names RTNeural's
``torch_helpers::loadDense/loadGRU`` read; ``wms_model.h`` (from ``templates/wms_model.h.in``)
the ``RTNeural::ModelT`` type, a loader, the input-mapping constants and the output
activation; ``wms_constants.json`` everything a host needs; ``wms_test_vectors.json``
inputs -> expected pre-activation and final outputs. Checked by a numpy re-implementation
of the forward pass that reads only the JSON files (:func:`~wms.export.common.numpy_forward`).

RTNeural has no Softplus layer: the ``ModelT`` ends at the last Dense layer and the header's
``wms::applyOutputActivation`` applies PyTorch's Softplus (beta 1, threshold 20) on the host.

A model with a noise part: ``kNumBins`` stays the ``ModelT``'s output width (``K + B``, so
host code written for harmonics-only headers still compiles), ``kNumSpectrumBins`` is ``K``,
and ``templates/wms_noise.h.in`` adds the noise constants and the host reference
implementation (``designNoiseFilters``, ``levelScale``, ``NoiseVoice``). A harmonics-only
header is what wms wrote before, byte for byte.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from wms import __version__
from wms.export.common import (
    CHECK_STEPS,
    PHASE_LAW,
    SOFTPLUS_THRESHOLD,
    TOLERANCE,
    ExportResult,
    check_inputs,
    eval_copy,
    export_metadata,
    finish,
    float32_lists,
    max_diff,
    max_scaled_diff,
    numpy_forward,
    torch_reference,
)
from wms.io import writable_dir, write_text
from wms.training.model import WMSNet, count_parameters

TEMPLATES = Path(__file__).with_name("templates")
_ACTIVATION_BODY = {
    "softplus": "y[k] = softplus(y[k]);",
    "relu": "y[k] = y[k] > 0.0f ? y[k] : 0.0f;",
    "none": "(void)y[k];",
}


def rtneural_state_dict(model: WMSNet) -> dict[str, Any]:
    """The state_dict as JSON data: tensor name -> nested lists of float32.

    For GRU layers after the first, RTNeural's ``loadGRU`` reads the fixed suffix
    ``weight_ih_l0``; those layers are therefore also written under aliases
    ``gru_l{i}.weight_ih_l0`` etc. (same values as ``gru.weight_ih_l{i}``).
    """
    sd = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    out = {k: float32_lists(v) for k, v in sd.items()}
    for layer in range(1, model.num_layers):
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            out[f"gru_l{layer}.{p}_l0"] = out[f"gru.{p}_l{layer}"]
    return out


def rtneural_layers(model: WMSNet) -> list[tuple[str, str | None]]:
    """The RTNeural layer types, in ``ModelT`` order, with the JSON key prefix each loads from."""
    d, k = model.n_inputs, model.n_outputs
    e, h = model.input_encoder[0].out_features, model.hidden_size
    layers: list[tuple[str, str | None]] = [
        (f"RTNeural::DenseT<float, {d}, {e}>", "input_encoder.0."),
        (f"RTNeural::ReLuActivationT<float, {e}>", None),
    ]
    for layer in range(model.num_layers):
        prefix = "gru." if layer == 0 else f"gru_l{layer}."
        layers.append((f"RTNeural::GRULayerT<float, {e if layer == 0 else h}, {h}>", prefix))
    layers += [
        (f"RTNeural::DenseT<float, {h}, {h}>", "dense_layers.0."),
        (f"RTNeural::ReLuActivationT<float, {h}>", None),
        (f"RTNeural::DenseT<float, {h}, {k}>", "dense_layers.2."),
    ]
    return layers


def rtneural_model_type(model: WMSNet) -> str:
    """The C++ ``RTNeural::ModelT<...>`` type matching ``model`` (without the output activation)."""
    inner = ",\n    ".join(t for t, _ in rtneural_layers(model))
    return f"RTNeural::ModelT<float, {model.n_inputs}, {model.n_outputs},\n    {inner}>"


def _cpp_str(s: str) -> str:
    """A C++ string literal (JSON's escaping is valid C++ for these names)."""
    return json.dumps(s)


def rtneural_header(bundle: Any) -> str:
    """The C++ header: constants, input mapping, ``ModelType``, ``loadModel``, output activation.

    Filled from ``templates/wms_model.h.in``. Everything RTNeural-specific sits in
    ``#ifndef WMS_NO_RTNEURAL`` so the constants and helpers can be used (and tested)
    without RTNeural.
    """
    m, cfg, i = bundle.model, bundle.config, bundle.interface
    loads = []
    for k, (tp, prefix) in enumerate(rtneural_layers(m)):
        if prefix is None:
            continue
        fn = "loadGRU" if "GRULayerT" in tp else "loadDense"
        loads.append(
            f"    RTNeural::torch_helpers::{fn}<float>(modelJson, {_cpp_str(prefix)}, model.get<{k}>());"
        )
    ranges = ", ".join(f"{{{lo!r}f, {hi!r}f}}" for lo, hi in float32_lists(i.control_ranges))
    template = string.Template((TEMPLATES / "wms_model.h.in").read_text())
    return template.substitute(
        wms_version=__version__,
        n_inputs=m.n_inputs,
        n_outputs=m.n_outputs,
        **_noise_fields(bundle),
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        voicedness_plus=" + voicedness" if i.include_voicedness else "",
        voicedness_comma=", voicedness" if i.include_voicedness else "",
        cycles=cfg.features.cycles_per_window,
        bins_per_harmonic=i.outputs.bins_per_harmonic,
        n_fft=cfg.features.n_fft,
        table_size=cfg.synth.table_size,
        phase_law=PHASE_LAW[cfg.synth.phases],
        sample_rate=repr(float(i.sample_rate)),
        n_controls=i.n_timbre,
        include_voicedness="true" if i.include_voicedness else "false",
        fmin=repr(float(np.float32(i.fmin))),
        log_eps=repr(i.log_pitch_eps),
        control_names=", ".join(_cpp_str(n) for n in i.control_names) or '""',
        control_ranges=ranges or "{0.0f, 0.0f}",
        softplus_threshold=repr(SOFTPLUS_THRESHOLD),
        activation=m.output_activation,
        activation_body=_ACTIVATION_BODY[m.output_activation],
        model_type=rtneural_model_type(m).replace("\n", "\n    "),
        load_calls="\n".join(loads),
        model_bytes_note=f"about {4 * count_parameters(m) / 2**20:.1f} MiB for these weights",
    )


def _noise_fields(bundle: Any) -> dict[str, str]:
    """The header's noise-dependent parts: empty (the harmonics-only header, unchanged) or the
    noise constants and host reference implementation (``templates/wms_noise.h.in``)."""
    i, k = bundle.interface, bundle.interface.outputs.n_bins
    if not i.n_noise:
        return {
            "outputs_desc": f"{i.n_outputs} log1p magnitude bins",
            "bins_comment": "K log1p magnitude bins",
            "noise_includes": "",
            "noise_shape": "",
            "harmonic_bins": "kNumBins",
            "noise_section": "",
        }
    from wms.export.common import noise_metadata

    nm = noise_metadata(i, bundle.config.synth.noise_stages)
    section = string.Template((TEMPLATES / "wms_noise.h.in").read_text()).substitute(
        n_noise=i.n_noise,
        noise_edges=", ".join(repr(float(e)) for e in nm["band_edges_hz"]),
        stage_q=repr(nm["filter"]["stage_q"]),
        stages=nm["filter"]["stages"],
        source_variance=repr(nm["generator"]["source_variance"]),
        gain_samples=nm["filter"]["gain_samples"],
        lcg_a=nm["generator"]["lcg_a"],
        lcg_c=nm["generator"]["lcg_c"],
        seed_multiplier=nm["generator"]["seed_multiplier"],
        table_rms=repr(float(nm["level"]["table_rms"])),
        level_floor=repr(float(nm["level"]["level_floor"])),
        band_edge=repr(float(nm["filter"]["band_edge"])),
    )
    return {
        "outputs_desc": f"{i.n_outputs} outputs ({k} log1p magnitude bins, then {i.n_noise} "
        "log1p noise band levels)",
        "bins_comment": "all outputs: kNumSpectrumBins, then kNoiseBands",
        "noise_includes": "#include <cstdint>\n",
        "noise_shape": f"constexpr int kNumSpectrumBins = {k};   // K log1p magnitude bins\n",
        "harmonic_bins": "kNumSpectrumBins",
        "noise_section": section,
    }


def export_rtneural(
    bundle: Any, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write the RTNeural JSON, C++ header, constants and test vectors, then check them.

    The check re-implements the forward pass in numpy from ``wms_model.json`` and
    the inputs in ``wms_test_vectors.json`` alone (:func:`numpy_forward`) and
    compares pre-activation and final outputs and the final state with PyTorch
    over ``n_steps`` steps.

    Raises:
        OutputError: the folder cannot be written.
        ExportError: a difference exceeds :data:`TOLERANCE`.
    """
    out = writable_dir(out_dir)
    model = eval_copy(bundle.model)
    inputs = check_inputs(bundle, n_steps, seed=seed)
    ref = torch_reference(model, inputs)
    meta = export_metadata(bundle)
    meta["rtneural"] = {
        "model_type": rtneural_model_type(model),
        "layers": [{"type": t, "json_prefix": p} for t, p in rtneural_layers(model)],
        "softplus": "not in ModelT: apply wms::applyOutputActivation to the outputs",
    }
    vectors = {
        "description": "x[t] -> ModelT outputs (pre_activation) -> output activation (outputs); "
        "state starts at zero and is carried from step to step",
        "n_steps": n_steps,
        "output_activation": model.output_activation,
        "inputs": float32_lists(inputs),
        "pre_activation": float32_lists(ref["pre"]),
        "outputs": float32_lists(ref["y"]),
        "final_state": float32_lists(ref["h"]),
    }
    files = [
        write_text(out / "wms_model.json", json.dumps(rtneural_state_dict(model))),
        write_text(out / "wms_model.h", rtneural_header(bundle)),
        write_text(out / "wms_constants.json", json.dumps(meta, indent=2) + "\n"),
        write_text(out / "wms_test_vectors.json", json.dumps(vectors)),
    ]
    # The check reads back only what was written.
    weights = json.loads((out / "wms_model.json").read_text())
    tv = json.loads((out / "wms_test_vectors.json").read_text())
    got = numpy_forward(
        weights,
        np.asarray(tv["inputs"], dtype=np.float32),
        num_layers=model.num_layers,
        output_activation=model.output_activation,
    )
    checks = {
        "numpy_from_json_vs_torch_outputs": max_diff(got["y"], ref["y"]),
        # relative above 1: pre-activations of silent bins reach -20 and more
        "numpy_from_json_vs_torch_pre_activation_scaled": max_scaled_diff(got["pre"], ref["pre"]),
        "numpy_from_json_vs_torch_state": max_diff(got["h"], ref["h"]),
        "test_vectors_vs_torch": max_diff(tv["outputs"], ref["y"]),
    }
    return finish("rtneural", out, files, checks, TOLERANCE, {"n_steps": n_steps})
