"""Settings of the detector families beyond the baseline (imported by asdflow.config: no heavy imports)."""

from asdflow.config_base import StrictModel


class DiscriminatorConfig(StrictModel):
    """Frozen reconstruction encoder + 4-layer fully connected classifier on normal vs simulated anomalies."""


class ConditionalAEConfig(StrictModel):
    """Conditional autoencoder scored by k-nearest neighbours in reconstruction-error space."""


class AudDSRConfig(StrictModel):
    """AudDSR: VQ-VAE-2, general + object-specific decoders, anomaly-detection module (focal loss)."""
