"""Data: DCASE layout reading, audio I/O, the synthetic generator, downloads."""
