"""denoise: the machine stream of one machine type's train and test clips (asdflow.separation.stages)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def denoise_data(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    separator: Input[Model],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    separated: Output[Dataset],
):
    """`separated`: the separated clips in the same DCASE layout and names, their manifest.csv
    (labels, domains, attributes copied) and separation_manifest.json (the separator's version).
    Later stages take it as both their `data` and their `manifest`."""
    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.separation.stages import denoise_stage

    config = component_config(config_profile, config_overrides)
    result = denoise_stage(separator.path, Manifest.load(manifest.path), machine_type, separated.path, config.progress,
                           lineage_from=manifest.path)
    separated.metadata.update({"machine_type": machine_type, "n_clips": result.n_written,
                               "n_problems": len(result.problems)})
    if result.skipped_reason:
        print(f"denoise: clips passed on unchanged ({result.skipped_reason})")
        separated.metadata["skipped"] = result.skipped_reason
