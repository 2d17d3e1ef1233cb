"""A two-level VQ-VAE (VQ-VAE-2) over log-mel spectrograms, as DSR / AudDSR use it.

Input: log-mel patches (batch, 1, n_mels, frames), in dB; the model standardises
them per mel bin with statistics of the training clips (`set_scaler`), kept as
buffers so a saved model carries them.

- bottom level: the encoder halves both axes twice (1/4 resolution);
- top level: once more (1/8 resolution);
- each level has its own vector quantiser with an EMA codebook update
  (van den Oord et al. 2017, appendix; the codebook gets no gradient, the
  encoder a commitment loss and the straight-through gradient);
- the bottom quantiser sees the bottom encoder features together with the
  decoded top level (so the bottom codes carry the detail the top lacks);
- the general decoder maps (top, bottom) quantized features back to the
  standardised spectrogram.

Both axes of an input must be multiples of 8 (`pad_to_multiple` pads time;
128 or 64 mels already are). Training (`train_vqvae2`) is deterministic for a seed
on one thread: the weights, the codebooks and the crops come from seeded generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asdflow.errors import DetectorError
from asdflow.progress import progress_bar

DOWNSAMPLING = 8  # the top level's stride along both axes


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VectorQuantizerEMA(nn.Module):
    """Nearest-codebook quantisation with EMA codebook updates and a commitment loss.

    `forward(z)` with z (batch, dim, H, W) returns (straight-through quantized z,
    commitment loss, code indices (batch, H, W)). Codes unused for a while are
    restarted on random encoder outputs, and the codebook starts on the first
    training batch's encoder outputs, so a small training set does not leave most
    of the codebook dead (dead codes would make codebook sampling pointless).
    """

    def __init__(self, n_codes: int, dim: int, decay: float = 0.99, commitment: float = 0.25, eps: float = 1e-5):
        super().__init__()
        if n_codes < 2:
            raise DetectorError(f"a codebook needs at least 2 codes, got {n_codes}")
        self.n_codes, self.dim, self.decay, self.commitment, self.eps = n_codes, dim, decay, commitment, eps
        embedding = torch.randn(n_codes, dim) * 0.1
        self.register_buffer("embedding", embedding)
        # a count of one per code, so embedding = embedding_sum / cluster_size holds from the start
        # and a code nobody picks keeps its place instead of drifting to embedding_sum / eps
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embedding_sum", embedding.clone())
        self.register_buffer("usage", torch.ones(n_codes))  # EMA of how often each code is chosen
        self.register_buffer("initialised", torch.tensor(False))

    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, dim) -> squared distances (N, n_codes) to every code."""
        return (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.t() + self.embedding.pow(2).sum(1)[None])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (batch, H, W) -> quantized features (batch, dim, H, W)."""
        return F.embedding(indices, self.embedding).permute(0, 3, 1, 2).contiguous()

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codes without any update: (quantized (batch, dim, H, W), indices (batch, H, W))."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        indices = self.distances(flat).argmin(1).view(b, h, w)
        return self.lookup(indices), indices

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, indices = self.quantize(z)
        if self.training:
            self._ema_update(z.detach(), indices)
            quantized = self.lookup(indices)
        loss = self.commitment * F.mse_loss(z, quantized.detach())
        return z + (quantized - z).detach(), loss, indices

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        if not bool(self.initialised):  # codes start on encoder outputs, not far from all of them
            # (the caller's indices of this very first batch stay those of the random codebook: one
            # step of glitch, kept so that the benchmarked figures reproduce bit for bit)
            self._restart(torch.arange(self.n_codes), flat)
            self.initialised.fill_(True)
            indices = self.distances(flat).argmin(1)
        onehot = F.one_hot(indices.reshape(-1), self.n_codes).type(flat.dtype)
        counts = onehot.sum(0)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_codes * self.eps) * total  # Laplace smoothing
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        # usage: EMA of each code's share relative to a uniform share (1 = average); its decay is
        # at most 0.9, so a code unused for ~30 steps is restarted even in short runs
        share = counts / max(len(flat), 1) * self.n_codes
        self.usage.mul_(min(self.decay, 0.9)).add_(share, alpha=1 - min(self.decay, 0.9))
        dead = (self.usage < 0.03).nonzero().flatten()
        if len(dead):
            self._restart(dead, flat)

    def _restart(self, codes: torch.Tensor, flat: torch.Tensor) -> None:
        """Put `codes` on random encoder outputs of the batch (torch's generator: seed it to reproduce)."""
        fresh = flat[torch.randint(len(flat), (len(codes),))] + 1e-3 * torch.randn(len(codes), self.dim)
        self.embedding[codes] = fresh
        self.cluster_size[codes] = 1.0
        self.embedding_sum[codes] = fresh
        self.usage[codes] = 1.0


@dataclass
class VQCodes:
    """What the encoder produced for a batch: quantized features and indices of both levels."""

    top: torch.Tensor  # (batch, dim, H/8, W/8)
    bottom: torch.Tensor  # (batch, dim, H/4, W/4)
    top_indices: torch.Tensor  # (batch, H/8, W/8)
    bottom_indices: torch.Tensor  # (batch, H/4, W/4)
    loss: torch.Tensor  # commitment losses of both levels


class VQVAE2(nn.Module):
    def __init__(
        self,
        n_mels: int,
        hidden: int = 64,
        embedding_dim: int = 32,
        n_codes_top: int = 256,
        n_codes_bottom: int = 256,
        n_residual: int = 1,
        decay: float = 0.99,
        commitment: float = 0.25,
    ):
        super().__init__()
        if n_mels % DOWNSAMPLING:
            raise DetectorError(f"VQ-VAE-2 needs n_mels divisible by {DOWNSAMPLING}, got {n_mels}")
        h, d = hidden, embedding_dim
        self.n_mels = n_mels
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))
        residuals = lambda: [ResidualBlock(h) for _ in range(n_residual)]  # noqa: E731
        self.encoder_bottom = nn.Sequential(
            nn.Conv2d(1, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1), *residuals(), nn.ReLU(),
        )
        self.encoder_top = nn.Sequential(nn.Conv2d(h, h, 4, 2, 1), nn.ReLU(), nn.Conv2d(h, h, 3, padding=1), *residuals(), nn.ReLU())
        self.pre_quantize_top = nn.Conv2d(h, d, 1)
        self.quantizer_top = VectorQuantizerEMA(n_codes_top, d, decay, commitment)
        self.decoder_top = nn.Sequential(nn.Conv2d(d, h, 3, padding=1), *residuals(), nn.ReLU(), nn.ConvTranspose2d(h, d, 4, 2, 1))
        self.pre_quantize_bottom = nn.Conv2d(h + d, d, 1)
        self.quantizer_bottom = VectorQuantizerEMA(n_codes_bottom, d, decay, commitment)
        self.upsample_top = nn.ConvTranspose2d(d, d, 4, 2, 1)
        self.decoder = GeneralDecoder(2 * d, h, n_residual)

    # -- scaling ------------------------------------------------------------
    def set_scaler(self, specs: list[np.ndarray]) -> None:
        """Per-mel mean and std of training log-mels (n_mels, frames) in dB."""
        stacked = np.concatenate([s for s in specs], axis=1).astype(np.float64)
        self.mel_mean.copy_(torch.from_numpy(stacked.mean(1)).float())
        self.mel_std.copy_(torch.from_numpy(stacked.std(1) + 1e-3).float())

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mel_mean[:, None]) / self.mel_std[:, None]

    def destandardise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std[:, None] + self.mel_mean[:, None]

    # -- the two levels -----------------------------------------------------
    def encode(self, x: torch.Tensor) -> VQCodes:
        """Standardised spectrograms (batch, 1, n_mels, frames) -> quantized codes of both levels."""
        bottom_features = self.encoder_bottom(x)
        top_features = self.encoder_top(bottom_features)
        top, top_loss, top_indices = self.quantizer_top(self.pre_quantize_top(top_features))
        joined = torch.cat([bottom_features, self.decoder_top(top)], dim=1)
        bottom, bottom_loss, bottom_indices = self.quantizer_bottom(self.pre_quantize_bottom(joined))
        return VQCodes(top, bottom, top_indices, bottom_indices, top_loss + bottom_loss)

    def joint_features(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """The decoder's input: bottom features beside the top features upsampled to their resolution."""
        return torch.cat([self.upsample_top(top), bottom], dim=1)

    def decode(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """The general decoder: quantized features -> standardised spectrogram (batch, 1, n_mels, frames)."""
        return self.decoder(self.joint_features(top, bottom))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, VQCodes]:
        codes = self.encode(x)
        return self.decode(codes.top, codes.bottom), codes


class GeneralDecoder(nn.Module):
    """(batch, in_channels, H/4, W/4) -> (batch, 1, H, W)."""

    def __init__(self, in_channels: int, hidden: int, n_residual: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), *[ResidualBlock(hidden) for _ in range(n_residual)], nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(hidden // 2, 1, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# -- data helpers -----------------------------------------------------------
def pad_to_multiple(spec: np.ndarray, multiple: int = DOWNSAMPLING) -> np.ndarray:
    """Pad the time axis of (n_mels, frames) by repeating the edge, up to a multiple of `multiple` frames."""
    frames = spec.shape[-1]
    extra = (-frames) % multiple
    return np.pad(spec, ((0, 0), (0, extra)), mode="edge") if extra else spec


def random_crops(specs: list[np.ndarray], width: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random (n_mels, width) crops of random clips -> (n, 1, n_mels, width); short clips are edge-padded."""
    out = np.empty((n, 1, specs[0].shape[0], width), dtype=np.float32)
    for i, clip in enumerate(rng.integers(0, len(specs), n)):
        spec = specs[clip]
        if spec.shape[1] < width:
            spec = np.pad(spec, ((0, 0), (0, width - spec.shape[1])), mode="edge")
        start = int(rng.integers(0, spec.shape[1] - width + 1))
        out[i, 0] = spec[:, start : start + width]
    return out


def train_vqvae2(
    model: VQVAE2,
    specs: list[np.ndarray],
    steps: int,
    batch_size: int = 16,
    crop_frames: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fit the scaler, then train on random crops of the log-mels (dB); returns the loss per step."""
    if not specs:
        raise DetectorError("VQ-VAE-2 training needs at least one spectrogram")
    if crop_frames % DOWNSAMPLING:
        raise DetectorError(f"VQ-VAE-2 crop_frames must be a multiple of {DOWNSAMPLING}, got {crop_frames}")
    rng = np.random.default_rng(seed)
    model.set_scaler(specs)
    scaled = [model.standardise(torch.from_numpy(s)).numpy() for s in specs]
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses: list[float] = []
    model.train()
    with torch.random.fork_rng():  # the dead-code restarts draw from torch's generator: seed it, locally
        torch.manual_seed(seed)
        for _ in progress_bar(range(steps), desc="VQ-VAE-2", enabled=progress):
            x = torch.from_numpy(random_crops(scaled, crop_frames, batch_size, rng))
            reconstruction, codes = model(x)
            loss = F.mse_loss(reconstruction, x) + codes.loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    model.eval()
    return losses
