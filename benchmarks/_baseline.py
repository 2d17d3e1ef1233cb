"""Train the baseline autoencoder over several seeds and score both of its score kinds.

Shared by `real_valve.py` and `synthetic.py`: one fit per (machine type, seed),
both MSE and selective-Mahalanobis scores from that one model, the DCASE
official score of each, then mean and spread over seeds.
"""

from __future__ import annotations

import time
from typing import Any

from _common import summarise

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.detectors import make_detector
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

METRICS = ("auc_source", "auc_target", "pauc", "official")
SCORE_KINDS = ("mse", "mahalanobis")


def run_seed(train: Manifest, test: Manifest, config: AsdflowConfig, seed: int) -> dict[str, Any]:
    """Fit one detector per machine type with this seed; evaluate every score kind over all of them."""
    scores: dict[str, dict[str, float]] = {k: {} for k in SCORE_KINDS}
    fit_seconds = score_seconds = 0.0
    for machine in train.machine_types():
        detector = make_detector(config.detector, config.features, seed=seed)
        started = time.perf_counter()
        detector.fit(train.select(machine_type=machine), progress=config.progress)
        fit_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for kind, values in detector.score_manifest_kinds(test.select(machine_type=machine), config.progress).items():
            scores[kind].update(values)
        score_seconds += time.perf_counter() - started
    truth = ground_truth_from_manifest(test)
    out: dict[str, Any] = {"seed": seed, "fit_seconds": fit_seconds, "score_seconds": score_seconds}
    for kind in SCORE_KINDS:
        report = evaluate_scores(truth, scores[kind])
        out[kind] = {m: getattr(report.overall, m) for m in METRICS}
        out[kind]["per_machine_type"] = {mt: agg.model_dump() for mt, agg in report.machine_types.items()}
    return out


def run_seeds(train: Manifest, test: Manifest, config: AsdflowConfig, seeds: list[int]) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        runs.append(run_seed(train, test, config, seed))
        print(f"  seed {seed}: " + ", ".join(f"{k} official {runs[-1][k]['official']:.4f}" for k in SCORE_KINDS))
    summary = {
        kind: {metric: summarise(run[kind][metric] for run in runs) for metric in METRICS} for kind in SCORE_KINDS
    }
    return {"runs": runs, "summary": summary}


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for kind in SCORE_KINDS:
        row: dict[str, Any] = {"score": kind}
        for metric in METRICS:
            stats = result["summary"][kind][metric]
            row[metric] = f"{stats['mean']:.4f} ± {stats['std']:.4f}"
        rows.append(row)
    return rows
