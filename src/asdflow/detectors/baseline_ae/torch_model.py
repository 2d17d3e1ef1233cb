"""The network of the DCASE Task 2 baseline: dense autoencoder over stacked log-mel frames."""

from __future__ import annotations

from torch import nn


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    # BatchNorm settings of the official baseline (momentum 0.01, eps 1e-3)
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3), nn.ReLU()]


class DenseAutoencoder(nn.Module):
    """input -> [Linear+BN+ReLU hidden] x n -> bottleneck -> mirror -> Linear(input)."""

    def __init__(self, input_dim: int, hidden_size: int = 128, n_hidden_layers: int = 4, bottleneck_size: int = 8):
        super().__init__()
        encoder: list[nn.Module] = []
        width = input_dim
        for _ in range(n_hidden_layers):
            encoder += _block(width, hidden_size)
            width = hidden_size
        encoder += _block(width, bottleneck_size)
        decoder: list[nn.Module] = []
        width = bottleneck_size
        for _ in range(n_hidden_layers):
            decoder += _block(width, hidden_size)
            width = hidden_size
        decoder.append(nn.Linear(width, input_dim))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x):
        return self.decoder(self.encoder(x))
