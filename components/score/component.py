"""score: the detector's anomaly score for every test clip of one machine type (asdflow.jobs)."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def score_clips(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    detector: Input[Model],
    manifest: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    scores: Output[Dataset],
):
    """`scores`: scores.csv and the DCASE submission CSVs (anomaly_score_*, decision_result_*)."""
    from asdflow.data.manifest import Manifest
    from asdflow.jobs import score_clips
    from asdflow.pipeline_ops import component_config

    config = component_config(config_profile, config_overrides)
    result = score_clips(detector.path, Manifest.load(manifest.path), machine_type, scores.path, config.progress)
    scores.metadata.update({"machine_type": machine_type, "n_clips": result.n_clips})
