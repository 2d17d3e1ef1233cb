"""tango_finetune: fine-tune Tango on one machine type's normal clips; register tango-<machine_type>."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import GPU_IMAGE


# GPU-capable: the pipeline adds the accelerator, node selector and toleration (pipelines/gpu.py).
@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def tango_finetune(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    prompts: Input[Dataset],  # the prompts component's folder (prompts.csv)
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    model: Output[Model],
) -> str:
    """`model`: <model>/model (LoRA adapters, UNet, tango.json) and checkpoints; returns the registered
    tango-<machine_type> version ("" when `synthesis.register_model` is off)."""
    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.synthesis.stages import finetune_stage

    config = component_config(config_profile, config_overrides)
    stage = finetune_stage(Manifest.load(manifest.path), machine_type, config, model.path, prompts.path)
    result = stage.finetune
    model.metadata.update({"machine_type": machine_type, "version": result.version, "steps": result.steps,
                           "strategy": result.strategy, "final_loss": result.final_loss,
                           "registered_version": stage.registered_version or ""})
    return stage.registered_version or ""
