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
from asdflow.data.manifest import ClipRecord, Manifest
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
    data: str = "original"  # which clips it trained on: original | separated | both
    n_extra_clips: int = 0  # normal train clips added from extra folders (separated, synthetic)
    n_reserved_for_gate: int = 0  # training normals held out for the label-free gate (gate_evidence)


def extra_training_clips(folders: list[str | Path], machine_type: str) -> list[ClipRecord]:
    """The normal train clips of `machine_type` in each extra folder, as they are listed there.

    A folder holding a saved manifest.csv is read from it, so flags the reader cannot see in a
    file name (`synthetic=True` of generated normals) survive; any other folder is read as a
    DCASE layout. DataError when a folder holds no normal train clip of the machine type: an
    extra folder that adds nothing is a wiring mistake, not something to skip silently.
    """
    records: list[ClipRecord] = []
    for folder in folders:
        found = load_dataset(folder, progress=False).select(machine_type=machine_type, split="train")
        normal = [r for r in found.records if r.label in ("normal", None)]
        if not normal:
            raise DataError(f"extra training data {folder}: no normal train clips of machine type {machine_type!r} "
                            f"(expected {Path(folder) / machine_type / 'train'}/section_XX_*_train_normal_*.wav)")
        records += normal
    return records


def train_detector(
    manifest: Manifest,
    machine_type: str,
    config: AsdflowConfig,
    out_dir: str | Path,
    extra_train: list[str | Path] | None = None,
    family: str | None = None,
) -> TrainResult:
    """Fit the configured family (or `family`) on the machine type's normal training clips; save it to out_dir.

    extra_train: DCASE-layout folders (or folders with a saved manifest.csv) whose normal train
    clips of the machine type join training (separated clips under `separation.use: both`,
    synthetic normals; see `extra_training_clips`). Under `separation.use: separated` the
    pipeline hands the separated dataset itself as `manifest`.
    """
    from asdflow.evaluation.gate_evidence import plan_evidence

    chosen = machine_manifest(manifest, machine_type, "train")
    # no labelled anomalies and too few test normals: the gate judges on training normals kept out here
    reserved = plan_evidence(manifest, machine_type, config.gate).reserved_from_training
    if reserved:
        chosen = Manifest(root=chosen.root, records=[r for r in chosen.records if r.name not in reserved],
                          problems=chosen.problems)
    extra = extra_training_clips(list(extra_train or []), machine_type)
    if extra:
        chosen = Manifest(root=chosen.root, records=chosen.records + extra, problems=chosen.problems)
    detector_config = config.detector.model_copy(update={"family": family}) if family else config.detector
    detector = make_detector(detector_config, config.features, seed=config.seed)
    detector.fit(chosen, progress=config.progress)
    detector.save(out_dir)
    use = config.separation.use if config.separation.enabled else "original"
    return TrainResult(
        machine_type=machine_type,
        family=detector.family,
        detector_dir=str(out_dir),
        threshold=float(detector.threshold),
        fit_info=detector.fit_info,
        data=use,
        n_extra_clips=len(extra),
        n_reserved_for_gate=len(reserved),
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
    from asdflow.evaluation.metrics import EvaluationReport, clip_key, evaluate_scores, ground_truth_from_manifest
    from asdflow.evaluation.plots import plot_roc, plot_score_histogram

    machine_types = sorted(set(scores["machine_type"]))
    truth = ground_truth_from_manifest(manifest)
    truth = truth[truth["machine_type"].isin(machine_types)]
    # machine_type/name keys: eval and 2020 file names repeat across machine types
    values = {clip_key(m, n): s for m, n, s in zip(scores["machine_type"], scores["name"], scores["score"])}
    # unlabelled test clips (every DCASE eval set) are scored for the submission files, not evaluated
    unlabelled = {clip_key(r.machine_type, r.name) for r in manifest.records if r.split == "test" and not r.is_labelled}
    values = {key: value for key, value in values.items() if key not in unlabelled}
    n_unlabelled = len(scores) - len(values)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (truth["label"] == "anomaly").any():
        # a plant's usual data: the run goes on and the gate judges on simulated anomalies
        report = EvaluationReport.unevaluated(
            machine_types, f"no labelled anomalies among the {len(values)} labelled test clip(s) "
                           f"({n_unlabelled} unlabelled): not scored officially; the gate judges on held-out "
                           "normals and simulated anomalies", n_unlabelled)
        report.save(out / EVALUATION_FILE)
        return report
    report = evaluate_scores(truth, values, partial=True)  # a plant's few labelled clips: marked, not failed
    report.n_unlabelled = n_unlabelled
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
