"""separation_train: the Conv-TasNet separator of one machine type, evaluated and registered (asdflow.separation.stages)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import GPU_IMAGE


# GPU-capable: the pipeline adds the accelerator, node selector and toleration (pipelines/gpu.py).
@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def separation_train(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    separator: Output[Model],
    metrics: Output[Metrics],
) -> str:
    """Train on mixtures of the machine type's supplemental clean and noise clips (a held-out part kept
    for evaluation), score SI-SNRi on held-out mixtures beside the Wiener baseline, register the
    separator in MLflow as `sep-<machine_type>`. `separator`: separator.json + separator.pt.
    Without supplemental clips the stage is skipped: the reason goes to the log, the artifact's
    metadata and an MLflow run, and denoise passes the clips on. Returns the registered version ("" when skipped)."""
    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.separation.stages import separation_train_stage

    config = component_config(config_profile, config_overrides)
    result = separation_train_stage(Manifest.load(manifest.path), machine_type, config, separator.path)
    if result.skipped_reason:  # no supplemental clips (DCASE 2023, a plant's data): not a failure
        print(f"separation skipped for {machine_type}: {result.skipped_reason}")
        separator.metadata.update({"machine_type": machine_type, "skipped": result.skipped_reason})
        return ""
    separator.metadata.update({"machine_type": machine_type, "version": result.version,
                               "si_snri_db": result.evaluation.si_snri_db})
    metrics.log_metric("si_snri_db", result.evaluation.si_snri_db)
    wiener = result.evaluation.scores.get("wiener_si_snri_db")
    if wiener is not None:
        metrics.log_metric("wiener_si_snri_db", float(wiener))
    return result.registered_version or ""
