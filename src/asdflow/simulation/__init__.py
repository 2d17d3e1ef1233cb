"""Anomaly simulation: masks, latent gradient perturbation, VQ-VAE-2 codebook sampling."""
