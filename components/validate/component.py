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
    from asdflow.pipeline_ops import component_config
    from asdflow.validation import validate_stage

    result = validate_stage(data.path, component_config(config_profile, config_overrides), report.path,
                            manifest_dir=manifest.path, machine_types=[machine_type] if machine_type else None)
    manifest.metadata.update({"n_clips": result.n_kept, "n_quarantined": len(result.quarantined)})
