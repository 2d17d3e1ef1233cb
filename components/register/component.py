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
    registered_before: str = "",
    data_lineage: str = "",
    separator: Input[Model] = None,
) -> str:
    """Log params, per-section metrics, plots, submission CSVs, git commit and data hash as one
    MLflow run, then register the detector into it as the pyfunc model `asd-<machine_type>`
    with alias `challenger`. Returns the new model version, after `registered_before` (the
    versions this pipeline run registered already, comma-separated: one per detector family).
    `data_lineage`: the fetch step's lineage JSON (the commit fetched and data.dvc's hash there);
    when not passed, the lineage file that travels with the manifest (validate and denoise carry
    the fetch step's) is read.
    `separator` (`separation.use: separated`): the separator the detector was trained behind; the
    registered model carries and applies it, so the gate and the server score raw clips through it."""
    from asdflow.pipeline_ops import component_config
    from asdflow.registry import register_stage

    version = register_stage(detector.path, manifest.path, scores.path, evaluation.path, machine_type,
                             component_config(config_profile, config_overrides), data_version=data_version,
                             data_lineage=data_lineage,
                             separator_dir=separator.path if separator is not None else None).version
    return ",".join(v for v in (registered_before, version) if v)
