"""Anomaly simulation: masks, latent gradient perturbation, VQ-VAE-2 codebook sampling.

- masks: Perlin and band x segments masks with controlled coverage;
- spectrogram: log-mel images, fixed-size patches, per-machine-type normalisation;
- autoencoder: the conv encoder-decoder trained with SSIM + L1;
- latent_perturbation: gradient ascent in latent space with a truncated projection;
- simulate: `simulate_anomalies` and the pluggable METHODS registry;
- plots: normal vs simulated PNGs.
Kept free of heavy imports (asdflow.config imports simulation.config).
"""
