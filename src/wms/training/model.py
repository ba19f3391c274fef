"""The timbre -> spectrum network (docs/DESIGN.md §2).

Linear(in -> enc) + ReLU -> GRU(enc -> hidden, L layers) -> Linear(hidden -> hidden) + ReLU
-> Linear(hidden -> K) + output activation (Softplus by default).

The state_dict key names (``input_encoder.0.``, ``gru.``, ``dense_layers.0.``,
``dense_layers.2.``) are the ones RTNeural's ``torch_helpers::loadDense/loadGRU``
read from the exported JSON; do not rename the submodules.
"""

from __future__ import annotations

import torch
from torch import nn

from wms.config import ModelConfig

_ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "none": nn.Identity}


class WMSNet(nn.Module):
    """GRU network mapping control frames to log1p magnitude spectra.

    Args:
        n_inputs: D, the model input width (timbre controls + log-pitch [+ voicedness]).
        n_outputs: K, the number of spectrum bins predicted.
        encoder_size, hidden_size, num_layers, dropout: layer sizes; dropout acts
            between GRU layers (only when ``num_layers > 1``) and after the dense layer.
        output_activation: ``"softplus"``, ``"relu"`` or ``"none"``.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        encoder_size: int = 256,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        output_activation: str = "softplus",
    ):
        super().__init__()
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.output_activation = output_activation
        self.input_encoder = nn.Sequential(nn.Linear(n_inputs, encoder_size), nn.ReLU())
        self.gru = nn.GRU(
            encoder_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dense_layers = nn.Sequential(
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, n_outputs),
            _ACTIVATIONS[output_activation](),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @classmethod
    def from_config(cls, n_inputs: int, n_outputs: int, cfg: ModelConfig) -> WMSNet:
        return cls(
            n_inputs,
            n_outputs,
            encoder_size=cfg.encoder_size,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout,
            output_activation=cfg.output_activation,
        )

    def initial_state(self, batch_size: int = 1) -> torch.Tensor:
        """Zero GRU state ``[num_layers, batch, hidden]``."""
        p = next(self.parameters())
        return torch.zeros(
            self.num_layers, batch_size, self.hidden_size, dtype=p.dtype, device=p.device
        )

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, T, D]`` (and optional ``h[L, B, H]``) -> ``(y[B, T, K], h[L, B, H])``."""
        z = self.input_encoder(x)
        z, h = self.gru(z, h)
        z = self.dense_layers[1](self.dense_layers[0](z))
        z = self.dropout(z)
        y = self.dense_layers[3](self.dense_layers[2](z))
        return y, h

    def step(
        self, x: torch.Tensor, h: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: ``x[B, D]`` -> ``(y[B, K], h[L, B, H])``."""
        y, h = self.forward(x.unsqueeze(1), h)
        return y.squeeze(1), h


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
