"""SI-SNR and SI-SNR improvement (dB) for evaluation, on numpy waveforms."""

from __future__ import annotations

import numpy as np

EPS = 1e-8


def si_snr(estimate: np.ndarray, reference: np.ndarray, eps: float = EPS) -> float:
    """Scale-invariant SNR in dB of one estimate against its reference (zero-mean, 1-D)."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    n = min(len(est), len(ref))
    est, ref = est[:n] - est[:n].mean(), ref[:n] - ref[:n].mean()
    target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
    residual = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))


def si_snr_improvement(estimate: np.ndarray, mixture: np.ndarray, reference: np.ndarray) -> float:
    """SI-SNR of the estimate minus SI-SNR of the unprocessed mixture (dB)."""
    return si_snr(estimate, reference) - si_snr(mixture, reference)
