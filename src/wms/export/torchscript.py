"""TorchScript export: the same one-step module as ONNX, scripted, for libtorch hosts.

``wms_step.pt`` carries the metadata in the ``_extra_files`` entry ``wms_metadata.json``;
checked through ``torch.jit.load`` over 1000 fed-back steps. A model with a noise part
returns ``y[1, K + B]`` (the band levels after the bins; the metadata's ``noise`` says how
to play them).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wms.errors import ExportError
from wms.export.common import (
    CHECK_STEPS,
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
from wms.io import atomic_target, writable_dir
from wms.training.model import WMSNet


class _Step(nn.Module):
    """One recurrent step of a WMSNet: ``(x[1, D], h[L, 1, H]) -> (y[1, K], h[L, 1, H])``."""

    def __init__(self, model: WMSNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_out = self.model(x.unsqueeze(1), h)
        return y.squeeze(1), h_out


def export_torchscript(
    bundle: Any, out_dir: str | Path, *, n_steps: int = CHECK_STEPS, seed: int = 0
) -> ExportResult:
    """Write ``wms_step.pt`` (scripted step, metadata in ``_extra_files["wms_metadata.json"]``).

    Checked by loading it back with ``torch.jit.load`` and stepping ``n_steps`` times.

    Raises:
        OutputError: the folder cannot be written.
        ExportError: a difference exceeds :data:`TOLERANCE`.
    """
    out = writable_dir(out_dir)
    model = eval_copy(bundle.model)
    meta = export_metadata(bundle)
    path = out / "wms_step.pt"
    # TorchScript is deprecated in PyTorch but is what libtorch (C++) loads; the
    # warning is expected here and says nothing about this export.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.\w+` is deprecated", DeprecationWarning)
        scripted = torch.jit.script(_Step(model).eval())
        with atomic_target(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={"wms_metadata.json": json.dumps(meta)})
        extra = {"wms_metadata.json": ""}
        loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if json.loads(extra["wms_metadata.json"]) != json.loads(json.dumps(meta)):
        raise ExportError(f"{path}: the metadata read back differs from what was written")

    inputs = check_inputs(bundle, n_steps, seed=seed)
    ref = torch_reference(model, inputs)

    @torch.no_grad()
    def step(x: np.ndarray, h: np.ndarray):
        y, h2 = loaded(torch.from_numpy(x), torch.from_numpy(np.asarray(h)))
        return y.numpy(), h2.numpy()

    h0 = np.zeros((model.num_layers, 1, model.hidden_size), dtype=np.float32)
    y, h = step_loop(step, inputs, h0)
    checks = {
        "torchscript_vs_torch_outputs": max_diff(y, ref["y"]),
        "torchscript_vs_torch_state": max_diff(h, ref["h"]),
    }
    return finish("torchscript", out, [path], checks, TOLERANCE, {"n_steps": n_steps})
