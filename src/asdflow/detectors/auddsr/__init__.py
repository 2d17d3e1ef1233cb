"""AudDSR: VQ-VAE-2 + object-specific decoder + anomaly-detection U-Net (DSR on log-mel spectrograms)."""
