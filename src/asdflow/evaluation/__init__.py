"""Evaluation: the DCASE official score, submission files, diagnostic plots.

Plots import matplotlib only when used: `from asdflow.evaluation.plots import plot_roc`.
"""

from asdflow.evaluation.metrics import (
    MAX_FPR,
    AggregateScore,
    EvaluationReport,
    SectionScore,
    clip_key,
    evaluate_scores,
    ground_truth_from_manifest,
)
from asdflow.evaluation.submission import read_submission, write_submission

__all__ = [
    "MAX_FPR",
    "AggregateScore",
    "EvaluationReport",
    "SectionScore",
    "clip_key",
    "evaluate_scores",
    "ground_truth_from_manifest",
    "read_submission",
    "write_submission",
]
