"""The fleet pipeline: the training pipeline of every machine type, fanned out with `dsl.ParallelFor`.

Each machine type runs the whole training pipeline (fetch, validate, ..., gate,
promote) on its own: on a cluster one machine type's bad data or rejected
challenger never holds back another's. kfp.local (2.17) stops the whole run at
the first failed task, so `asdflow pipeline run --local` runs one training
pipeline per machine type by default and lists each failure apart.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's annotations as objects.
from typing import List

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from asdflow.config import AsdflowConfig
from asdflow.pipeline_ops import LATEST_REVISION
from pipelines.training import build_training_pipeline

PIPELINE_NAME = "asdflow-fleet"


def build_fleet_pipeline(config: AsdflowConfig, gpu: bool = True, parallelism: int = 0) -> GraphComponent:
    """The fleet pipeline built from `config`; its default machine types are the served ones
    (`serving.machine_types`). `parallelism`: machine types trained at once (0 = all)."""
    training = build_training_pipeline(config, gpu=gpu)

    @dsl.pipeline(name=PIPELINE_NAME, description="The training pipeline of every machine type, side by side.")
    def fleet(
        machine_types: List[str] = list(config.serving.machine_types),
        project: str = ".",
        data_version: str = LATEST_REVISION,
        config_profile: str = config.profile,
        config_overrides: str = "{}",
    ):
        with dsl.ParallelFor(machine_types, parallelism=parallelism, name="each-machine-type") as machine_type:
            training(machine_type=machine_type, project=project, data_version=data_version,
                     config_profile=config_profile, config_overrides=config_overrides).set_display_name(
                "train machine type")

    return fleet
