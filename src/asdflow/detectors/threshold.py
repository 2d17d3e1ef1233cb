"""Decision threshold: a gamma distribution fitted to training scores, its q-quantile (DCASE baseline)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from asdflow.errors import DetectorError


def gamma_threshold(train_scores: np.ndarray, quantile: float = 0.9) -> float:
    scores = np.asarray(train_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size < 2:
        raise DetectorError(f"cannot fit a decision threshold on {scores.size} training score(s): need at least 2")
    if np.ptp(scores) == 0:
        return float(scores[0])
    # Scores can be negative (log-domain, logits): fit the gamma to a strictly positive offset,
    # since a fit with floc=0 refuses a value of exactly 0.
    low = float(scores.min())
    shift = low - 1e-6 * float(np.ptp(scores)) if low <= 0 else 0.0
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # scipy's failing shape solve warns before it raises
            shape, loc, scale = stats.gamma.fit(scores - shift, floc=0.0)
        threshold = float(stats.gamma.ppf(quantile, shape, loc=loc, scale=scale) + shift)
    except (ValueError, FloatingPointError, RuntimeError):
        threshold = float("nan")
    if not np.isfinite(threshold):
        # Nearly constant scores (or a zero among them) make the gamma fit fail: the empirical quantile still holds.
        threshold = float(np.quantile(scores, quantile))
    return threshold
