"""Anomaly simulation settings: patches, encoder-decoder, latent gradient perturbation, masks.

Imported by asdflow.config (and by the discriminator family's config): keep this module
free of heavy imports.

How the defaults were chosen (no look at any real test row): on the synthetic benchmark
(`asdflow.data.synth`, its own test split) and on held-out train normals vs simulated
anomalies of the valve train rows; see the docstring of
asdflow.detectors.family_configs.DiscriminatorConfig for the procedure and figures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from asdflow.config_base import StrictModel


class PatchConfig(StrictModel):
    """Fixed-size log-mel patches (n_mels from FeatureConfig x `frames`) cut from each clip."""

    frames: int = Field(64, ge=8)  # ~2 s at 16 kHz / hop 512
    hop: int = Field(32, ge=1)  # frames between patch starts
    crop_seconds: float = Field(0.0, ge=0)  # dropped at the start and at the end of each clip


class EncoderDecoderConfig(StrictModel):
    """Conv autoencoder on normalised log-mel patches, loss = ssim_weight*(1-SSIM) + l1_weight*L1."""

    # stride-2 conv blocks; [8,16,32,32] trains a 52-clip machine type in ~1 min on one CPU thread
    # ([16,32,64,64] took 6x longer per epoch)
    channels: list[int] = Field(default_factory=lambda: [8, 16, 32, 32], min_length=1)
    latent_channels: int = Field(16, ge=1)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    ssim_weight: float = Field(1.0, ge=0)
    l1_weight: float = Field(1.0, ge=0)
    ssim_window: int = Field(7, ge=3)  # gaussian window size (odd)
    ssim_sigma: float = Field(1.5, gt=0)

    @field_validator("ssim_window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"ssim_window {value}: must be odd")
        return value


class LatentPerturbationConfig(StrictModel):
    """Gradient ascent on the reconstruction loss in latent space, kept in a shell around z.

    The radii are multiples of the spread of the training latents: sigma = the RMS distance
    of the training patches' latents from their mean (the radius of the normal cloud).
    ||z' - z|| is kept in [radius_min * sigma, radius_max * sigma]: far enough to leave the
    neighbourhood of z, not so far that the decoder yields noise.
    """

    steps: int = Field(8, ge=1)
    # [0.5, 1.0] chosen on the synthetic benchmark (discriminator official 0.809 vs 0.734 for
    # [0.25, 0.5] and 0.753 for [1.0, 2.0]; benchmarks/discriminator_selection.py)
    radius_min: float = Field(0.5, ge=0)
    radius_max: float = Field(1.0, gt=0)
    # random start, as a fraction of radius_min*sigma: diversity of directions per seed
    init_noise: float = Field(1.0, ge=0)
    # "replace": x*(1-m) + D(z')*m (the report's overlay); "residual": x + (D(z') - D(z))*m.
    # Default residual: on synthetic data (tiny fan/pump, severity 1) a discriminator trained on
    # "replace" anomalies ranked real anomalies BELOW normals (AUC source 0.0 / 0.33): it learnt
    # "a smooth decoded region = anomalous"; with residual + init_noise 1.0: 0.94 / 0.94.
    overlay: Literal["replace", "residual"] = "residual"

    @field_validator("radius_max")
    @classmethod
    def _ordered(cls, value: float, info) -> float:
        low = info.data.get("radius_min", 0.0)
        if value < low:
            raise ValueError(f"radius_max {value} is below radius_min {low}")
        return value


class MaskConfig(StrictModel):
    kinds: list[Literal["perlin", "band_segments"]] = Field(
        default_factory=lambda: ["perlin", "band_segments"], min_length=1
    )
    coverage: tuple[float, float] = (0.05, 0.3)  # drawn uniformly per mask

    @field_validator("coverage")
    @classmethod
    def _coverage(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"coverage range {list(value)}: need 0 < low <= high <= 1")
        return value


class SimulationConfig(StrictModel):
    """Anomaly simulation: masks, latent gradient perturbation, VQ-VAE-2 codebook sampling."""

    enabled: bool = False  # the training pipeline runs the `simulate` stage (a visual check) when on
    method: str = "latent"  # a key of asdflow.simulation.simulate.METHODS
    patches: PatchConfig = Field(default_factory=PatchConfig)
    autoencoder: EncoderDecoderConfig = Field(default_factory=EncoderDecoderConfig)
    perturbation: LatentPerturbationConfig = Field(default_factory=LatentPerturbationConfig)
    masks: MaskConfig = Field(default_factory=MaskConfig)
    n_samples: int = Field(32, ge=1)  # simulated patches written by `asdflow simulate`
    num_threads: int | None = 1  # torch threads (None: torch's default)
    seed: int = Field(0, ge=0)
