"""The fine-tuned Tango in MLflow: registered as `tango-<machine_type>`.

One run per fine-tuned model records the `synthesis` config (params), the
fine-tuning figures and the quality report's numbers (metrics), and the model
folder (text-encoder LoRA adapter, VAE LoRA adapter, the UNet, tango.json) as a
pyfunc model: prompts in, waveforms out. Like the detectors it is a model from
code (no pickle); aliases, not stages: the new version gets `@challenger`.
The base model (the pretrained Tango, or a tiny one rebuilt from its seed) is
named in tango.json and not copied: adapters and UNet are what fine-tuning made.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from pydantic import BaseModel

from asdflow.config import AsdflowConfig
from asdflow.errors import DataError, one_line
from asdflow.registry.models import CHALLENGER, RegistryError

TANGO_ARTIFACT = "tango"  # key in the model's artifacts dict
MODEL_NAME_IN_RUN = "tango"
PROMPT_COLUMN, SEED_COLUMN, OUTPUT_COLUMN = "prompt", "seed", "waveform"

ENTRY_SCRIPT = """\
# Written by asdflow.registry.tango: the pyfunc entry point of a registered fine-tuned Tango.
from mlflow.models import set_model

from asdflow.registry.tango import TangoPyfunc

set_model(TangoPyfunc())
"""


class RegisteredTango(BaseModel):
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/tango-<mt>/<version>
    alias: str | None = None
    tango_version: str = ""  # the weights' content hash (tango.json)


def tango_model_name(machine_type: str, config: AsdflowConfig | None = None) -> str:
    template = config.synthesis.model_name_template if config is not None else "tango-{machine_type}"
    return template.format(machine_type=machine_type)


def tango_pip_requirements() -> list[str]:
    import importlib.metadata as md

    from asdflow.registry.pyfunc_model import pip_requirements

    names = ["diffusers", "transformers", "peft", "safetensors", "librosa"]
    extra = []
    for name in names:
        try:
            extra.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            extra.append(name)
    return [*pip_requirements(), *extra]


class TangoPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with `prompt` (and optionally `seed`); output: `waveform` (16 kHz float samples).
    params: guidance_scale, inference_steps, duration (default: the model's synthesis settings)."""

    def __init__(self) -> None:
        self.model = None
        self.info: dict = {}

    def load_context(self, context) -> None:
        from asdflow.synthesis.finetune import load_finetuned_tango, model_info

        folder = context.artifacts[TANGO_ARTIFACT]
        self.model, self.info = load_finetuned_tango(folder), model_info(folder)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        if self.model is None:
            raise DataError("the Tango pyfunc has no model: load it with mlflow.pyfunc.load_model")
        if PROMPT_COLUMN not in model_input.columns:
            raise DataError(f"model input needs a '{PROMPT_COLUMN}' column (got {list(model_input.columns)})")
        from asdflow.synthesis.config import SynthesisConfig

        config = SynthesisConfig(**{**self.info["synthesis"], **(params or {})})
        n_frames = self.model.mel.n_frames(config.duration, self.model.frame_multiple)
        seeds = (model_input[SEED_COLUMN].astype(int).tolist() if SEED_COLUMN in model_input.columns
                 else list(range(len(model_input))))
        waves = self.model.sample(model_input[PROMPT_COLUMN].astype(str).tolist(), n_frames, config.inference_steps,
                                  config.guidance_scale, [torch.Generator().manual_seed(s) for s in seeds], config)
        n = int(round(config.duration * config.sample_rate))
        return pd.DataFrame({OUTPUT_COLUMN: [w[:n].astype(np.float64) for w in waves.numpy()]})


def register_tango(
    model_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig,
    metrics: Mapping[str, float] | None = None,
    *,
    project_dir: str | Path | None = None,
    alias: str | None = CHALLENGER,
    tags: Mapping[str, str] | None = None,
) -> RegisteredTango:
    """Log one run (synthesis params, `metrics`, the fine-tuned model as a pyfunc) and register it as
    `tango-<machine_type>`, pointing `alias` at the new version. Version tags: machine_type,
    tango_version (weights hash), base (the base model), strategy, steps, run_id, finite metrics."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from asdflow.registry.tracking import artifact_progress, configure_tracking, flatten_params, git_commit
    from asdflow.synthesis.finetune import MODEL_JSON, TEXT_LORA, UNET_DIR, VAE_LORA

    model_dir = Path(model_dir)
    missing = [p for p in (MODEL_JSON, TEXT_LORA, VAE_LORA, UNET_DIR) if not (model_dir / p).exists()]
    if missing:
        raise RegistryError(f"no fine-tuned Tango to register in {model_dir}: {', '.join(missing)} missing")
    info = json.loads((model_dir / MODEL_JSON).read_text())
    if info.get("machine_type") not in (None, machine_type):
        raise RegistryError(f"{model_dir} holds a Tango for {info['machine_type']}, not for {machine_type}")
    finite = {k: float(v) for k, v in (metrics or {}).items() if v is not None and math.isfinite(float(v))}
    experiment_id = configure_tracking(config.tracking, project_dir)
    name = tango_model_name(machine_type, config)
    client = mlflow.MlflowClient()
    summary = {"machine_type": machine_type, "tango_version": str(info.get("version", "")),
               "base": str(info.get("base", "")), "strategy": str(info.get("strategy", "")),
               "steps": str(info.get("steps", ""))}
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"tango-{machine_type}") as run, \
                tempfile.TemporaryDirectory(prefix="asdflow-tango-") as tmp, warnings.catch_warnings(), \
                artifact_progress(False):
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            mlflow.set_tags({**summary, "stage": "synthesis", "asdflow_profile": config.profile,
                             "git_commit": git_commit(project_dir) or "unknown", **dict(tags or {})})
            mlflow.log_params(flatten_params(config, sections=("synthesis",)))
            if finite:
                mlflow.log_metrics(finite)
            entry = Path(tmp) / "asdflow_tango_model.py"
            entry.write_text(ENTRY_SCRIPT)
            logged = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN, python_model=str(entry), artifacts={TANGO_ARTIFACT: str(model_dir)},
                pip_requirements=tango_pip_requirements(),
            )
            run_id = run.info.run_id
        version_tags = {**summary, "run_id": run_id, **{k: repr(v) for k, v in finite.items()}}
        mv = mlflow.register_model(logged.model_uri, name, tags=version_tags)
        client.set_registered_model_tag(name, "machine_type", machine_type)
        if alias:
            client.set_registered_model_alias(name, alias, str(mv.version))
    except MlflowException as err:
        raise RegistryError(f"cannot register {model_dir} as {name}: {one_line(err)}") from None
    return RegisteredTango(name=name, version=str(mv.version), run_id=run_id,
                           model_uri=f"models:/{name}/{mv.version}", alias=alias,
                           tango_version=summary["tango_version"])
