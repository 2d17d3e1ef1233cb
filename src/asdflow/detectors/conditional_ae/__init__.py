"""Conditional autoencoder with k-nearest-neighbour scoring in reconstruction-error space (Conv-TasNet report)."""
