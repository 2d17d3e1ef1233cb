"""Anomalies by codebook sampling in a VQ-VAE-2's quantized space (DSR, Zavrtanik et al. 2022; AudDSR).

Inside a mask, each quantized vector is replaced by another entry of the same
level's codebook, drawn uniformly among the k codes nearest to the original
code, with k = max(1, round(strength * K)) for a strength in (0, 1] (K codes):
a weak strength swaps in a near-normal code, a strong one almost any code. The
original code itself (the very nearest) is never drawn. Both levels are
perturbed by default; the general decoder turns the result into a spectrogram.

The mask (n_mels, frames) is brought to each level's grid (bottom 1/4, top 1/8)
by the covered fraction of each cell (>= 1/2; a non-empty mask keeps at least its
most covered cell); the mask returned is the union of the cells really changed,
brought back to spectrogram resolution, so a detector learns exactly what changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from asdflow.errors import DetectorError
from asdflow.simulation.vqvae2 import DOWNSAMPLING, VQVAE2, VectorQuantizerEMA, VQCodes

LEVELS: tuple[str, ...] = ("top", "bottom")
LEVEL_FACTORS = {"top": DOWNSAMPLING, "bottom": DOWNSAMPLING // 2}


def neighbour_count(strength: float, n_codes: int) -> int:
    """k = max(1, round(strength * K)), at most K - 1 (the original code is excluded)."""
    return int(min(max(1, round(float(strength) * n_codes)), n_codes - 1))


def level_region(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(batch, H, W) bool mask -> (batch, H/factor, W/factor) bool: cells at least half covered."""
    fraction = F.avg_pool2d(mask.float()[:, None], factor)[:, 0]
    region = fraction >= 0.5
    for b in range(len(mask)):  # a small non-empty mask still changes its most covered cell
        if not region[b].any() and fraction[b].max() > 0:
            region[b] = fraction[b] == fraction[b].max()
    return region


def upsample_region(region: torch.Tensor, factor: int) -> torch.Tensor:
    """(batch, h, w) bool -> (batch, h*factor, w*factor) bool (nearest)."""
    return region.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


def sample_replacement_indices(
    quantizer: VectorQuantizerEMA,
    indices: torch.Tensor,
    region: torch.Tensor,
    strengths: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
) -> torch.Tensor:
    """New code indices (batch, h, w): inside `region`, a code drawn among the k nearest to the original.

    Nearness is the distance between codebook entries; the original code is put last in
    every ranking, so it is never drawn even when another code coincides with it.
    """
    n_codes = quantizer.n_codes
    with torch.no_grad():
        distances = torch.cdist(quantizer.embedding, quantizer.embedding)
        distances.fill_diagonal_(float("inf"))
        ranking = distances.argsort(dim=1)  # (K, K): row c = the other codes by distance to code c, c itself last
    new = indices.clone()
    for b, strength in enumerate(np.asarray(strengths, dtype=np.float64).reshape(-1)):
        cells = region[b].nonzero(as_tuple=True)
        if not len(cells[0]):
            continue
        k = neighbour_count(strength, n_codes)
        ranks = torch.from_numpy(rng.integers(0, k, size=len(cells[0])))
        new[b][cells] = ranking[indices[b][cells], ranks]
    return new


