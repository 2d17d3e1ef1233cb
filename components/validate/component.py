"""validate: Great Expectations on the dataset before anything trains on it (asdflow.validation)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_data(
    data: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    manifest: Output[Dataset],
    report: Output[Artifact],
):
    """Validate the fetched clips of `machine_type` ("" = every machine type); stop the run naming every
    failing clip and expectation.

    `manifest`: the clips later stages use (without the quarantined ones when
    `validation.quarantine` is on), by their paths inside `data`. `report`:
    validation.json/.html, clip_stats.csv and quarantine.json.
    """
    from asdflow.data.dcase_reader import build_manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.validation import raise_on_failure, validate_dataset

    config = component_config(config_profile, config_overrides)
    # Read the clips themselves: a manifest.csv versioned with the data would name another folder.
    clips = build_manifest(data.path, [machine_type] if machine_type else None, progress=config.progress)
    result = validate_dataset(clips, config.validation, report.path, progress=config.progress)
    raise_on_failure(result)
    result.kept_manifest.save(manifest.path)
    manifest.metadata.update({"n_clips": result.n_kept, "n_quarantined": len(result.quarantined)})
