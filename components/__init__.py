"""KFP components: one thin `@dsl.component` per stage, each calling one `asdflow` function.

Stages: fetch -> validate -> [separation_train -> denoise] [prompts -> tango_finetune -> generate] [simulate]
-> train -> score -> evaluate -> register (per detector family) -> gate -> promote.
Every component imports asdflow inside its body (KFP ships the function's source
into the container, where the project image provides asdflow), takes the config
as a profile name plus JSON overrides (`asdflow.pipeline_ops.component_config`),
and passes plain folders between stages as artifacts.
"""

from __future__ import annotations

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from components.denoise.component import denoise_data
from components.evaluate.component import evaluate_scores
from components.fetch.component import fetch_data
from components.gate.component import gate_challenger
from components.generate.component import generate_synthetic_normals
from components.images import CPU_IMAGE, GPU_IMAGE, Images, image_names
from components.promote.component import promote_champion
from components.prompts.component import build_prompts
from components.register.component import register_challenger
from components.score.component import score_clips
from components.separation_train.component import separation_train
from components.simulate.component import simulate_anomalies
from components.tango_finetune.component import tango_finetune
from components.train.component import train_detector
from components.validate.component import validate_data

ALL = (fetch_data, validate_data, train_detector, score_clips, evaluate_scores, register_challenger, gate_challenger,
       promote_champion, separation_train, denoise_data, build_prompts, tango_finetune, generate_synthetic_normals,
       simulate_anomalies)


def image_of(component: PythonComponent) -> str:
    return component.component_spec.implementation.container.image


def on_image(component: PythonComponent, image: str) -> PythonComponent:
    """The same component running in another image (a pipeline built from another config's ClusterConfig)."""
    if image_of(component) == image:
        return component
    return dsl.component(base_image=image, install_kfp_package=False)(component.python_func)


__all__ = [
    "ALL",
    "CPU_IMAGE",
    "GPU_IMAGE",
    "Images",
    "build_prompts",
    "denoise_data",
    "evaluate_scores",
    "fetch_data",
    "gate_challenger",
    "generate_synthetic_normals",
    "image_of",
    "image_names",
    "on_image",
    "promote_champion",
    "register_challenger",
    "score_clips",
    "separation_train",
    "simulate_anomalies",
    "tango_finetune",
    "train_detector",
    "validate_data",
]
