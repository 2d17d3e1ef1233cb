"""TWFR: time-weighted frequency representation (GWRP pooling) with a GMM or a density-normalised k-NN."""
