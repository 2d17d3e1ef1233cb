"""The library's jobs: train, score, evaluate, one machine type at a time.

Each job reads and writes plain files in a directory, so the same function runs
from the CLI, inside a KFP component, and in a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from asdflow.config import AsdflowConfig
from asdflow.data.manifest import Manifest
from asdflow.detectors.base import Detector, load_detector, make_detector
from asdflow.errors import DataError

SCORES_FILE = "scores.csv"
EVALUATION_FILE = "evaluation.json"


def load_dataset(data: str | Path, progress: bool = True) -> Manifest:
    """A DCASE-layout folder, a folder holding a saved manifest.csv, or that CSV itself."""
    from asdflow.data.dcase_reader import build_manifest

    path = Path(data)
    if path.is_file() and path.suffix == ".csv":
        return Manifest.load(path)
    if (path / "manifest.csv").is_file():
        return Manifest.load(path)
    return build_manifest(path, progress=progress)


def machine_manifest(manifest: Manifest, machine_type: str, split: str | None = None) -> Manifest:
    chosen = manifest.select(machine_type=machine_type)
    if split is not None:
        chosen = chosen.select(split=split)
    if not chosen.records:
        what = f"{split} clips" if split else "clips"
        available = ", ".join(manifest.machine_types()) or "none"
        raise DataError(f"no {what} of machine type {machine_type!r} in {manifest.root} (machine types: {available})")
    return chosen


class TrainResult(BaseModel):
    machine_type: str
    family: str
    detector_dir: str
    threshold: float
    fit_info: dict


def train_detector(
    manifest: Manifest, machine_type: str, config: AsdflowConfig, out_dir: str | Path
) -> TrainResult:
    """Fit the configured family on the machine type's normal training clips; save it to out_dir."""
    detector = make_detector(config.detector, config.features, seed=config.seed)
    detector.fit(machine_manifest(manifest, machine_type, "train"), progress=config.progress)
    detector.save(out_dir)
    return TrainResult(
        machine_type=machine_type,
        family=detector.family,
        detector_dir=str(out_dir),
        threshold=float(detector.threshold),
        fit_info=detector.fit_info,
    )


class ScoreResult(BaseModel):
    machine_type: str
    scores_csv: str
    submission_files: list[str]
    n_clips: int


def score_clips(
    detector: Detector | str | Path,
    manifest: Manifest,
    machine_type: str,
    out_dir: str | Path,
    progress: bool = True,
) -> ScoreResult:
    """Score every test clip of the machine type; write scores.csv and the DCASE submission files."""
    from asdflow.evaluation.submission import write_submission

    if not isinstance(detector, Detector):
        detector = load_detector(detector)
    test = machine_manifest(manifest, machine_type, "test")
    scores = detector.score(test, progress=progress)
    decisions = {name: bool(detector.decide(value)) for name, value in scores.items()}
    frame = test.to_frame()[["name", "machine_type", "section", "domain", "label"]]
    frame["score"] = frame["name"].map(scores)
    frame["decision"] = frame["name"].map(decisions).astype(int)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / SCORES_FILE, index=False, float_format="%.17g")
    files = write_submission(out, scores, decisions, frame)
    return ScoreResult(
        machine_type=machine_type,
        scores_csv=str(out / SCORES_FILE),
        submission_files=[str(f) for f in files],
        n_clips=len(frame),
    )


def read_scores(scores_csv: str | Path) -> pd.DataFrame:
    path = Path(scores_csv)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise DataError(f"no scores at {path}: run `asdflow score` first")
    return pd.read_csv(path, dtype={"section": str})


def evaluate_clips(scores: pd.DataFrame, manifest: Manifest, out_dir: str | Path, threshold: float | None = None):
    """Official DCASE score of scored clips against the manifest's ground truth, with plots."""
    from asdflow.evaluation.metrics import clip_key, evaluate_scores, ground_truth_from_manifest
    from asdflow.evaluation.plots import plot_roc, plot_score_histogram

    machine_types = sorted(set(scores["machine_type"]))
    truth = ground_truth_from_manifest(manifest)
    truth = truth[truth["machine_type"].isin(machine_types)]
    # machine_type/name keys: eval and 2020 file names repeat across machine types
    values = {clip_key(m, n): s for m, n, s in zip(scores["machine_type"], scores["name"], scores["score"])}
    report = evaluate_scores(truth, values)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.save(out / EVALUATION_FILE)
    plot_roc(truth, values, out / "roc.png")
    plot_score_histogram(truth, values, out / "score_histogram.png", threshold=threshold)
    return report


def write_json(path: str | Path, payload: BaseModel | dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = payload.model_dump() if isinstance(payload, BaseModel) else payload
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
