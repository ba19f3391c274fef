"""ONNX export: one recurrent step ``(x[1, D], h[L, 1, H]) -> (y[1, K], h_out[L, 1, H])``
(``y[1, K + B]`` for a model with a noise part of ``B`` bands: the levels follow the bins).

The graph is built node by node from the weights (Gemm, Split, Sigmoid, Tanh; PyTorch's
(r, z, n) gate order), so no exporter and no gate reordering is involved; the metadata
(``wms.export.common.export_metadata``) rides in ``metadata_props``. Checked through
onnxruntime, feeding ``h_out`` back for 1000 steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wms import __version__
from wms.errors import ExportError
from wms.export.common import (
    CHECK_STEPS,
    EXPORT_FORMAT_VERSION,
    SOFTPLUS_THRESHOLD,
    TOLERANCE,
    ExportResult,
    check_inputs,
    eval_copy,
    export_metadata,
    finish,
    max_diff,
    step_loop,
    torch_reference,
)
from wms.io import writable_dir, write_bytes
from wms.training.model import WMSNet

_ONNX_OPSET = 17
_ONNX_IR_VERSION = 8  # the oldest IR that carries opset 17: loads in older runtimes too
_DOC = "WMS one recurrent step: (x[1, D], h[L, 1, H]) -> (y[1, K] log1p spectrum, h_out)"


def onnx_step_model(model: WMSNet, metadata: Mapping[str, Any]) -> Any:
    """One recurrent step as an ONNX graph, built node by node from the weights.

    Inputs ``x[1, D]``, ``h[L, 1, H]``; outputs ``y[1, K]`` (after the output
    activation) and ``h_out[L, 1, H]``. The GRU is written with elementary ops
    (Gemm, Split, Sigmoid, Tanh) in PyTorch's (r, z, n) gate order, so no
    exporter and no gate reordering is involved. Opset 17, IR version 8.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = eval_copy(model)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    d, k, hsz, n_layers = model.n_inputs, model.n_outputs, model.hidden_size, model.num_layers
    inits = [numpy_helper.from_array(v.astype(np.float32), name=name) for name, v in sd.items()]
    inits.append(numpy_helper.from_array(np.array([hsz, hsz, hsz], dtype=np.int64), "split3"))
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
    nodes = []

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    v = node("Gemm", ["x", "input_encoder.0.weight", "input_encoder.0.bias"], "enc_lin", transB=1)
    v = node("Relu", [v], "enc")
    h_outs = []
    for layer in range(n_layers):
        idx = f"layer{layer}_idx"
        inits.append(numpy_helper.from_array(np.array(layer, dtype=np.int64), idx))
        h_prev = node("Gather", ["h", idx], f"h{layer}", axis=0)  # [1, H]
        p = f"gru.{{}}_l{layer}"
        gi = node("Gemm", [v, p.format("weight_ih"), p.format("bias_ih")], f"gi{layer}", transB=1)
        gh = node(
            "Gemm", [h_prev, p.format("weight_hh"), p.format("bias_hh")], f"gh{layer}", transB=1
        )
        gis = [f"gi{layer}_{g}" for g in "rzn"]
        ghs = [f"gh{layer}_{g}" for g in "rzn"]
        nodes.append(
            helper.make_node("Split", [gi, "split3"], gis, name=f"split_gi{layer}", axis=1)
        )
        nodes.append(
            helper.make_node("Split", [gh, "split3"], ghs, name=f"split_gh{layer}", axis=1)
        )
        r = node("Sigmoid", [node("Add", [gis[0], ghs[0]], f"r_in{layer}")], f"r{layer}")
        z = node("Sigmoid", [node("Add", [gis[1], ghs[1]], f"z_in{layer}")], f"z{layer}")
        rn = node("Mul", [r, ghs[2]], f"rn{layer}")
        n = node("Tanh", [node("Add", [gis[2], rn], f"n_in{layer}")], f"n{layer}")
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        zd = node("Mul", [z, node("Sub", [h_prev, n], f"hmn{layer}")], f"zd{layer}")
        v = node("Add", [n, zd], f"hnew{layer}")
        h_outs.append(node("Unsqueeze", [v, "axis0"], f"hnew{layer}_3d"))
    node("Concat", h_outs, "h_out", axis=0)
    v = node("Gemm", [v, "dense_layers.0.weight", "dense_layers.0.bias"], "d0", transB=1)
    v = node("Relu", [v], "d0_relu")
    pre = node("Gemm", [v, "dense_layers.2.weight", "dense_layers.2.bias"], "pre", transB=1)
    act = model.output_activation
    if act == "softplus":
        # PyTorch's threshold: x above 20 passes through (also keeps exp from overflowing).
        inits.append(
            numpy_helper.from_array(np.array(SOFTPLUS_THRESHOLD, dtype=np.float32), "sp_threshold")
        )
        sp = node("Softplus", [pre], "pre_softplus")
        above = node("Greater", [pre, "sp_threshold"], "pre_above")
        node("Where", [above, pre, sp], "y")
    elif act == "relu":
        node("Relu", [pre], "y")
    else:
        node("Identity", [pre], "y")

    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "wms_step",
        [
            helper.make_tensor_value_info("x", f, [1, d]),
            helper.make_tensor_value_info("h", f, [n_layers, 1, hsz]),
        ],
        [
            helper.make_tensor_value_info("y", f, [1, k]),
            helper.make_tensor_value_info("h_out", f, [n_layers, 1, hsz]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="wms",
        producer_version=__version__,
        doc_string=_DOC
        if "noise" not in metadata
        else f"WMS one recurrent step: (x[1, D], h[L, 1, H]) -> (y[1, K + B] log1p spectrum "
        f"(K = {metadata['spectrum']['n_bins']}) then log1p noise band levels "
        f"(B = {metadata['noise']['n_bands']}), h_out)",
    )
    proto.ir_version = _ONNX_IR_VERSION
    onnx.helper.set_model_props(proto, _flat_metadata(metadata))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX graph built for the model is invalid: {e}") from None
    return proto


def _flat_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """String key/value pairs (ONNX metadata_props); the full metadata under ``wms_metadata``.

    A model with a noise part also gets ``n_noise``, ``noise_offset`` and ``noise`` (JSON:
    the band edges and the host algorithm's constants, :func:`~wms.export.common.noise_metadata`).
    """
    props = {
        "wms_version": __version__,
        "wms_export_format_version": str(EXPORT_FORMAT_VERSION),
        "control_names": json.dumps(meta["inputs"]["control_names"]),
        "input_mapping": json.dumps(meta["inputs"]),
        "input_map": json.dumps(meta["input_map"]),
        "cycles_per_table": str(meta["spectrum"]["cycles_per_table"]),
        "n_bins": str(meta["spectrum"]["n_bins"]),
        "sample_rate": str(meta["spectrum"]["analysis_sample_rate"]),
        "output_activation": meta["model"]["output_activation"],
        "wms_metadata": json.dumps(meta),
    }
    if "noise" in meta:
        props["n_noise"] = str(meta["noise"]["n_bands"])
        props["noise_offset"] = str(meta["noise"]["offset"])
        props["noise"] = json.dumps(meta["noise"])
    return props


def export_onnx(
    bundle: Any, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write ``wms_step.onnx`` and check it through onnxruntime over ``n_steps`` steps.

    Raises:
        OutputError: the folder cannot be written.
        ExportError: a difference exceeds :data:`TOLERANCE`.
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    out = writable_dir(out_dir)
    model = eval_copy(bundle.model)
    meta = export_metadata(bundle)
    proto = onnx_step_model(model, meta)
    path = write_bytes(out / "wms_step.onnx", proto.SerializeToString())

    inputs = check_inputs(bundle, n_steps, seed=seed)
    ref = torch_reference(model, inputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as e:
        raise ExportError(f"{path}: onnxruntime cannot load the export ({e})") from None
    loaded = sess.get_modelmeta().custom_metadata_map
    if json.loads(loaded.get("wms_metadata", "null")) != json.loads(json.dumps(meta)):
        raise ExportError(f"{path}: the metadata read back differs from what was written")

    def step(x: np.ndarray, h: np.ndarray):
        return sess.run(["y", "h_out"], {"x": x.astype(np.float32), "h": h})

    h0 = np.zeros((model.num_layers, 1, model.hidden_size), dtype=np.float32)
    y, h = step_loop(step, inputs, h0)
    checks = {
        "onnxruntime_vs_torch_outputs": max_diff(y, ref["y"]),
        "onnxruntime_vs_torch_state": max_diff(h, ref["h"]),
    }
    return finish(
        "onnx", out, [path], checks, TOLERANCE, {"n_steps": n_steps, "opset": _ONNX_OPSET}
    )
