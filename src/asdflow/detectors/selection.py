"""Label-free choice of a detector's settings, from normal clips alone.

A plant has no labelled anomalies, so a setting (the time pooling r, the scorer,
later a whole model in the gate) is chosen by one of these strategies:

- `fixed`: a default chosen once on other data (the DCASE first-shot convention);
- `proxy`: K-fold over the training normals; each held-out fold is scored, by a
  model fitted on the other folds, against anomalies simulated from the same
  held-out clips (`asdflow.simulation.waveform_anomalies`); every candidate gets
  AUC and pAUC on that proxy set (means over folds) and the best harmonic mean
  wins. Candidates within `tie_tolerance` of the best count as tied (the proxy
  can saturate: every candidate near 1.0), and a tie goes to the fixed default
  when it is among them, else to the best;
- `fusion_mean` / `fusion_min`: no choice at all: every candidate's score is
  z-normalised by its held-out (cross-validated) scores on the training clips,
  and the normalised scores are averaged or their minimum taken.

Test labels never reach this module: it sees training waveforms and their domains.
The family supplies a `FoldScorer`: fit on some training clips, score held-out
normals and anomalies, per candidate. The proxy table and the choice go into
the detector's `fit_info`, the `asdflow train` output and MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from asdflow.detectors.family_configs import SelectionConfig
from asdflow.simulation.waveform_anomalies import simulate_many

# (train idx, held-out normal idx, anomaly idx) -> candidate -> (normal scores, anomaly scores)
FoldScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]
# (train idx, held-out idx) -> candidate -> scores of the held-out training clips
HeldOutScorer = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass
class ProxySet:
    """The folds over the training normals and the anomalies simulated from the held-out clips.

    Waveforms of the normals are not kept here (a DCASE machine type has a thousand training
    clips): the family holds or loads them; `owners` index into its training clips.
    """

    n_normals: int
    domains: list[str]
    anomalies: list[np.ndarray]
    owners: np.ndarray  # training-clip index of the normal each anomaly was made from
    kinds: list[str]
    folds: list[np.ndarray]  # held-out training-clip indices, one array per fold used


@dataclass
class SelectionResult:
    strategy: str  # the strategy that was asked for
    chosen: str  # candidate name, or "fusion_mean"/"fusion_min" (every candidate)
    reason: str
    table: list[dict[str, Any]] = field(default_factory=list)  # one row per candidate
    fused_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # candidate -> (mean, std)
    heldout_scores: dict[str, np.ndarray] = field(default_factory=dict)  # candidate -> held-out training scores

    def as_dict(self) -> dict[str, Any]:
        """What `fit_info` keeps (JSON-ready)."""
        return {
            "strategy": self.strategy,
            "chosen": self.chosen,
            "reason": self.reason,
            "table": self.table,
            "saturated": saturated(self.table),
            "fused_stats": {k: list(v) for k, v in self.fused_stats.items()},
        }


def fold_splits(domains: Sequence[str | None], n_folds: int, seed: int) -> list[np.ndarray]:
    """Held-out index arrays of K folds, each domain spread evenly over the folds (shuffled by the seed)."""
    rng = np.random.default_rng(seed)
    n_folds = max(2, min(n_folds, len(domains)))
    assignment = np.empty(len(domains), dtype=int)
    offset = 0
    for domain in sorted({d or "source" for d in domains}):
        members = np.flatnonzero([(d or "source") == domain for d in domains])
        members = members[rng.permutation(len(members))]
        assignment[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)  # the next domain starts where this one stopped: folds stay balanced
    return [np.flatnonzero(assignment == k) for k in range(n_folds) if np.any(assignment == k)]


def build_proxy_set(
    domains: Sequence[str | None],
    load: Callable[[int], np.ndarray],
    sample_rate: int,
    config: SelectionConfig,
    seed: int,
) -> ProxySet:
    """Folds over the training clips and anomalies simulated from (at most `max_anomalous_clips` of)
    the clips the used folds hold out; `load(i)` gives training clip i's waveform."""
    folds = fold_splits(domains, config.n_folds, seed)[: config.folds_used or None]
    owners_pool = np.sort(np.concatenate(folds))
    if len(owners_pool) > config.max_anomalous_clips:
        owners_pool = np.sort(np.random.default_rng(seed).choice(owners_pool, config.max_anomalous_clips, replace=False))
    anomalies, positions, kinds = simulate_many(
        [load(int(i)) for i in owners_pool], sample_rate, config.anomaly_kinds, config.level_db, seed, ids=owners_pool
    )
    return ProxySet(
        n_normals=len(domains),
        domains=[d or "source" for d in domains],
        anomalies=anomalies,
        owners=owners_pool[positions],
        kinds=kinds,
        folds=folds,
    )


def _auc_pauc(normal: np.ndarray, anomaly: np.ndarray, max_fpr: float) -> tuple[float, float]:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomaly))]
    scores = np.r_[normal, anomaly]
    if not np.all(np.isfinite(scores)):
        return float("nan"), float("nan")
    return float(roc_auc_score(labels, scores)), float(roc_auc_score(labels, scores, max_fpr=max_fpr))


