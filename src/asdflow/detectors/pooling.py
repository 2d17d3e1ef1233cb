"""Global weighted ranking pooling (GWRP) over time: one mechanism for every family.

TWFR (Guan et al., ICASSP 2023) pools each mel bin's frames by sorting them in
descending order and averaging with weights r^i (normalised): r = 0 keeps the
maximum, r = 1 is the plain mean, values between weigh the loudest frames most.
The frame-based families pool their per-frame (or per-patch) anomaly scores
with the same function, so one chosen r means the same thing everywhere.

How the frames should be pooled depends on the machine: a valve's short
open/close events need near-max pooling, a stationary machine near-mean
pooling. `asdflow.detectors.selection` chooses r from normal clips alone.
"""

from __future__ import annotations

import numpy as np

from asdflow.errors import DetectorError

# Candidate r values: roughly even in the number of frames that carry weight
# (1 / (1 - r) frames: 1, 2, 10, 33, 100, 333, all), since r^i decays geometrically.
DEFAULT_R_GRID: tuple[float, ...] = (0.0, 0.5, 0.9, 0.97, 0.99, 0.997, 1.0)


def check_r(r: float) -> float:
    r = float(r)
    if not 0.0 <= r <= 1.0:
        raise DetectorError(f"GWRP pooling r must be in [0, 1] (0 = max, 1 = mean), got {r}")
    return r


def gwrp_weights(n: int, r: float) -> np.ndarray:
    """Normalised weights r^0, r^1, ..., r^(n-1) (for frames sorted descending)."""
    r = check_r(r)
    if n < 1:
        raise DetectorError("GWRP pooling needs at least one frame")
    if r == 0.0:
        weights = np.zeros(n)
        weights[0] = 1.0
        return weights
    # in log space: r^i underflows for long clips and small r, which is the same as a zero weight
    weights = np.exp(np.arange(n) * np.log(r))
    return weights / weights.sum()


def gwrp(values: np.ndarray, r: float, axis: int = -1) -> np.ndarray:
    """Pool `values` along `axis` (time) with GWRP; the other axes are kept.

    (n_mels, T) -> (n_mels,); (T,) -> scalar array.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    if r == 1.0:  # exact mean, no sort
        return values.mean(axis=axis)
    if r == 0.0:
        return values.max(axis=axis)
    ordered = -np.sort(-values, axis=axis)  # descending
    weights = gwrp_weights(n, r)
    return np.tensordot(np.moveaxis(ordered, axis, -1), weights, axes=([-1], [0]))


def gwrp_many(values: np.ndarray, rs: list[float] | tuple[float, ...], axis: int = -1) -> dict[float, np.ndarray]:
    """GWRP for several r at once, sorting once: r -> pooled."""
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    moved = np.moveaxis(values, axis, -1)  # sorted in its own precision (float32 log-mels sort ~2x faster)
    out: dict[float, np.ndarray] = {}
    ordered = None
    for r in map(float, rs):
        if r == 0.0:  # max and mean need no sort
            out[r] = moved.max(axis=-1).astype(np.float64)
        elif r == 1.0:
            out[r] = moved.mean(axis=-1, dtype=np.float64)
        else:
            if ordered is None:
                ordered = np.flip(np.sort(moved, axis=-1), axis=-1)
            out[r] = ordered @ gwrp_weights(ordered.shape[-1], r)
    return out


def pool_segments(values: np.ndarray, lengths: list[int], rs: list[float]) -> dict[float, np.ndarray]:
    """Concatenated per-frame scores of several clips (`lengths` frames each) -> r -> one score per clip."""
    out: dict[float, list[float]] = {float(r): [] for r in rs}
    start = 0
    for n in lengths:
        for r, pooled in gwrp_many(values[start : start + n], rs).items():
            out[r].append(float(pooled))
        start += n
    return {r: np.asarray(v, dtype=np.float64) for r, v in out.items()}


def describe_r(r: float) -> str:
    """'max', 'mean' or 'r=0.97 (~33 frames)': how a person reads a pooling setting."""
    r = float(r)
    if r == 0.0:
        return "max"
    if r == 1.0:
        return "mean"
    return f"r={r:g} (~{1.0 / (1.0 - r):.0f} frames)"
