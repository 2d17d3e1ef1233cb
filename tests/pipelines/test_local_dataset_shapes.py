"""Every DCASE year's layout, end to end through kfp.local: one fleet run over a dataset from the
generator where fan is DCASE 2025-shaped (a supplemental folder, labelled dev test clips and
unlabelled evaluation clips named `section_00_NNNN.wav`) and pump DCASE 2023-shaped (no
supplemental folder), with `separation.use: separated`.

fan's separator trains and travels with its detector; pump's separation is skipped with its reason
and its detector reads the original clips; fan's unlabelled clips are scored into the submission
files and counted, not evaluated; both machine types are gated and promoted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from asdflow.config import load_config
from asdflow.data.manifest import Manifest
from pipelines.local import gate_decisions, run_locally

pytestmark = pytest.mark.slow
N_EVAL = 3


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, tiny_dataset):
    root = tmp_path_factory.mktemp("dataset_shapes")
    data = root / "project" / "data"
    shutil.copytree(tiny_dataset / "fan", data / "fan")
    shutil.copytree(tiny_dataset / "pump", data / "pump", ignore=shutil.ignore_patterns("supplemental"))
    attributes = data / "pump" / "attributes_00.csv"  # DCASE 2023 lists no supplemental clips either
    attributes.write_text("".join(line for line in attributes.read_text().splitlines(keepends=True)
                                  if not line.startswith("supplemental/")))
    for i, clip in enumerate(sorted((data / "fan" / "test").glob("*.wav"))[:N_EVAL]):  # evaluation-set names
        shutil.copyfile(clip, data / "fan" / "test" / f"section_00_{i:04d}.wav")
    tracking = {"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                "artifact_location": str(root / "mlruns" / "artifacts")}
    config = load_config(profile="tiny", overrides={
        "progress": False, "tracking": tracking, "detector": {"family": "twfr", "families": None},
        "gate": {"absolute_floor": 0.0},
        "separation": {"enabled": True, "use": "separated", "steps": 2, "eval_mixtures": 1, "segment_seconds": 0.25},
    })
    report = run_locally(config, ["fan", "pump"], root / "project", root / "kfp", "workspace", fleet=True)
    assert not report.failures, report.failures
    (run,) = report.runs
    return Path(run.run_dir), tracking


def _branch(run_dir: Path, machine: str) -> Path:
    """The fleet's for-loop iteration folder of one machine type (found by its gate decision)."""
    decision = next(p for p in run_dir.rglob("gate_decision.json") if json.loads(p.read_text())["machine_type"] == machine)
    return next(parent for parent in decision.parents if parent.name.startswith("for-loop"))


def test_both_shapes_are_gated_and_promoted(shapes_run):
    run_dir, tracking = shapes_run
    decisions = gate_decisions(run_dir)
    assert {m: d.verdict for m, d in decisions.items()} == {"fan": "promote", "pump": "promote"}
    assert all(d.evidence == "labelled" for d in decisions.values())
    client = mlflow.MlflowClient(tracking["tracking_uri"], tracking["tracking_uri"])
    fan = client.get_model_version_by_alias("asd-fan", "champion")
    pump = client.get_model_version_by_alias("asd-pump", "champion")
    assert fan.tags["separator_version"] and "separator_version" not in pump.tags


def test_the_2023_shape_skips_separation_with_its_reason(shapes_run):
    run_dir, tracking = shapes_run
    pump = _branch(run_dir, "pump")
    reason = json.loads((pump / "separation-train" / "separator" / "separation_skipped.json").read_text())["reason"]
    assert "no supplemental clips of pump" in reason
    assert not (_branch(run_dir, "fan") / "separation-train" / "separator" / "separation_skipped.json").exists()
    client = mlflow.MlflowClient(tracking["tracking_uri"], tracking["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("asdflow").experiment_id], "tags.skipped = 'true'")
    assert [r.data.tags["machine_type"] for r in runs] == ["pump"]


def test_unlabelled_evaluation_clips_are_scored_into_the_submission_and_counted(shapes_run):
    run_dir, _ = shapes_run
    fan = _branch(run_dir, "fan")
    scores = pd.read_csv(fan / "score-clips" / "scores" / "scores.csv")
    unlabelled = scores[scores["label"].isna()]
    assert sorted(unlabelled["name"]) == [f"section_00_{i:04d}.wav" for i in range(N_EVAL)]
    submitted = pd.concat(pd.read_csv(p, header=None) for p in (fan / "score-clips" / "scores").glob("anomaly_score_*.csv"))
    assert set(unlabelled["name"]) <= set(submitted[0])
    evaluation = json.loads((fan / "evaluate-scores" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["n_unlabelled"] == N_EVAL and evaluation["partial"] is None
    manifest = Manifest.load(fan / "denoise-data" / "separated")
    assert sum(1 for r in manifest.records if r.split == "test" and r.label is None) == N_EVAL
