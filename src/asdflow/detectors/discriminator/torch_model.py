"""The classifier of the discriminator family and the pooling of frozen encoder maps into one vector."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def pooled_features(maps: list[torch.Tensor], freq_bins: int) -> torch.Tensor:
    """Each (N, C, H, W) encoder map -> average-pooled to <= freq_bins mel bands, then mean and max over
    time: (N, sum_maps 2 * C * bands). Mean sees a changed texture, max a short localised event."""
    parts = []
    for m in maps:
        bands = min(freq_bins, m.shape[2])
        m = F.adaptive_avg_pool2d(m, (bands, m.shape[3]))
        parts += [m.mean(dim=3).flatten(1), m.amax(dim=3).flatten(1)]
    return torch.cat(parts, dim=1)


class PatchClassifier(nn.Module):
    """4 fully connected layers: in -> h1 -> h2 -> h3 -> 1 logit (anomalous)."""

    def __init__(self, input_dim: int, hidden_sizes: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
