"""The network: a dense autoencoder over stacked log-mel frames that sees a condition vector.

The condition (domain + attribute one-hots, or a pseudo-label) is concatenated to
the bottleneck, so the decoder reconstructs "this machine in this condition";
with `condition_encoder` it is also concatenated to the input.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    # BatchNorm settings of the DCASE baseline (momentum 0.01, eps 1e-3)
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3), nn.ReLU()]


class ConditionalAutoencoder(nn.Module):
    def __init__(
        self,
        input_dim: int,
        condition_dim: int,
        hidden_size: int = 128,
        n_hidden_layers: int = 3,
        bottleneck_size: int = 16,
        condition_encoder: bool = True,
    ):
        super().__init__()
        self.condition_encoder = condition_encoder
        encoder: list[nn.Module] = []
        width = input_dim + (condition_dim if condition_encoder else 0)
        for _ in range(n_hidden_layers):
            encoder += _block(width, hidden_size)
            width = hidden_size
        encoder += _block(width, bottleneck_size)
        decoder: list[nn.Module] = []
        width = bottleneck_size + condition_dim
        for _ in range(n_hidden_layers):
            decoder += _block(width, hidden_size)
            width = hidden_size
        decoder.append(nn.Linear(width, input_dim))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x (n, input_dim), condition (n, condition_dim) -> reconstruction of x."""
        encoded = self.encoder(torch.cat([x, condition], dim=1) if self.condition_encoder else x)
        return self.decoder(torch.cat([encoded, condition], dim=1))
