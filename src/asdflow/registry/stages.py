"""Pipeline stages over the registry: one call per KFP component, artifact folders in.

A component hands over the folders earlier stages wrote; everything between
reading them and the registry (which clips, which scores, which report) is here,
so the component itself stays one line and the same stage runs outside KFP.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from asdflow.config import AsdflowConfig
from asdflow.registry.models import RegisteredDetector, register_detector
from asdflow.registry.tracking import log_training_run


def register_stage(
    detector_dir: str | Path,
    manifest_dir: str | Path,
    scores_dir: str | Path,
    evaluation_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig,
    *,
    data_version: str | None = None,
    project_dir: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
) -> RegisteredDetector:
    """Log one training run of `machine_type` (params, per-section metrics, plots, submission CSVs,
    git commit, data hash) and register the detector in `detector_dir` into that run as
    `asd-<machine_type>@challenger`.

    `manifest_dir` is the validated manifest (its train clips of `machine_type` are the training
    data, its test clips the evaluation data), `scores_dir` the score stage's scores,
    `evaluation_dir` the evaluate stage's report. `data_version` is recorded as a run tag
    ("latest" when empty)."""
    from asdflow.data.manifest import Manifest
    from asdflow.evaluation.metrics import EvaluationReport
    from asdflow.jobs import EVALUATION_FILE, read_scores

    clips = Manifest.load(manifest_dir).select(machine_type=machine_type)
    report = EvaluationReport.load(Path(evaluation_dir) / EVALUATION_FILE)
    scored = read_scores(scores_dir)
    run = log_training_run(
        machine_type, config, report=report, scores=dict(zip(scored["name"], scored["score"])),
        train_manifest=clips.select(split="train"), eval_manifest=clips.select(split="test"),
        detector_dir=detector_dir, project_dir=project_dir,
        tags={"data_version": data_version or "latest", **dict(tags or {})},
    )
    return register_detector(detector_dir, machine_type, config, run_id=run.run_id, report=report,
                             project_dir=project_dir)