def proxy_table(proxy: ProxySet, fold_scorer: FoldScorer, config: SelectionConfig) -> list[dict[str, Any]]:
    """Per candidate: AUC, pAUC and their harmonic mean against the simulated anomalies (means over
    the folds used), AUC per anomaly kind, and the spread of the hmean over folds."""
    per_fold: dict[str, list[tuple[float, float]]] = {}
    per_kind: dict[str, dict[str, list[float]]] = {}
    kinds = np.asarray(proxy.kinds)
    for heldout in proxy.folds:
        train = np.setdiff1d(np.arange(proxy.n_normals), heldout)
        anomaly_idx = np.flatnonzero(np.isin(proxy.owners, heldout))
        for name, (normal, anomaly) in fold_scorer(train, heldout, anomaly_idx).items():
            per_fold.setdefault(name, []).append(_auc_pauc(normal, anomaly, config.max_fpr))
            for kind in dict.fromkeys(kinds[anomaly_idx]):
                chosen = kinds[anomaly_idx] == kind
                per_kind.setdefault(name, {}).setdefault(kind, []).append(
                    _auc_pauc(normal, anomaly[chosen], config.max_fpr)[0]
                )
    table = []
    for name, values in per_fold.items():
        aucs, paucs = np.array(values).T
        folds_hmean = [float(hmean([max(a, 1e-6), max(p, 1e-6)])) for a, p in values]
        table.append({
            "candidate": name,
            "auc": float(np.mean(aucs)),
            "pauc": float(np.mean(paucs)),
            "hmean": float(hmean([max(float(np.mean(aucs)), 1e-6), max(float(np.mean(paucs)), 1e-6)])),
            "hmean_fold_std": float(np.std(folds_hmean)),
            "auc_by_kind": {k: float(np.mean(v)) for k, v in per_kind.get(name, {}).items()},
        })
    return table


def saturated(table: list[dict[str, Any]], level: float = 0.99) -> bool:
    """True when at least two candidates reach `level` on the proxy: it cannot tell them apart."""
    return sum(row.get("hmean", 0.0) >= level for row in table) >= 2


def choose(table: list[dict[str, Any]], default: str, tie_tolerance: float) -> tuple[str, str]:
    """(candidate, reason): the best proxy hmean; among ties the default, else the best."""
    ranked = sorted((r for r in table if np.isfinite(r["hmean"])), key=lambda r: -r["hmean"])
    if not ranked:
        return default, "no candidate has a finite proxy score: the fixed default"
    best = ranked[0]
    tied = [r["candidate"] for r in ranked if best["hmean"] - r["hmean"] <= tie_tolerance]
    if default in tied and default != best["candidate"]:
        return default, (f"the fixed default is within {tie_tolerance} of the best proxy hmean "
                         f"({best['candidate']} {best['hmean']:.3f}): kept")
    return best["candidate"], f"best proxy hmean {best['hmean']:.3f} of {len(ranked)} candidates"


def heldout_scores(n: int, domains: Sequence[str | None], scorer: HeldOutScorer, n_folds: int | None, seed: int
                   ) -> dict[str, np.ndarray]:
    """Every training clip's score from a model that did not see it (K-fold; None = leave-one-out)."""
    folds = [np.array([i]) for i in range(n)] if n_folds is None or n_folds >= n else fold_splits(domains, n_folds, seed)
    out: dict[str, np.ndarray] = {}
    for heldout in folds:
        train = np.setdiff1d(np.arange(n), heldout)
        for name, values in scorer(train, heldout).items():
            out.setdefault(name, np.full(n, np.nan))[heldout] = values
    return out


def normalisation_stats(scores: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """candidate -> (mean, std) of its held-out training scores (std floored so one clip cannot explode it)."""
    stats = {}
    for name, values in scores.items():
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if len(values) else 0.0
        std = float(values.std()) if len(values) > 1 else 0.0
        stats[name] = (mean, max(std, 1e-3 * abs(mean), 1e-9))
    return stats


def fuse(scores: dict[str, np.ndarray], stats: dict[str, tuple[float, float]], how: str) -> np.ndarray:
    """The candidates' scores z-normalised by their training statistics, then their mean or minimum."""
    z = np.stack([(np.asarray(scores[name]) - mean) / std for name, (mean, std) in stats.items()])
    if how == "mean":
        return z.mean(axis=0)
    if how == "min":
        return z.min(axis=0)
    raise ValueError(f"unknown fusion {how!r}")


def format_table(result: dict[str, Any], limit: int | None = None) -> list[str]:
    """The proxy table as text lines for the CLI (best first), the choice marked."""
    rows = sorted(result.get("table", []), key=lambda r: -r.get("hmean", 0.0))[:limit]
    lines = [f"selection: {result['strategy']} -> {result['chosen']} ({result['reason']})"]
    if rows:
        lines.append(f"  {'candidate':<28} {'AUC':>6} {'pAUC':>6} {'hmean':>6}")
        for row in rows:
            mark = " <" if row["candidate"] == result["chosen"] else ""
            lines.append(f"  {row['candidate']:<28} {row['auc']:6.3f} {row['pauc']:6.3f} {row['hmean']:6.3f}{mark}")
        if result.get("saturated"):
            lines.append("  (the proxy saturates: two or more candidates at hmean >= 0.99)")
    return lines
