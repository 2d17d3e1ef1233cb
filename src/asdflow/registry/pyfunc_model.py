"""The detector as an MLflow pyfunc model: waveforms in, score and decision out.

The model's artifact is the directory `Detector.save` wrote; `load_context`
reads it back with `load_detector`, so every detector family is served the same
way. A detector trained on separated audio (`separation.use: separated`) carries
the separator it was trained behind as a second artifact, and `ScoringPath`
applies it before scoring: the pyfunc's predict, the gate and the server all
score through one `ScoringPath`, so what is served is what was gated. asdflow itself is installed wherever the model is loaded (the server, the
pipeline components), so the model carries no code of its own (no code_paths).

Input: a pandas DataFrame with a column `waveform` (a list or array of float
samples, mono) and optionally `sample_rate` (resampled to the detector's rate
when it differs; the detector's rate when absent) and `domain`, `section`,
`attributes` (handed, clip by clip, to families with `uses_records = True`;
the others score the whole frame in one batch). Output: a DataFrame with
`score` (float, higher = more anomalous), `decision` (bool, True = anomalous)
and `threshold` (float), one row per input row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from asdflow.errors import DetectorError

DETECTOR_ARTIFACT = "detector"  # key in the model's artifacts dict
SEPARATOR_ARTIFACT = "separator"  # the separator the detector was trained behind, when there was one
MODEL_NAME_IN_RUN = "detector"  # log_model(name=...): where the model lives in its run
INPUT_COLUMN = "waveform"
OUTPUT_COLUMNS = ["score", "decision", "threshold"]


def pip_requirements() -> list[str]:
    """The few packages the pyfunc needs, pinned to what is installed here.

    Given explicitly because MLflow's own inference of requirements imports and
    inspects the whole environment (seconds per log). asdflow is not listed: it is
    installed in every environment that loads these models, and not on an index.
    """
    import importlib.metadata as md

    names = ["mlflow", "numpy", "pandas", "torch", "torchaudio", "soundfile", "pydantic", "scikit-learn"]
    out = []
    for name in names:
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            out.append(name)
    return out


def model_signature():
    """Column schema shown in the MLflow UI and checked on predict: waveform arrays in."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema([
        ColSpec(Array(DataType.double), INPUT_COLUMN),
        ColSpec(DataType.long, "sample_rate", required=False),
        ColSpec(DataType.string, "domain", required=False),
        ColSpec(DataType.string, "section", required=False),
        ColSpec(DataType.string, "attributes", required=False),  # JSON object
    ])
    outputs = Schema([
        ColSpec(DataType.double, "score"),
        ColSpec(DataType.boolean, "decision"),
        ColSpec(DataType.double, "threshold"),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs)


# Models from code: the logged model holds this small script instead of a cloudpickle of
# the class, so loading it needs only an installed asdflow, never a matching pickle.
ENTRY_SCRIPT = """\
# Written by asdflow.registry: the pyfunc entry point of a registered asdflow detector.
from mlflow.models import set_model

from asdflow.registry.pyfunc_model import DetectorPyfunc

set_model(DetectorPyfunc())
"""


def write_entry_script(directory: str | Path) -> Path:
    path = Path(directory) / "asdflow_detector_model.py"
    path.write_text(ENTRY_SCRIPT)
    return path


class ScoringPath:
    """Waveform to score as the registered model does it: [separator ->] detector.

    Waveforms come in at the detector's sample rate; the separator (when the detector was
    trained on its output) runs at its own rate and hands the machine stream back."""

    def __init__(self, detector, separator_dir: str | Path | None = None):
        self.detector = detector
        self.separator = None
        self.separator_version: str | None = None
        if separator_dir is not None:
            from asdflow.separation.model import load_separator

            model, info = load_separator(separator_dir)
            self.separator = (model, int(info["config"]["sample_rate"]), float(info["config"]["chunk_seconds"]))
            self.separator_version = str(info.get("version", "")) or None

    def machine_stream(self, waveform: np.ndarray) -> np.ndarray:
        if self.separator is None:
            return waveform
        from asdflow.data.audio import resample
        from asdflow.separation.denoise import separate_waveform

        model, rate, chunk = self.separator
        own = int(self.detector.features.sample_rate)
        x = resample(waveform, own, rate) if rate != own else waveform
        y = separate_waveform(model, np.asarray(x, dtype=np.float32), rate, chunk)
        y = resample(y, rate, own) if rate != own else y
        return np.ascontiguousarray(y, dtype=np.float32)

    def score(self, waveforms: list[np.ndarray], records: list | None = None) -> np.ndarray:
        """One score per waveform; `records` (domain, section, attributes) go to a family that
        conditions on them, clip by clip; the others score the whole list in one batch."""
        waveforms = [self.machine_stream(w) for w in waveforms]
        if records is not None and getattr(self.detector, "uses_records", False):
            return np.asarray([self.detector.score_waveform(w, r) for w, r in zip(waveforms, records)],
                              dtype=np.float64)
        return np.asarray(self.detector.score_waveforms(waveforms), dtype=np.float64)


class DetectorPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps any `asdflow.detectors.base.Detector` saved to a directory (and its separator, if any)."""

    def __init__(self) -> None:
        self.path: ScoringPath | None = None  # set by load_context

    @property
    def detector(self):
        return self.path.detector if self.path is not None else None

    def load_context(self, context) -> None:
        from asdflow.detectors.base import load_detector

        self.path = ScoringPath(load_detector(context.artifacts[DETECTOR_ARTIFACT]),
                                context.artifacts.get(SEPARATOR_ARTIFACT))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        return predict_frame(self.path, model_input)


def predict_frame(path, model_input: Any) -> pd.DataFrame:
    """Score every row of `model_input` through `path` (a ScoringPath, or a bare detector): the pyfunc's
    predict, also usable directly."""
    if path is None:
        raise DetectorError("the pyfunc model has no detector: load it with mlflow.pyfunc.load_model")
    if not isinstance(path, ScoringPath):
        path = ScoringPath(path)
    detector = path.detector
    frame = _as_frame(model_input)
    if INPUT_COLUMN not in frame.columns:
        raise DetectorError(
            f"model input needs a '{INPUT_COLUMN}' column of float samples (got columns {list(frame.columns)})"
        )
    target_sr = int(detector.features.sample_rate)
    waveforms = [input_waveform(row, target_sr, i) for i, row in enumerate(frame.to_dict(orient="records"))]
    # One batch through score_waveforms unless the family conditions on domain/section/attributes
    # (a detector with `uses_records = True`): only then is each clip scored with its record.
    records = _records(frame, detector) if getattr(detector, "uses_records", False) else None
    scores = path.score(waveforms, records)
    threshold = float(detector.threshold) if detector.threshold is not None else float("nan")
    decisions = np.asarray(detector.decide(scores), dtype=bool).reshape(-1)
    return pd.DataFrame({"score": scores, "decision": decisions, "threshold": np.full(len(scores), threshold)})


def _as_frame(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict):
        return pd.DataFrame(model_input)
    if isinstance(model_input, (list, tuple)) and model_input and isinstance(model_input[0], dict):
        return pd.DataFrame(list(model_input))
    raise DetectorError(
        f"model input must be a DataFrame with a '{INPUT_COLUMN}' column, got {type(model_input).__name__}"
    )


def input_waveform(row: dict[str, Any], target_sr: int, index: int) -> np.ndarray:
    """One input row's waveform, checked (non-empty, finite) and resampled to `target_sr` (every asdflow pyfunc)."""
    from asdflow.data.audio import resample

    raw = row[INPUT_COLUMN]
    try:
        wav = np.asarray(raw, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise DetectorError(f"row {index}: '{INPUT_COLUMN}' is not a sequence of numbers") from None
    if wav.size == 0:
        raise DetectorError(f"row {index}: empty waveform")
    if not np.all(np.isfinite(wav)):
        raise DetectorError(f"row {index}: waveform has NaN or infinite samples")
    sample_rate = row.get("sample_rate")
    if sample_rate is not None and not _is_missing(sample_rate) and int(sample_rate) != target_sr:
        wav = resample(wav, int(sample_rate), target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _records(frame: pd.DataFrame, detector) -> list | None:
    """ClipRecords built from optional domain/section/attributes columns, for families that condition on them."""
    if not any(c in frame.columns for c in ("domain", "section", "attributes")):
        return None
    from asdflow.data.manifest import ClipRecord

    records = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        attributes = row.get("attributes")
        if isinstance(attributes, str):
            attributes = json.loads(attributes or "{}")
        domain = row.get("domain")
        records.append(ClipRecord(
            path="",
            name=str(row.get("name") or f"input_{i:04d}.wav"),
            machine_type=detector.machine_type or "",
            section=str(row.get("section") or "00"),
            domain=None if _is_missing(domain) or domain == "" else domain,
            split="test",
            attributes={str(k): str(v) for k, v in (attributes or {}).items()} if isinstance(attributes, dict) else {},
        ))
    return records


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
