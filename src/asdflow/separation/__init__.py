"""Separation stage: a Conv-TasNet that pulls the machine sound out of the background.

Outputs in a fixed order: 0 machine, 1 noise. See mixtures (training data), model,
losses, train (checkpointed training), denoise (dataset denoising), classical (the
Wiener baseline) and metrics (SI-SNR, SI-SNRi). torch is imported by the submodules,
not here, so `import asdflow.separation` stays cheap.
"""

SOURCES = ("machine", "noise")
