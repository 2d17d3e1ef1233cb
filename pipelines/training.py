"""The training pipeline of one machine type:

    fetch -> validate [-> separation_train -> denoise]
          [-> prompts -> tango_finetune -> generate]            (synthetic normals)
          [-> simulate]                                          (simulated anomalies, a visual check)
          -> per detector family: train -> score -> evaluate -> register (@challenger)
          -> gate (every challenger of this run and the champion) --promote?--> promote

Parameters: the machine type, where the data lives (`project`: a checkout or git URL
holding data.dvc) and its DVC revision (`data_version`), the config profile and
config overrides (JSON). The gate re-scores challenger and champion side by side;
`promote` runs only when its verdict is "promote" (`dsl.If`).

Everything that shapes the graph is compile-time and comes from the config the pipeline
is built from: images (`ClusterConfig.image_cpu/image_gpu`), GPU settings of the
GPU-capable steps (`ClusterConfig.gpu`), the Secrets mounted as env vars, and the
separation steps (`separation.enabled`, `separation.use`):
- disabled, or `use: original` with separation enabled: the separator is still trained,
  evaluated and registered (`sep-<mt>`) and the clips denoised, but the detector trains and
  is scored on the original clips;
- `use: separated`: train, score, evaluate and register read the separated dataset (the
  denoise step's output is both their `data` and their `manifest`); the registered model
  carries the separator and applies it, so the gate scores the original clips through it,
  exactly as the server will;
- `use: both`: the detector trains on the original clips plus the separated train clips
  (`extra_train`), and is scored and gated on the original clips.
Likewise `synthesis.enabled` adds prompts -> Tango fine-tuning (GPU) -> generation (GPU), and
`synthesis.add_to_training` hands the generated normals to every detector's training;
`simulation.enabled` adds the simulate step (spectrogram plots of simulated anomalies; the
discriminator and AudDSR families simulate their own while training); `detector.families`
(default: just `detector.family`) trains, scores and registers one challenger per family,
and the gate measures all of them with the champion on the same clips.
The config a step runs with at run time (profile + overrides) must agree with the one the
graph was built from on these sections; the others may differ.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's annotations as objects.
from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.pipeline_channel import PipelineChannel

import components
from asdflow.config import AsdflowConfig
from asdflow.pipeline_ops import LATEST_REVISION
from pipelines.gpu import on_gpu, with_dvc_secret, with_mlflow_secret

PIPELINE_NAME = "asdflow-training"
PROMOTE = "promote"  # the gate's verdict that moves @champion


class TrainingOutputs(NamedTuple):
    verdict: str  # promote | keep | reject
    challenger_version: str  # the model versions this run registered, comma-separated (one per family)


class DetectorInputs(NamedTuple):
    """The clips the detector steps read: fetched or separated, and optional extra training clips."""

    data: PipelineChannel  # clips the detector trains on and is scored on
    manifest: PipelineChannel
    extra_train: Optional[PipelineChannel] = None
    synthetic: Optional[PipelineChannel] = None  # generated normals that join training
    separator: Optional[PipelineChannel] = None  # `use: separated`: registered with the detector, applied when served


class _Steps:
    """The pipeline's components on the config's images, and how each kind of step is set up."""

    def __init__(self, config: AsdflowConfig, gpu: bool):
        self.config, self.cluster, self.gpu = config, config.cluster, gpu
        cpu, gpu_image = self.cluster.image_cpu, self.cluster.image_gpu if gpu else self.cluster.image_cpu
        on = components.on_image
        self.fetch = on(components.fetch_data, cpu)
        self.validate = on(components.validate_data, cpu)
        self.separation_train = on(components.separation_train, gpu_image)
        self.denoise = on(components.denoise_data, cpu)
        self.prompts = on(components.build_prompts, cpu)
        self.tango_finetune = on(components.tango_finetune, gpu_image)
        self.generate = on(components.generate_synthetic_normals, gpu_image)
        self.simulate = on(components.simulate_anomalies, cpu)
        self.train = on(components.train_detector, gpu_image)
        self.score = on(components.score_clips, cpu)
        self.evaluate = on(components.evaluate_scores, cpu)
        self.register = on(components.register_challenger, cpu)
        self.gate = on(components.gate_challenger, cpu)
        self.promote = on(components.promote_champion, cpu)

    def step(self, task: dsl.PipelineTask, name: str, *, data: bool = False, mlflow: bool = False,
             accelerated: bool = False) -> dsl.PipelineTask:
        # Never cached: a registry step has side effects, and the same parameters
        # (data_version=HEAD) name different data from one week to the next.
        task.set_caching_options(False)
        task.set_display_name(name)
        if data:
            with_dvc_secret(task, self.cluster)
        if mlflow:
            with_mlflow_secret(task, self.cluster)
        if accelerated and self.gpu:
            on_gpu(task, self.cluster.gpu)
        return task


# -- stage groups (each adds its tasks to the pipeline being defined) ------------------------------


def _fetch_and_validate(s: _Steps, machine_type, project, data_version, settings: dict) -> DetectorInputs:
    fetched = s.step(s.fetch(project=project, data_version=data_version, **settings), "fetch data", data=True)
    data = fetched.outputs["data"]
    validated = s.step(s.validate(data=data, machine_type=machine_type, **settings), "validate data")
    return DetectorInputs(data=data, manifest=validated.outputs["manifest"])


def _separation(s: _Steps, original: DetectorInputs, machine_type, settings: dict) -> DetectorInputs:
    """separation_train -> denoise, and what the detector then reads (`separation.use`)."""
    trained = s.step(
        s.separation_train(data=original.data, manifest=original.manifest, machine_type=machine_type, **settings),
        "train separator", mlflow=True, accelerated=True,
    )
    denoised = s.step(
        s.denoise(data=original.data, manifest=original.manifest, separator=trained.outputs["separator"],
                  machine_type=machine_type, **settings),
        "denoise clips (machine stream)",
    )
    separated = denoised.outputs["separated"]
    use = s.config.separation.use
    if use == "separated":
        return original._replace(data=separated, manifest=separated, separator=trained.outputs["separator"])
    if use == "both":
        return original._replace(extra_train=separated)
    return original


def _synthesis(s: _Steps, original: DetectorInputs, inputs: DetectorInputs, machine_type,
               settings: dict) -> DetectorInputs:
    """prompts -> tango_finetune -> generate on the original clips; the normals join training by config."""
    clips = {"data": original.data, "manifest": original.manifest, "machine_type": machine_type, **settings}
    prompts = s.step(s.prompts(**clips), "prompts").outputs["prompts"]
    tuned = s.step(s.tango_finetune(prompts=prompts, **clips), "fine-tune Tango", mlflow=True, accelerated=True)
    generated = s.step(s.generate(prompts=prompts, model=tuned.outputs["model"], **clips),
                       "generate synthetic normals", mlflow=True, accelerated=True)
    if s.config.synthesis.add_to_training:
        return inputs._replace(synthetic=generated.outputs["synthetic"])
    return inputs


def _simulation(s: _Steps, original: DetectorInputs, machine_type, settings: dict) -> None:
    s.step(s.simulate(data=original.data, manifest=original.manifest, machine_type=machine_type, **settings),
           "simulate anomalies (plots)")


def families(config: AsdflowConfig) -> list[str]:
    """The detector families the pipeline trains: `detector.families`, else `detector.family`."""
    return list(dict.fromkeys(config.detector.families or [config.detector.family]))


def _train_score_evaluate_register(s: _Steps, inputs: DetectorInputs, machine_type, data_version,
                                   settings: dict, family: str, registered_before):
    """One family: train -> score -> evaluate -> register; returns the versions registered so far."""
    extra = {k: v for k, v in (("extra_train", inputs.extra_train), ("synthetic", inputs.synthetic)) if v is not None}
    several = len(families(s.config)) > 1  # one family: the config's own, as the run-time config says
    label = f" ({family})" if several else ""
    if several:
        extra["family"] = family
    trained = s.step(s.train(data=inputs.data, manifest=inputs.manifest, machine_type=machine_type,
                             **extra, **settings),
                     f"train detector{label}", accelerated=True)
    detector = trained.outputs["detector"]
    scored = s.step(s.score(data=inputs.data, detector=detector, manifest=inputs.manifest,
                            machine_type=machine_type, **settings), f"score test clips{label}")
    evaluated = s.step(s.evaluate(scores=scored.outputs["scores"], manifest=inputs.manifest),
                       f"evaluate (DCASE score){label}")
    before = {"registered_before": registered_before} if registered_before is not None else {}
    if inputs.separator is not None:  # the registered model carries the separator it was trained behind
        before["separator"] = inputs.separator
    registered = s.step(
        s.register(detector=detector, manifest=inputs.manifest, scores=scored.outputs["scores"],
                   evaluation=evaluated.outputs["evaluation"], machine_type=machine_type,
                   data_version=data_version, **before, **settings),
        f"register challenger{label}", mlflow=True,
    )
    return registered.output


def _gate_promote(s: _Steps, inputs: DetectorInputs, challengers, machine_type, settings: dict) -> TrainingOutputs:
    gated = s.step(
        s.gate(data=inputs.data, manifest=inputs.manifest, machine_type=machine_type,
               challenger_version=challengers, **settings),
        "gate: challenger vs champion", mlflow=True,
    )
    # "Output", not a named output: kfp.local resolves conditions only on `<task>-Output` channels.
    with dsl.If(gated.outputs["Output"] == PROMOTE, name="gate-says-promote"):
        s.step(s.promote(decision=gated.outputs["decision"], **settings), "promote champion", mlflow=True)
    return TrainingOutputs(verdict=gated.outputs["Output"], challenger_version=challengers)


def build_training_pipeline(config: AsdflowConfig, gpu: bool = True) -> GraphComponent:
    """The training pipeline, its images, cluster settings and optional stages taken from `config`.

    `gpu=False` runs the GPU-capable steps (separator, Tango and detector training, generation) in the CPU image
    without asking for an accelerator (a cluster with no GPU pool, or a family that does not
    need one). The config's profile is the default of the `config_profile` parameter.
    """
    steps = _Steps(config, gpu)

    @dsl.pipeline(name=PIPELINE_NAME, description="Train, evaluate, register and gate one machine type's detector.")
    def training(
        machine_type: str,
        project: str = ".",
        data_version: str = LATEST_REVISION,
        config_profile: str = config.profile,
        config_overrides: str = "{}",
    ) -> TrainingOutputs:
        settings = {"config_profile": config_profile, "config_overrides": config_overrides}
        original = _fetch_and_validate(steps, machine_type, project, data_version, settings)
        return machine_type_stages(steps, original, machine_type, data_version, settings)

    return training


def machine_type_stages(steps: _Steps, original: DetectorInputs, machine_type, data_version,
                        settings: dict) -> TrainingOutputs:
    """Everything after validation for one machine type, on the fetched and validated clips `original`
    (the training pipeline's own, or the fleet's shared ones)."""
    config = steps.config
    inputs = original
    if config.separation.enabled:
        inputs = _separation(steps, inputs, machine_type, settings)
    if config.synthesis.enabled:
        inputs = _synthesis(steps, original, inputs, machine_type, settings)
    if config.simulation.enabled:
        _simulation(steps, original, machine_type, settings)
    registered = None  # chained: each register step returns every version registered before it and its own
    for family in families(config):
        registered = _train_score_evaluate_register(steps, inputs, machine_type, data_version, settings,
                                                    family, registered)
    # the gate scores the original clips through each registered model's whole path, as the server will
    return _gate_promote(steps, original, registered, machine_type, settings)
