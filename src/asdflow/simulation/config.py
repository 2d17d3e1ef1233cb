"""Anomaly simulation: masks, latent gradient perturbation, VQ-VAE-2 codebook sampling.

Imported by asdflow.config: keep this module free of heavy imports.
"""

from asdflow.config_base import StrictModel


class SimulationConfig(StrictModel):
    """Anomaly simulation: masks, latent gradient perturbation, VQ-VAE-2 codebook sampling."""
