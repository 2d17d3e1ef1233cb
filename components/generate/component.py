"""generate: synthetic normal training clips from the fine-tuned Tango, and their quality checks."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.images import GPU_IMAGE


# GPU-capable: the pipeline adds the accelerator, node selector and toleration (pipelines/gpu.py).
@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def generate_synthetic_normals(
    data: Input[Dataset],  # the fetched clips (levels, sections, the quality reference)
    manifest: Input[Dataset],
    prompts: Input[Dataset],
    model: Input[Model],  # tango_finetune's output
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    synthetic: Output[Dataset],
    quality: Output[Artifact],
):
    """`synthetic`: a DCASE-layout root (<machine_type>/train/*.wav, metadata.csv, manifest.csv with
    synthetic=True), to pass to detector training as an extra training folder; `quality`: the report."""
    from pathlib import Path

    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.synthesis.finetune import MODEL_DIR
    from asdflow.synthesis.stages import generate_stage

    config = component_config(config_profile, config_overrides)
    stage = generate_stage(Path(model.path) / MODEL_DIR, Manifest.load(manifest.path), machine_type, config,
                           synthetic.path, prompts.path, quality_dir=quality.path)
    synthetic.metadata.update({"machine_type": machine_type, "n_clips": len(stage.generate.clips),
                               "per_strategy": stage.generate.per_strategy,
                               "model_version": stage.generate.model_version})
    if stage.quality is not None:
        quality.metadata.update({k: v for k, v in stage.quality.metrics().items()})
    else:
        quality.metadata.update({"error": stage.quality_error or ""})
