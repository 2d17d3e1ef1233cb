"""Discriminator family: frozen reconstruction encoder + fully connected classifier on simulated anomalies."""
