"""The encoder-decoder on normalised log-mel patches, trained on normal patches with SSIM + L1.

- `ssim`: structural similarity in torch with a gaussian window (Wang et al. 2004),
  per image, on standardised log-mels (`data_range` sets the stabilising constants).
- `SpectrogramAutoencoder`: stride-2 conv blocks down to a spatial latent
  (latent_channels x n_mels/2^L x frames/2^L), transposed convs back up. Inputs whose
  sides are not multiples of 2^L are padded (replicate) and the output cropped back.
- `train_autoencoder`: Adam on loss = ssim_weight * (1 - SSIM) + l1_weight * L1.
The encoder is what the discriminator family freezes; `encoder_features` gives every
block's activation map for pooling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from asdflow.simulation.config import EncoderDecoderConfig

SSIM_DATA_RANGE = 4.0  # standardised log-mels span roughly +-2 sigma


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The 1-D gaussian (size,), normalised; the 2-D window is its outer product (separable)."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def blur_matrix(n: int, window: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix B with (v @ B) = v blurred by the 1-D gaussian, replicate padding folded in."""
    g = gaussian_window(window, sigma)
    pad = window // 2
    matrix = torch.zeros(n, n)
    for out in range(n):
        for k in range(window):
            matrix[min(max(out + k - pad, 0), n - 1), out] += g[k]
    return matrix


_BLUR_CACHE: dict[tuple[int, int, float], torch.Tensor] = {}


def _blur(n: int, window: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    key = (n, window, float(sigma))
    if key not in _BLUR_CACHE:
        _BLUR_CACHE[key] = blur_matrix(n, window, sigma)
    return _BLUR_CACHE[key].to(dtype=like.dtype, device=like.device)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5,
         data_range: float = SSIM_DATA_RANGE) -> torch.Tensor:
    """Mean SSIM per image of (N, 1, H, W) tensors -> (N,); 1 = identical.

    The separable gaussian blur (replicate padding) runs as two matrix products over the five
    maps stacked in one batch: single-channel conv2d is ~20x slower on CPU and dominated training.
    """
    h, w = x.shape[-2:]
    n = x.shape[0]
    stacked = torch.cat([x, y, x * x, y * y, x * y])
    blurred = _blur(h, window, sigma, x).T @ (stacked @ _blur(w, window, sigma, x))
    mu_x, mu_y, xx, yy, xy = blurred.split(n)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


def reconstruction_loss(x: torch.Tensor, y: torch.Tensor, params: EncoderDecoderConfig,
                        reduce: bool = True) -> torch.Tensor:
    """ssim_weight * (1 - SSIM) + l1_weight * mean |x - y|, per image or averaged."""
    per_image = params.l1_weight * (x - y).abs().flatten(1).mean(dim=1)
    if params.ssim_weight:
        per_image = per_image + params.ssim_weight * (1 - ssim(x, y, params.ssim_window, params.ssim_sigma))
    return per_image.mean() if reduce else per_image


class SpectrogramAutoencoder(nn.Module):
    def __init__(self, channels: list[int], latent_channels: int):
        super().__init__()
        self.factor = 2 ** len(channels)
        blocks, width = [], 1
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv2d(width, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)))
            width = c
        self.blocks = nn.ModuleList(blocks)
        self.to_latent = nn.Conv2d(width, latent_channels, 1)
        up: list[nn.Module] = [nn.Conv2d(latent_channels, width, 1), nn.LeakyReLU(0.2)]
        for c in list(reversed(channels))[1:]:
            up += [nn.ConvTranspose2d(width, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width = c
        up.append(nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*up)

    @classmethod
    def from_config(cls, params: EncoderDecoderConfig) -> "SpectrogramAutoencoder":
        return cls(list(params.channels), params.latent_channels)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's activation map of (N, 1, H, W) input, then the latent."""
        maps, h = [], self._pad(x)
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        maps.append(self.to_latent(h))
        return maps

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_features(x)[-1]

    def decode(self, z: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        return self.decoder(z)[..., : shape[0], : shape[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), tuple(x.shape[-2:]))


def train_autoencoder(
    patches: np.ndarray, params: EncoderDecoderConfig, seed: int = 0, progress: bool = False,
    desc: str = "encoder-decoder",
) -> tuple[SpectrogramAutoencoder, list[float]]:
    """Fit on normalised patches (N, n_mels, frames); returns the model (eval mode) and loss per epoch."""
    from asdflow.progress import progress_bar

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SpectrogramAutoencoder.from_config(params)
    data = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))[:, None]
    optimiser = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    history: list[float] = []
    model.train()
    bar = progress_bar(range(params.epochs), desc=desc, enabled=progress)
    for _ in bar:
        total = 0.0
        for idx in torch.randperm(len(data), generator=generator).split(params.batch_size):
            batch = data[idx]
            loss = reconstruction_loss(model(batch), batch, params)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        history.append(total / len(data))
        if not math.isfinite(history[-1]):
            from asdflow.errors import DetectorError

            raise DetectorError(f"encoder-decoder training diverged (loss {history[-1]}) after {len(history)} epochs")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, history
