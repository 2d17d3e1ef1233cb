"""The networks of AudDSR beyond the VQ-VAE-2 (asdflow.simulation.vqvae2).

- `ObjectSpecificDecoder`: DSR's subspace restriction (a small network per level
  that pulls possibly anomalous quantized features back towards the normal ones),
  re-quantisation with the frozen VQ-VAE-2 codebooks, and its own decoder; trained
  to output the *normal* spectrogram from codebook-sampled anomalous features.
- `AnomalyUNet`: the anomaly-detection module, a small U-Net over the general
  decoder's output and the object-specific reconstruction (2 channels), giving an
  anomaly logit map on the bottom code grid (1/4 of the spectrogram's resolution).
- `focal_loss`: binary focal loss (Lin et al. 2017) on that map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asdflow.simulation.vqvae2 import GeneralDecoder, ResidualBlock, VectorQuantizerEMA


class SubspaceRestriction(nn.Module):
    """Quantized features -> features of the same shape, meant to lie in the normal subspace."""

    def __init__(self, dim: int, hidden: int, n_residual: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1), *[ResidualBlock(hidden) for _ in range(n_residual)], nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def straight_through(quantizer: VectorQuantizerEMA, z: torch.Tensor) -> torch.Tensor:
    """Quantise with a frozen codebook, passing gradients straight through to z."""
    quantized, _ = quantizer.quantize(z)
    return z + (quantized - z).detach()


class ObjectSpecificDecoder(nn.Module):
    def __init__(self, dim: int, hidden: int, n_residual: int = 1):
        super().__init__()
        self.restrict_top = SubspaceRestriction(dim, hidden, n_residual)
        self.restrict_bottom = SubspaceRestriction(dim, hidden, n_residual)
        self.upsample_top = nn.ConvTranspose2d(dim, dim, 4, 2, 1)
        self.decoder = GeneralDecoder(2 * dim, hidden, n_residual)

    def forward(
        self, top: torch.Tensor, bottom: torch.Tensor, quantizer_top: VectorQuantizerEMA, quantizer_bottom: VectorQuantizerEMA
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (restricted top features, restricted bottom features, restored standardised spectrogram)."""
        restricted_top = self.restrict_top(top)
        restricted_bottom = self.restrict_bottom(bottom)
        joined = torch.cat(
            [self.upsample_top(straight_through(quantizer_top, restricted_top)), straight_through(quantizer_bottom, restricted_bottom)],
            dim=1,
        )
        return restricted_top, restricted_bottom, self.decoder(joined)


def _double_conv(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU(),
        nn.Conv2d(n_out, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU(),
    )


MAP_FACTOR = 4  # the anomaly map's cells are MAP_FACTOR x MAP_FACTOR spectrogram cells (the bottom code grid)


class AnomalyUNet(nn.Module):
    """(batch, 2, H, W) -> (batch, 1, H/4, W/4) anomaly logits; H and W multiples of 16.

    A strided stem brings the input to the bottom code grid (codebook sampling changes
    whole 4x4 or 8x8 cells, so a finer map would learn nothing more), then a two-level
    U-Net: full-resolution convolutions with few channels are memory-bound and cost
    most of the time on a CPU, for no gain here.
    """

    def __init__(self, channels: int = 16, in_channels: int = 2):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 4, 2, 1), nn.ReLU()
        )
        self.down1 = _double_conv(c, c)
        self.down2 = _double_conv(c, 2 * c)
        self.middle = _double_conv(2 * c, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2)
        self.merge2 = _double_conv(4 * c, 2 * c)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, 2)
        self.merge1 = _double_conv(2 * c, c)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(self.stem(x))
        d2 = self.down2(F.max_pool2d(d1, 2))
        m = self.middle(F.max_pool2d(d2, 2))
        u2 = self.merge2(torch.cat([self.up2(m), d2], dim=1))
        u1 = self.merge1(torch.cat([self.up1(u2), d1], dim=1))
        return self.head(u1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean binary focal loss: cross-entropy scaled by (1 - p_true)^gamma, so easy cells count little."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-ce)
    return ((1 - p_true) ** gamma * ce).mean()
