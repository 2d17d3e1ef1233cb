"""register: record the run in MLflow, register the detector as `asd-<machine_type>@challenger` (asdflow.registry)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_challenger(
    detector: Input[Model],
    manifest: Input[Dataset],
    scores: Input[Dataset],
    evaluation: Input[Artifact],
    machine_type: str,
    data_version: str,
    config_profile: str,
    config_overrides: str,
) -> str:
    """Log params, per-section metrics, plots, submission CSVs, git commit and data hash as one
    MLflow run, then register the detector into it as the pyfunc model `asd-<machine_type>`
    with alias `challenger`. Returns the new model version."""
    from pathlib import Path

    from asdflow.data.manifest import Manifest
    from asdflow.evaluation.metrics import EvaluationReport
    from asdflow.jobs import EVALUATION_FILE, read_scores
    from asdflow.pipeline_ops import component_config
    from asdflow.registry import log_training_run, register_detector

    config = component_config(config_profile, config_overrides)
    clips = Manifest.load(manifest.path).select(machine_type=machine_type)
    report = EvaluationReport.load(Path(evaluation.path) / EVALUATION_FILE)
    scored = read_scores(scores.path)
    run = log_training_run(
        machine_type, config, report=report, scores=dict(zip(scored["name"], scored["score"])),
        train_manifest=clips.select(split="train"), eval_manifest=clips.select(split="test"),
        detector_dir=detector.path, tags={"data_version": data_version or "latest"},
    )
    return register_detector(detector.path, machine_type, config, run_id=run.run_id, report=report).version
