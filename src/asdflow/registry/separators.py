"""The separator in MLflow: one run per trained separator, registered as `sep-<machine_type>`.

The run records the `separation` config section (params), the training and evaluation
figures (metrics: SI-SNRi on held-out mixtures, steps, loss) and the separator folder
(separator.json + separator.pt) as a pyfunc model: waveforms in, the machine stream out.
Like the detectors (asdflow.registry.models) it is a model from code, so loading it needs
an installed asdflow and no pickle; aliases, not stages: the new version gets `@current`.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from pydantic import BaseModel

from asdflow.config import AsdflowConfig
from asdflow.errors import DetectorError, one_line
from asdflow.registry.models import RegistryError
from asdflow.registry.pyfunc_model import INPUT_COLUMN, input_waveform, pip_requirements

SEPARATOR_ARTIFACT = "separator"  # key in the model's artifacts dict
MODEL_NAME_IN_RUN = "separator"
CURRENT = "current"  # the alias of the newest registered separator
NAME_TEMPLATE = "sep-{machine_type}"
OUTPUT_COLUMN = "machine"

ENTRY_SCRIPT = """\
# Written by asdflow.registry.separators: the pyfunc entry point of a registered asdflow separator.
from mlflow.models import set_model

from asdflow.registry.separators import SeparatorPyfunc

set_model(SeparatorPyfunc())
"""


class RegisteredSeparator(BaseModel):
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/sep-<mt>/<version>
    alias: str | None = None


def separator_model_name(machine_type: str) -> str:
    return NAME_TEMPLATE.format(machine_type=machine_type)


class SeparatorPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with `waveform` (float samples, mono) and optionally `sample_rate`;
    output: a DataFrame with `machine`, the separated machine stream at the separator's rate."""

    def __init__(self) -> None:
        self.model = None
        self.info: dict = {}

    def load_context(self, context) -> None:
        from asdflow.separation.model import load_separator

        self.model, self.info = load_separator(context.artifacts[SEPARATOR_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from asdflow.separation.denoise import separate_waveform

        if self.model is None:
            raise DetectorError("the separator pyfunc has no model: load it with mlflow.pyfunc.load_model")
        if INPUT_COLUMN not in model_input.columns:
            raise DetectorError(f"model input needs a '{INPUT_COLUMN}' column (got {list(model_input.columns)})")
        config = self.info["config"]
        rate = int(config["sample_rate"])
        out = [separate_waveform(self.model, input_waveform(row, rate, i), rate, float(config["chunk_seconds"]),
                                 float(config["overlap"]))
               for i, row in enumerate(model_input.to_dict(orient="records"))]
        return pd.DataFrame({OUTPUT_COLUMN: out})


def _params(config: AsdflowConfig) -> dict[str, str]:
    from asdflow.registry.tracking import flatten_params

    return flatten_params(config, sections=("separation",))


def register_separator(
    separator_dir: str | Path,
    machine_type: str,
    config: AsdflowConfig,
    metrics: Mapping[str, float] | None = None,
    *,
    project_dir: str | Path | None = None,
    alias: str | None = CURRENT,
    tags: Mapping[str, str] | None = None,
) -> RegisteredSeparator:
    """Log one run (separation params, `metrics`, the separator as a pyfunc model) and register it
    as `sep-<machine_type>`, pointing `alias` at the new version.

    Version tags: machine_type, separator_version (the weights' sha256), run_id, and every finite
    metric (e.g. si_snri_db). Non-finite metrics are not logged (MLflow refuses NaN in some stores).
    """
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    from asdflow.registry.tracking import artifact_progress, configure_tracking, git_commit

    separator_dir = Path(separator_dir)
    info_file = separator_dir / "separator.json"
    if not info_file.is_file() or not (separator_dir / "separator.pt").is_file():
        raise RegistryError(f"no separator to register in {separator_dir}: separator.json or separator.pt is missing")
    info = json.loads(info_file.read_text())
    finite = {k: float(v) for k, v in (metrics or {}).items() if v is not None and math.isfinite(float(v))}
    experiment_id = configure_tracking(config.tracking, project_dir)
    name = separator_model_name(machine_type)
    client = mlflow.MlflowClient()
    run_tags = {"machine_type": machine_type, "stage": "separation", "separator_version": str(info.get("version", "")),
                "asdflow_profile": config.profile, "git_commit": git_commit(project_dir) or "unknown", **dict(tags or {})}
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"separator-{machine_type}") as run, \
                tempfile.TemporaryDirectory(prefix="asdflow-separator-") as tmp, warnings.catch_warnings(), \
                artifact_progress(False):
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            mlflow.set_tags(run_tags)
            mlflow.log_params(_params(config))
            if finite:
                mlflow.log_metrics(finite)
            entry = Path(tmp) / "asdflow_separator_model.py"
            entry.write_text(ENTRY_SCRIPT)
            logged = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                python_model=str(entry),
                artifacts={SEPARATOR_ARTIFACT: str(separator_dir)},
                pip_requirements=pip_requirements(),
            )
            run_id = run.info.run_id
        version_tags = {"machine_type": machine_type, "separator_version": str(info.get("version", "")),
                        "run_id": run_id, **{k: repr(v) for k, v in finite.items()}}
        mv = mlflow.register_model(logged.model_uri, name, tags=version_tags)
        client.set_registered_model_tag(name, "machine_type", machine_type)
        if alias:
            client.set_registered_model_alias(name, alias, str(mv.version))
    except MlflowException as err:
        raise RegistryError(f"cannot register {separator_dir} as {name}: {one_line(err)}") from None
    return RegisteredSeparator(name=name, version=str(mv.version), run_id=run_id,
                               model_uri=f"models:/{name}/{mv.version}", alias=alias)


def log_skipped_separation(machine_type: str, reason: str, config: AsdflowConfig, *,
                           project_dir: str | Path | None = None) -> str:
    """A run that records the separation stage was skipped and why (nothing is registered);
    returns its id, so that a run's history shows the stage did not silently vanish."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from asdflow.registry.tracking import configure_tracking, git_commit

    experiment_id = configure_tracking(config.tracking, project_dir)
    tags = {"machine_type": machine_type, "stage": "separation", "skipped": "true", "skip_reason": reason[:500],
            "asdflow_profile": config.profile, "git_commit": git_commit(project_dir) or "unknown"}
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"separator-{machine_type}-skipped") as run:
            mlflow.set_tags(tags)
            return run.info.run_id
    except MlflowException as err:
        raise RegistryError(f"cannot record the skipped separation of {machine_type}: {one_line(err)}") from None
