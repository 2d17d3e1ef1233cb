"""The two synthesis stages on folders: what the CLI and the KFP components call.

- `finetune_stage`: prompt table (given, or built by asdflow.prompts) -> fine-tuned
  Tango in `<out>/model` (+ checkpoints), registered as `tango-<machine_type>`
  when `synthesis.register_model` is on.
- `generate_stage`: fine-tuned model -> synthetic normal clips in a DCASE-layout
  root (+ metadata.csv, manifest.csv with synthetic=True) and the quality report
  (JSON + per-clip CSV, logged to MLflow).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.errors import AsdflowError
from asdflow.synthesis.finetune import FinetuneResult, build_prompts, finetune_tango, read_prompt_table
from asdflow.synthesis.generate import GenerateResult, generate_normals
from asdflow.synthesis.quality import QualityReport, quality_report
from asdflow.torch_threads import torch_threads

log = logging.getLogger(__name__)


class FinetuneStageResult(BaseModel):
    finetune: FinetuneResult
    registered_name: str | None = None
    registered_version: str | None = None


class GenerateStageResult(BaseModel):
    generate: GenerateResult
    quality: QualityReport | None = None
    quality_error: str | None = None  # why the quality checks could not run (the clips are kept)


def _manifest(data: Manifest | str | Path, progress: bool) -> Manifest:
    if isinstance(data, Manifest):
        return data
    from asdflow.jobs import load_dataset

    return load_dataset(data, progress)


def _prompts(prompts: pd.DataFrame | str | Path | None, manifest: Manifest, machine_type: str,
             config: AsdflowConfig, strategies: list[str]) -> pd.DataFrame:
    if isinstance(prompts, pd.DataFrame):
        return prompts
    if prompts is not None:
        return read_prompt_table(prompts)
    return build_prompts(manifest.select(machine_type=machine_type), machine_type, config, strategies)


def finetune_stage(data: Manifest | str | Path, machine_type: str, config: AsdflowConfig, out_dir: str | Path,
                   prompts: pd.DataFrame | str | Path | None = None, *, register: bool | None = None,
                   project_dir: str | Path | None = None, device: str | None = None) -> FinetuneStageResult:
    manifest = _manifest(data, config.progress)
    table = _prompts(prompts, manifest, machine_type, config, [config.synthesis.prompt_strategy])
    with torch_threads(config.synthesis.num_threads):
        result = finetune_tango(manifest, machine_type, config, out_dir, table, device=device)
    stage = FinetuneStageResult(finetune=result)
    if config.synthesis.register_model if register is None else register:
        from asdflow.registry.tango import register_tango

        metrics = {"final_loss": result.final_loss, "steps_per_second": result.steps_per_second,
                   "n_clips": result.n_clips}
        registered = register_tango(result.model_dir, machine_type, config, metrics, project_dir=project_dir)
        stage.registered_name, stage.registered_version = registered.name, registered.version
    return stage


def clap_scorers(config: AsdflowConfig) -> list:
    from asdflow.prompts.clap import load_clap_scorers

    return load_clap_scorers(config.prompts)


def generate_stage(model_dir: str | Path, data: Manifest | str | Path, machine_type: str, config: AsdflowConfig,
                   out_root: str | Path, prompts: pd.DataFrame | str | Path | None = None, *,
                   quality_dir: str | Path | None = None, scorers: list | None = None,
                   log_to_mlflow: bool = True, project_dir: str | Path | None = None,
                   device: str | None = None) -> GenerateStageResult:
    manifest = _manifest(data, config.progress)
    table = _prompts(prompts, manifest, machine_type, config, list(config.synthesis.strategies))
    with torch_threads(config.synthesis.num_threads):
        generated = generate_normals(model_dir, manifest, machine_type, config, out_root, table, device=device)
    stage = GenerateStageResult(generate=generated)
    try:  # the clips are written: a failing check is reported, never a reason to lose them
        if scorers is None:
            scorers = clap_scorers(config)
        stage.quality = quality_report(out_root, manifest, machine_type, config, scorers=scorers,
                                       out_dir=quality_dir or Path(out_root) / "quality",
                                       log_to_mlflow=log_to_mlflow, project_dir=project_dir)
    except AsdflowError as err:
        stage.quality_error = str(err)
        log.warning("synthesis quality checks for %s did not run: %s", machine_type, err)
    return stage
