"""Scale-invariant SNR as a training loss (torch).

Both signals are made zero-mean first; `eps` sits in numerator and denominator so a
silent reference (or a silent estimate) gives a finite value, never NaN.
"""

from __future__ import annotations

import torch

EPS = 1e-8


def si_snr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """SI-SNR in dB over the last axis; shapes [..., T] -> [...]."""
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    reference = reference - reference.mean(dim=-1, keepdim=True)
    dot = (estimate * reference).sum(dim=-1, keepdim=True)
    energy = (reference**2).sum(dim=-1, keepdim=True)
    target = dot / (energy + eps) * reference
    residual = estimate - target
    ratio = ((target**2).sum(dim=-1) + eps) / ((residual**2).sum(dim=-1) + eps)
    return 10 * torch.log10(ratio)


def neg_si_snr_loss(estimates: torch.Tensor, references: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Mean negative SI-SNR over batch and sources ([B, S, T]); the order of sources is fixed (machine, noise)."""
    return -si_snr(estimates.float(), references.float(), eps).mean()
