"""The fleet pipeline: every machine type of the dataset, from one fetch and one validation.

    fetch -> validate (every machine type found, or the ones named) -> per machine type
    (`dsl.ParallelFor` over validate's list): the training pipeline's stages after validation
    (separation, synthesis, simulation, train/score/evaluate/register per family, gate, promote)

The data is fetched and validated once and each machine type's branch reads its part of
it, so seven machine types cost one copy of the dataset, not seven. The machine types
come from the data itself (at the revision fetched) unless `machine_types` names some
("fan,valve"). One machine type's bad clips leave it out of the run (named in the
validation report) without holding back the others, and on a cluster one machine
type's failed step never stops another's branch; kfp.local (2.17) stops the whole run at the first failed task, so
`asdflow pipeline run --local` runs one training pipeline per machine type by default.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's annotations as objects.
from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from asdflow.config import AsdflowConfig
from asdflow.pipeline_ops import LATEST_REVISION
from pipelines.training import DetectorInputs, _Steps, machine_type_stages

PIPELINE_NAME = "asdflow-fleet"
EVERY_MACHINE_TYPE = ""  # the `machine_types` default: whatever the data holds


def build_fleet_pipeline(config: AsdflowConfig, gpu: bool = True, parallelism: int = 0) -> GraphComponent:
    """The fleet pipeline built from `config`. `parallelism`: machine types trained at once (0 = all)."""
    steps = _Steps(config, gpu)

    @dsl.pipeline(name=PIPELINE_NAME, description="Every machine type of the dataset, side by side, "
                                                  "from one fetch and one validation.")
    def fleet(
        machine_types: str = EVERY_MACHINE_TYPE,
        project: str = ".",
        data_version: str = LATEST_REVISION,
        config_profile: str = config.profile,
        config_overrides: str = "{}",
    ):
        settings = {"config_profile": config_profile, "config_overrides": config_overrides}
        fetched = steps.step(steps.fetch(project=project, data_version=data_version, **settings), "fetch data",
                             data=True)
        # a machine type whose clips fail is left out and named; the others train (isolate)
        validated = steps.step(steps.validate(data=fetched.outputs["data"], machine_type=machine_types,
                                              isolate=True, **settings), "validate data (every machine type)")
        shared = DetectorInputs(data=fetched.outputs["data"], manifest=validated.outputs["manifest"])
        with dsl.ParallelFor(validated.outputs["Output"], parallelism=parallelism,
                             name="each-machine-type") as machine_type:
            machine_type_stages(steps, shared, machine_type, data_version, settings)

    return fleet
