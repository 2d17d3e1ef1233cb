"""The DCASE baseline autoencoder: the reference every other family is compared with."""
