"""SI-SNR improvement of a separator on held-out mixtures, beside the classical Wiener baseline.

Each evaluation mixture is a clean machine segment plus a noise segment at a fixed SNR. The
Wiener baseline gets its noise PSD from a *different* stretch of the same noise clip, scaled
exactly as the mixed one was: the noise estimate a classical method would have from
noise-only stretches of the same recording (an oracle-level estimate of the noise, so the
baseline is a strong one). Both methods are scored against the same machine reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from asdflow.errors import DataError
from asdflow.separation.classical import fit_wiener
from asdflow.separation.metrics import si_snr_improvement
from asdflow.separation.mixtures import EPS, fit_length, mean_power, mix_at_snr, random_segment


@dataclass
class EvalMixture:
    mixture: np.ndarray
    machine: np.ndarray  # the reference
    noise_estimate_clip: np.ndarray  # another stretch of the same noise, same scale: for the Wiener PSD
    snr_db: float


def make_eval_mixtures(
    clean: Sequence[np.ndarray],
    noise: Sequence[np.ndarray],
    snrs_db: Sequence[float],
    n_per_snr: int,
    length: int,
    seed: int = 0,
) -> list[EvalMixture]:
    """`n_per_snr` mixtures at each SNR, deterministic from `seed`.

    Clips shorter than `length` are tiled (as in training). The noise-estimate stretch is taken
    from the same noise clip, away from the mixed one where the clip is long enough (it is
    tiled otherwise, so it may overlap: a short noise clip is one stationary stretch anyway).
    Silent clean or noise clips are skipped: no SNR is defined for them.
    """
    clean = [c for c in clean if len(c) and mean_power(c) > EPS]
    noise = [n for n in noise if len(n) and mean_power(n) > EPS]
    if not clean or not noise:
        raise DataError(f"evaluation mixtures need non-silent clean and noise clips (got {len(clean)} clean, "
                        f"{len(noise)} noise)")
    rng = np.random.default_rng(seed)
    out: list[EvalMixture] = []
    for snr in snrs_db:
        for _ in range(n_per_snr):
            clip = clean[int(rng.integers(len(clean)))]
            segment = random_segment(clip, length, rng)
            if mean_power(segment) <= EPS:  # a silent stretch of a clip that is not silent overall
                segment = fit_length(clip, length)[:length]
            n = noise[int(rng.integers(len(noise)))]
            n = fit_length(n, 2 * length)
            half = len(n) // 2
            first = int(rng.integers(0, half - length + 1)) if half >= length else 0
            second = half + int(rng.integers(0, len(n) - half - length + 1)) if len(n) - half >= length else 0
            mixed, estimate = n[first : first + length], n[second : second + length]
            if rng.random() < 0.5:
                mixed, estimate = estimate, mixed
            mixture, machine, background = mix_at_snr(segment, mixed, float(snr))
            scale = np.sqrt(mean_power(background) / max(mean_power(mixed), EPS))
            out.append(EvalMixture(mixture, machine, (estimate * scale).astype(np.float32), float(snr)))
    return out


class SnrScore(BaseModel):
    snr_db: float
    n: int
    separator_si_snri_db: float
    wiener_si_snri_db: float | None = None


class SeparationScores(BaseModel):
    by_snr: list[SnrScore]
    separator_si_snri_db: float  # mean over every mixture
    wiener_si_snri_db: float | None = None

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat MLflow metrics: si_snri_db, wiener_si_snri_db and per SNR (snr_m5 = -5 dB)."""
        out = {f"{prefix}si_snri_db": self.separator_si_snri_db}
        if self.wiener_si_snri_db is not None:
            out[f"{prefix}wiener_si_snri_db"] = self.wiener_si_snri_db
        for row in self.by_snr:
            tag = f"snr_{'m' if row.snr_db < 0 else ''}{abs(row.snr_db):g}".replace(".", "_")
            out[f"{prefix}si_snri_db.{tag}"] = row.separator_si_snri_db
            if row.wiener_si_snri_db is not None:
                out[f"{prefix}wiener_si_snri_db.{tag}"] = row.wiener_si_snri_db
        return out


def score_mixtures(
    mixtures: Sequence[EvalMixture],
    separate: Callable[[np.ndarray], np.ndarray],
    wiener: bool = True,
    n_fft: int = 512,
) -> SeparationScores:
    """Mean SI-SNRi (dB) of `separate` (mixture -> machine estimate) and of the Wiener baseline, per SNR."""
    if not mixtures:
        raise DataError("no evaluation mixtures to score")
    rows: dict[float, dict[str, list[float]]] = {}
    for m in mixtures:
        row = rows.setdefault(m.snr_db, {"sep": [], "wiener": []})
        row["sep"].append(si_snr_improvement(separate(m.mixture), m.mixture, m.machine))
        if wiener:
            baseline = fit_wiener([m.noise_estimate_clip], n_fft=n_fft, hop=n_fft // 4)
            row["wiener"].append(si_snr_improvement(baseline(m.mixture), m.mixture, m.machine))
    by_snr = [
        SnrScore(snr_db=snr, n=len(v["sep"]), separator_si_snri_db=float(np.mean(v["sep"])),
                 wiener_si_snri_db=float(np.mean(v["wiener"])) if v["wiener"] else None)
        for snr, v in sorted(rows.items())
    ]
    every_sep = [x for v in rows.values() for x in v["sep"]]
    every_wiener = [x for v in rows.values() for x in v["wiener"]]
    return SeparationScores(by_snr=by_snr, separator_si_snri_db=float(np.mean(every_sep)),
                            wiener_si_snri_db=float(np.mean(every_wiener)) if every_wiener else None)
