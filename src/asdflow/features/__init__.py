"""Features: log-mel spectrograms, frame stacking, clip-level spectral statistics."""
