"""The training pipeline with separation enabled (`use: separated`), run end to end through kfp.local on
the tiny profile: the separator trains and registers, the clips are denoised, and every detector step
(train, score, evaluate, register) reads the separated dataset from another subprocess; the registered
model carries the separator, and the gate scores the original clips through it, as the server will."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from asdflow.config import load_config
from asdflow.data.manifest import Manifest
from pipelines.local import run_locally

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def separated_run(tmp_path_factory, tiny_dataset):
    root = tmp_path_factory.mktemp("local_separation")
    shutil.copytree(tiny_dataset / "fan", root / "project" / "data" / "fan")
    tracking = {"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                "artifact_location": str(root / "mlruns" / "artifacts")}
    config = load_config(profile="tiny", overrides={
        "progress": False, "tracking": tracking,
        "separation": {"enabled": True, "use": "separated", "steps": 2, "eval_mixtures": 1, "segment_seconds": 0.25},
    })
    report = run_locally(config, ["fan"], root / "project", root / "kfp", "workspace")
    assert not report.failures, report.failures
    (run,) = report.runs
    return Path(run.run_dir), tracking


def test_separator_is_trained_registered_and_the_clips_denoised(separated_run):
    run_dir, tracking = separated_run
    client = mlflow.MlflowClient(tracking_uri=tracking["tracking_uri"], registry_uri=tracking["tracking_uri"])
    assert str(client.get_model_version_by_alias("sep-fan", "current").version) == "1"
    assert (run_dir / "separation-train" / "separator" / "separator.pt").is_file()
    separated = Manifest.load(run_dir / "denoise-data" / "separated")
    assert separated.records and all(Path(r.path).is_relative_to(run_dir / "denoise-data") for r in separated.records)


def test_detector_steps_read_the_separated_clips(separated_run):
    run_dir, tracking = separated_run
    scores = pd.read_csv(run_dir / "score-clips" / "scores" / "scores.csv")
    separated = Manifest.load(run_dir / "denoise-data" / "separated")
    assert sorted(scores["name"]) == sorted(r.name for r in separated.records if r.split == "test")
    client = mlflow.MlflowClient(tracking_uri=tracking["tracking_uri"], registry_uri=tracking["tracking_uri"])
    challenger = client.get_model_version_by_alias("asd-fan", "challenger")
    run = client.get_run(challenger.run_id)
    assert "fan.official" in run.data.metrics
    # served = gated: the model carries its separator, so the gate scores the original clips through it
    assert challenger.tags["separator_version"]
    gate = json.loads(next(run_dir.rglob("gate_decision.json")).read_text())
    assert gate["eval_root"].startswith(str(run_dir / "fetch-data"))
