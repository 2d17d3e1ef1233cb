"""train: fit the configured detector family on one machine type's normal clips (asdflow.jobs)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import GPU_IMAGE


# GPU-capable: the pipeline adds the accelerator, node selector and toleration (pipelines/gpu.py).
@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_detector(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    detector: Output[Model],
    extra_train: Optional[Input[Dataset]] = None,
    synthetic: Optional[Input[Dataset]] = None,
    family: str = "",
):
    """Train on the validated manifest's normal training clips of `machine_type`; `detector` is the saved folder.
    `extra_train` (optional): a DCASE-layout folder (e.g. the denoise step's separated clips) whose normal
    train clips of `machine_type` join training (asdflow.jobs.extra_training_clips); `synthetic` (optional):
    generated normals joining training the same way. `family`: the detector family (empty: the config's)."""
    from asdflow.data.manifest import Manifest
    from asdflow.jobs import train_detector
    from asdflow.pipeline_ops import component_config

    config = component_config(config_profile, config_overrides)
    extra = [folder.path for folder in (extra_train, synthetic) if folder is not None]
    result = train_detector(Manifest.load(manifest.path), machine_type, config, detector.path, extra_train=extra,
                            family=family or None)
    detector.metadata.update({"machine_type": machine_type, "family": result.family, "threshold": result.threshold})