def perturb_codes(
    vqvae: VQVAE2,
    codes: VQCodes,
    masks: torch.Tensor,
    strengths: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    levels: Sequence[Sequence[str]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codebook-sample a batch of encoded spectrograms inside their masks.

    masks: (batch, n_mels, frames) bool at spectrogram resolution; levels: per item the
    levels to perturb (default both). Returns (top, bottom, changed) where top and bottom
    are the perturbed quantized features and `changed` (batch, n_mels, frames) bool marks
    the spectrogram cells whose codes were replaced.
    """
    batch = len(masks)
    levels = levels if levels is not None else [LEVELS] * batch
    changed = torch.zeros_like(masks, dtype=torch.bool)
    out = {}
    for level in LEVELS:
        quantizer = vqvae.quantizer_top if level == "top" else vqvae.quantizer_bottom
        indices = codes.top_indices if level == "top" else codes.bottom_indices
        region = level_region(masks, LEVEL_FACTORS[level])
        region &= torch.tensor([level in chosen for chosen in levels], dtype=torch.bool)[:, None, None]
        new_indices = sample_replacement_indices(quantizer, indices, region, strengths, rng)
        out[level] = quantizer.lookup(new_indices)
        changed |= upsample_region(region, LEVEL_FACTORS[level])
    return out["top"], out["bottom"], changed


def codebook_anomaly(
    vqvae: VQVAE2,
    spec: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    strength: float | None = None,
    levels: Sequence[str] = LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """A simulated anomalous log-mel (dB, (n_mels, frames)) from a normal one and a mask.

    The clip is encoded, its codes are sampled inside the mask on the given levels
    (strength drawn uniformly in (0, 1] when None) and decoded by the general decoder;
    the decoded values replace the spectrogram where codes changed, the rest stays the
    original. Returns (anomalous spectrogram, changed-cells mask), both (n_mels, frames).
    """
    if spec.ndim != 2 or spec.shape != mask.shape:
        raise DetectorError(f"codebook_anomaly: spectrogram {spec.shape} and mask {mask.shape} must be equal 2-D shapes")
    if spec.shape[0] != vqvae.n_mels:
        raise DetectorError(f"codebook_anomaly: the VQ-VAE-2 expects {vqvae.n_mels} mels, the spectrogram has {spec.shape[0]}")
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown or not levels:
        raise DetectorError(f"codebook_anomaly: levels must be among {LEVELS}, got {list(levels)}")
    if strength is None:
        strength = 1.0 - rng.uniform(0.0, 1.0)  # (0, 1]
    if not 0.0 < strength <= 1.0:
        raise DetectorError(f"codebook_anomaly: strength must be in (0, 1], got {strength}")
    frames = spec.shape[1]
    extra = (-frames) % DOWNSAMPLING
    padded = np.pad(spec, ((0, 0), (0, extra)), mode="edge").astype(np.float32)
    padded_mask = np.pad(mask.astype(bool), ((0, 0), (0, extra)))
    was_training = vqvae.training
    vqvae.eval()
    with torch.no_grad():
        x = vqvae.standardise(torch.from_numpy(padded))[None, None]
        codes = vqvae.encode(x)
        top, bottom, changed = perturb_codes(
            vqvae, codes, torch.from_numpy(padded_mask)[None], [strength], rng, [tuple(levels)]
        )
        decoded = vqvae.destandardise(vqvae.decode(top, bottom)[0, 0]).numpy()
    vqvae.train(was_training)
    changed_np = changed[0].numpy()[:, :frames]
    anomalous = np.where(changed_np, decoded[:, :frames], spec).astype(np.float32)
    return anomalous, changed_np


class CodebookSimulator:
    """The `codebook` method of asdflow.simulation.simulate: a VQ-VAE-2 trained on the normal patches."""

    def __init__(self, vqvae: VQVAE2, strength_range: tuple[float, float] = (0.2, 1.0)):
        self.vqvae = vqvae
        self.strength_range = strength_range

    def simulate(self, images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, n_mels, frames) patches (in the units the VQ-VAE-2 was trained on) -> anomalous patches."""
        out = np.empty_like(images, dtype=np.float32)
        for i, (image, mask) in enumerate(zip(images, masks)):
            strength = float(rng.uniform(*self.strength_range))
            out[i] = codebook_anomaly(self.vqvae, image, mask, rng, strength=strength)[0]
        return out


def build_codebook_simulator(
    train_images: np.ndarray, config=None, seed: int = 0, progress: bool = False, auddsr=None
) -> CodebookSimulator:
    """Builder for simulate.METHODS["codebook"]: train a VQ-VAE-2 on the normal patches (N, n_mels, frames).

    Sizes and steps come from `auddsr` (an AudDSRConfig; default: its defaults, the simulation
    config has no VQ-VAE-2 section); `config` (SimulationConfig) is accepted for the builder signature.
    """
    from asdflow.detectors.family_configs import AudDSRConfig
    from asdflow.simulation.vqvae2 import train_vqvae2

    p = auddsr or AudDSRConfig()
    images = np.asarray(train_images, dtype=np.float32)
    if images.ndim != 3 or len(images) == 0:
        raise DetectorError(f"codebook simulator: need normal patches (N, n_mels, frames), got shape {images.shape}")
    crop = max(DOWNSAMPLING, min(p.crop_frames, images.shape[2] // DOWNSAMPLING * DOWNSAMPLING))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vqvae = VQVAE2(images.shape[1], p.hidden_channels, p.embedding_dim, p.n_codes_top, p.n_codes_bottom,
                       p.n_residual, p.ema_decay, p.commitment)
    train_vqvae2(vqvae, list(images), p.vq_steps, p.vq_batch_size, crop, p.vq_learning_rate, seed, progress)
    return CodebookSimulator(vqvae, tuple(p.strength_range))
