"""prompts: the prompt table of one machine type's normal clips (asdflow.prompts), for Tango fine-tuning."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_prompts(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    prompts: Output[Dataset],
):
    """`prompts`: prompts.csv (clip, machine_type, strategy, text, score), prompts_summary.json and
    spectral_statistics.csv, for the validated manifest's normal clips of `machine_type` (`prompts` config)."""
    from asdflow.pipeline_ops import component_config
    from asdflow.prompts import write_prompt_table

    config = component_config(config_profile, config_overrides)
    run = write_prompt_table(prompts.path, machine_type, config, manifest=manifest.path)
    prompts.metadata.update({"machine_type": machine_type, "n_clips": run.summary["n_clips"],
                             "rows_per_strategy": run.summary["rows_per_strategy"]})
