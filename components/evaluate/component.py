"""evaluate: the DCASE official score of the scored clips, with ROC and histogram plots (asdflow.jobs)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate_scores(
    scores: Input[Dataset],
    manifest: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
):
    """`evaluation`: evaluation.json, roc.png, score_histogram.png. `metrics`: official, AUC source,
    AUC target and pAUC over the scored clips, for the KFP UI."""
    import math

    from asdflow.data.manifest import Manifest
    from asdflow.jobs import evaluate_clips, read_scores

    report = evaluate_clips(read_scores(scores.path), Manifest.load(manifest.path), evaluation.path)
    if report.not_evaluated:  # no labelled anomalies: nothing official to show; the gate simulates them
        evaluation.metadata["not_evaluated"] = report.not_evaluated
        return
    if report.partial:
        evaluation.metadata["partial"] = report.partial
    for name in ("official", "auc_source", "auc_target", "pauc"):
        value = float(getattr(report.overall, name))
        if math.isfinite(value):  # a partial evaluation lacks a domain's AUC; KFP cannot store NaN
            metrics.log_metric(name, value)
