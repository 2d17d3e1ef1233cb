"""The training pipeline of one machine type:

    fetch -> validate -> train -> score -> evaluate -> register (@challenger) -> gate --promote?--> promote

Parameters: the machine type, where the data lives (`project`: a checkout or git URL
holding data.dvc) and its DVC revision (`data_version`), the config profile and
config overrides (JSON). The gate re-scores challenger and champion side by side;
`promote` runs only when its verdict is "promote" (`dsl.If`).

Everything cluster-specific is compile-time and comes from the config the pipeline
is built from: images (`ClusterConfig.image_cpu/image_gpu`), GPU settings of the
GPU-capable step (`ClusterConfig.gpu`), and the Secrets mounted as env vars.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's annotations as objects.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

import components
from asdflow.config import AsdflowConfig
from asdflow.pipeline_ops import LATEST_REVISION
from pipelines.gpu import on_gpu, with_dvc_secret, with_mlflow_secret

PIPELINE_NAME = "asdflow-training"
PROMOTE = "promote"  # the gate's verdict that moves @champion


class TrainingOutputs(NamedTuple):
    verdict: str  # promote | keep | reject
    challenger_version: str  # the model version this run registered


def build_training_pipeline(config: AsdflowConfig, gpu: bool = True) -> GraphComponent:
    """The training pipeline, its images and cluster settings taken from `config`.

    `gpu=False` runs detector training in the CPU image without asking for an
    accelerator (a cluster with no GPU pool, or a family that does not need one).
    The config's profile is the default of the `config_profile` parameter.
    """
    cluster = config.cluster
    fetch = components.on_image(components.fetch_data, cluster.image_cpu)
    validate = components.on_image(components.validate_data, cluster.image_cpu)
    train = components.on_image(components.train_detector, cluster.image_gpu if gpu else cluster.image_cpu)
    score = components.on_image(components.score_clips, cluster.image_cpu)
    evaluate = components.on_image(components.evaluate_scores, cluster.image_cpu)
    register = components.on_image(components.register_challenger, cluster.image_cpu)
    gate = components.on_image(components.gate_challenger, cluster.image_cpu)
    promote = components.on_image(components.promote_champion, cluster.image_cpu)

    def step(task: dsl.PipelineTask, name: str, *, data: bool = False, mlflow: bool = False) -> dsl.PipelineTask:
        # Never cached: a registry step has side effects, and the same parameters
        # (data_version=HEAD) name different data from one week to the next.
        task.set_caching_options(False)
        task.set_display_name(name)
        if data:
            with_dvc_secret(task, cluster)
        if mlflow:
            with_mlflow_secret(task, cluster)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description="Train, evaluate, register and gate one machine type's detector.")
    def training(
        machine_type: str,
        project: str = ".",
        data_version: str = LATEST_REVISION,
        config_profile: str = config.profile,
        config_overrides: str = "{}",
    ) -> TrainingOutputs:
        settings = {"config_profile": config_profile, "config_overrides": config_overrides}
        fetched = step(fetch(project=project, data_version=data_version, **settings), "fetch data", data=True)
        data = fetched.outputs["data"]
        validated = step(validate(data=data, machine_type=machine_type, **settings), "validate data")
        manifest = validated.outputs["manifest"]
        trained = step(train(data=data, manifest=manifest, machine_type=machine_type, **settings), "train detector")
        if gpu:
            on_gpu(trained, cluster.gpu)
        detector = trained.outputs["detector"]
        scored = step(score(data=data, detector=detector, manifest=manifest, machine_type=machine_type, **settings),
                      "score test clips")
        evaluated = step(evaluate(scores=scored.outputs["scores"], manifest=manifest), "evaluate (DCASE score)")
        registered = step(
            register(detector=detector, manifest=manifest, scores=scored.outputs["scores"],
                     evaluation=evaluated.outputs["evaluation"], machine_type=machine_type,
                     data_version=data_version, **settings),
            "register challenger", mlflow=True,
        )
        gated = step(
            gate(data=data, manifest=manifest, machine_type=machine_type, challenger_version=registered.output,
                 **settings),
            "gate: challenger vs champion", mlflow=True,
        )
        # "Output", not a named output: kfp.local resolves conditions only on `<task>-Output` channels.
        with dsl.If(gated.outputs["Output"] == PROMOTE, name="gate-says-promote"):
            step(promote(decision=gated.outputs["decision"], **settings), "promote champion", mlflow=True)
        return TrainingOutputs(verdict=gated.outputs["Output"], challenger_version=registered.output)

    return training
