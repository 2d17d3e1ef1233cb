"""Latent gradient perturbation: anomalies just outside the normal region of the encoder-decoder.

For a normal patch x with latent z = E(x):
1. start at z' = z + a small random offset (diversity; reproducible from the rng);
2. K steps of gradient ASCENT on the reconstruction loss L(D(z'), x) w.r.t. z'
   (unit-norm gradient per patch, step (r_max - r_min) * 2 / K), each followed by the
   truncated projection of d = z' - z onto the shell r_min <= ||d|| <= r_max (d is
   rescaled to the nearest radius when outside);
3. D(z') is the anomaly patch, overlaid on x inside a mask m:
   `replace`:  x * (1 - m) + D(z') * m   (the report's overlay),
   `residual`: x + (D(z') - D(z)) * m     (keeps x's fine texture, adds only the change; the
   default: with `replace` a discriminator learns "smooth decoded region = anomalous" and ranked
   real synthetic anomalies below normals, see asdflow.simulation.config).

Radii: sigma = RMS distance of the training patches' latents from their mean (how wide
the normal cloud is); r = radius_{min,max} * sigma. Two normal latents lie ~sqrt(2)*sigma
apart, so [0.5, 1.0] * sigma moves a patch a clear step off its own point but stays in the
decoder's range (beyond ~2 sigma the decoder produces unstructured blobs).
"""

from __future__ import annotations

import numpy as np
import torch

from asdflow.simulation.autoencoder import SpectrogramAutoencoder, reconstruction_loss
from asdflow.simulation.config import EncoderDecoderConfig, LatentPerturbationConfig, SimulationConfig

BATCH = 64


@torch.no_grad()
def encode_all(model: SpectrogramAutoencoder, images: np.ndarray, batch: int = BATCH) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)])


def latent_spread(model: SpectrogramAutoencoder, images: np.ndarray) -> float:
    """RMS distance of the images' latents from their mean latent (> 0)."""
    z = encode_all(model, images).flatten(1).double()
    spread = float(((z - z.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt())
    return max(spread, 1e-6)


def project_shell(delta: torch.Tensor, r_min: float, r_max: float) -> torch.Tensor:
    """Rescale each row of delta (N, ...) so that r_min <= ||row|| <= r_max."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    target = norms.clamp(r_min, r_max)
    return delta * (target / norms).view(-1, *([1] * (delta.dim() - 1)))


def perturb_latents(
    model: SpectrogramAutoencoder, x: torch.Tensor, z: torch.Tensor, r_min: float, r_max: float,
    ae_params: EncoderDecoderConfig, params: LatentPerturbationConfig, generator: torch.Generator,
) -> torch.Tensor:
    """z' with r_min <= ||z' - z|| <= r_max after K ascent steps on L(D(z'), x)."""
    noise = torch.randn(z.shape, generator=generator)
    noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (z.dim() - 1)))
    delta = noise * params.init_noise * max(r_min, 1e-3 * r_max)
    step = 2.0 * (r_max - r_min) / params.steps if r_max > r_min else r_max / params.steps
    shape = tuple(x.shape[-2:])
    for _ in range(params.steps):
        delta = delta.detach().requires_grad_(True)
        loss = reconstruction_loss(model.decode(z + delta, shape), x, ae_params, reduce=False).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        unit = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (z.dim() - 1)))
        delta = project_shell(delta.detach() + step * unit, r_min, r_max)
    return (z + delta).detach()


class LatentPerturbationSimulator:
    """Simulates anomalies of normalised patches with a trained encoder-decoder."""

    def __init__(self, model: SpectrogramAutoencoder, config: SimulationConfig, spread: float):
        self.model = model
        self.config = config
        self.spread = spread

    @property
    def radii(self) -> tuple[float, float]:
        p = self.config.perturbation
        return p.radius_min * self.spread, p.radius_max * self.spread

    def anomaly_patches(self, images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(decoded perturbed patches, decoded unperturbed patches), both (N, n_mels, frames)."""
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        r_min, r_max = self.radii
        out, base = [], []
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + BATCH], dtype=np.float32))[:, None]
            with torch.no_grad():
                z = self.model.encode(x)
            z_new = perturb_latents(self.model, x, z, r_min, r_max, self.config.autoencoder,
                                    self.config.perturbation, generator)
            with torch.no_grad():
                out.append(self.model.decode(z_new, tuple(x.shape[-2:]))[:, 0].numpy())
                base.append(self.model.decode(z, tuple(x.shape[-2:]))[:, 0].numpy())
        return np.concatenate(out), np.concatenate(base)

    def simulate(self, images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Anomalous versions of normalised images (N, n_mels, frames) inside boolean masks of the same shape."""
        from asdflow.torch_threads import torch_threads

        with torch_threads(self.config.num_threads):
            decoded, base = self.anomaly_patches(images, rng)
        m = masks.astype(np.float32)
        if self.config.perturbation.overlay == "residual":
            return (images + (decoded - base) * m).astype(np.float32)
        return (images * (1 - m) + decoded * m).astype(np.float32)


def build_latent_simulator(
    train_images: np.ndarray, config: SimulationConfig, seed: int = 0, progress: bool = False,
    model: SpectrogramAutoencoder | None = None,
) -> LatentPerturbationSimulator:
    """Train the encoder-decoder on normalised normal patches (unless given one) and wrap it."""
    from asdflow.simulation.autoencoder import train_autoencoder
    from asdflow.torch_threads import torch_threads

    with torch_threads(config.num_threads):
        if model is None:
            model, _ = train_autoencoder(train_images, config.autoencoder, seed=seed, progress=progress)
        return LatentPerturbationSimulator(model, config, latent_spread(model, train_images))
