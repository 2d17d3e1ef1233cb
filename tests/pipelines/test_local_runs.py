"""The pipelines run end to end through kfp.local (SubprocessRunner, use_venv=False), for real.

1. `asdflow pipeline run --local -m fan` on tiny data: the training pipeline, every
   component its own subprocess; each test below checks one component's outputs.
2. The fleet pipeline over fan and a valve whose clips are at 8 kHz, on the same
   store, with a minimum improvement the unchanged fan detector cannot reach: the
   data is fetched and validated once, valve is left out of the fan-out (named in
   the validation report), and fan's gate keeps its champion (`dsl.If` skips promote).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from asdflow.cli_pipeline import pipeline_app
from asdflow.config import load_config
from asdflow.data.manifest import Manifest
from asdflow.pipeline_ops import encode_overrides
from asdflow.registry.gate import GateDecision
from pipelines.local import PipelineRunError, gate_decisions, run_local, run_locally
from pipelines.fleet import build_fleet_pipeline
from pipelines.training import build_training_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_dataset) -> Path:
    root = tmp_path_factory.mktemp("local_runs")
    shutil.copytree(tiny_dataset, root / "project" / "data")
    return root


@pytest.fixture(scope="module")
def tracking(workspace) -> dict:
    store = workspace / "mlruns"
    return {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": str(store / "artifacts")}


@pytest.fixture(scope="module")
def registry(tracking):
    return mlflow.MlflowClient(tracking_uri=tracking["tracking_uri"], registry_uri=tracking["tracking_uri"])


@pytest.fixture(scope="module")
def user_config(workspace, tracking) -> Path:
    path = workspace / "user.yaml"
    # one detector family per run (the default trains twfr and baseline_ae): these tests follow one chain
    path.write_text(yaml.safe_dump({"tracking": tracking, "detector": {"families": None}}))
    return path


@pytest.fixture(scope="module")
def cli_run(workspace, user_config):
    with pytest.MonkeyPatch.context() as patch:
        # as in a fresh shell: MLflow exports the store of earlier in-process tests as
        # $MLFLOW_TRACKING_URI, which load_config would prefer to the --config file
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(pipeline_app, [
            "run", "--local", "-m", "fan", "--profile", "tiny", "-q", "--config", str(user_config),
            "--project", str(workspace / "project"), "--work-dir", str(workspace / "kfp"),
        ])
    assert result.exception is None, result.output
    return result


@pytest.fixture(scope="module")
def training_run(cli_run, workspace):
    class Run:  # the run's folder, as the CLI reported it
        run_dir = next(line.split("outputs under ")[1] for line in cli_run.output.splitlines()
                       if "outputs under" in line)
        pipeline_root = str(workspace / "kfp")
    return Run


def task_dir(run, task: str) -> Path:
    return Path(run.run_dir) / task


def test_cli_runs_the_training_pipeline_and_reports_the_gate(cli_run, training_run, tracking):
    (line,) = [line for line in cli_run.output.splitlines() if line.startswith("fan:")]
    assert line.startswith("fan: gate promote (no champion yet; challenger v1 official")
    header, row = [line.split() for line in cli_run.output.splitlines() if line.startswith(("machine type  ", "fan "))]
    assert header[-6:] == ["challenger", "gate", "challenger", "vs", "champion", "champion"]
    # no champion before this run: the gate measured the challenger only
    assert row[0] == "fan" and row[-6:-4] == ["v1", "promote"] and row[-3:] == ["vs", "-", "v1"]
    assert 0.7 < float(row[1]) <= 1 and 0 < float(row[-4]) <= 1
    assert Path(training_run.run_dir).parent == Path(training_run.pipeline_root)
    assert f"MLflow store: {tracking['tracking_uri']}" in cli_run.output


def test_local_fetch_and_validate(training_run, workspace):
    data = task_dir(training_run, "fetch-data") / "data"
    fetched = sorted(p.name for p in data.iterdir() if not p.name.startswith("."))  # .asdflow-lineage.json: fetch's own
    assert fetched == sorted(p.name for p in (workspace / "project" / "data").iterdir())
    manifest = Manifest.load(task_dir(training_run, "validate-data") / "manifest")
    assert manifest.machine_types() == ["fan"]
    assert all(Path(r.path).is_relative_to(data) for r in manifest.records)
    assert json.loads((task_dir(training_run, "validate-data") / "report" / "validation.json").read_text())["success"]


def test_local_train_score_evaluate(training_run):
    assert json.loads((task_dir(training_run, "train-detector") / "detector" / "detector.json").read_text())[
        "machine_type"] == "fan"
    scores = pd.read_csv(task_dir(training_run, "score-clips") / "scores" / "scores.csv")
    assert len(scores) > 0 and scores["score"].notna().all()
    report = json.loads((task_dir(training_run, "evaluate-scores") / "evaluation" / "evaluation.json").read_text())
    assert report["overall"]["official"] > 0.7


def test_local_register_gate_promote(training_run, registry):
    assert str(registry.get_model_version_by_alias("asd-fan", "challenger").version) == "1"
    assert str(registry.get_model_version_by_alias("asd-fan", "champion").version) == "1"
    decision = GateDecision.load(task_dir(training_run, "gate-challenger") / "decision")
    assert decision.verdict == "promote" and decision.champion is None
    promoted = GateDecision.load(task_dir(training_run, "promote-champion") / "promotion")
    assert promoted.promotion.action == "promoted" and promoted.promotion.version == "1"
    assert gate_decisions(training_run.run_dir)["fan"].promotion is not None
    run = registry.get_run(decision.challenger.run_id)
    assert run.data.tags["data_version"] == "workspace" and "fan.official" in run.data.metrics


def _bad_valve(data: Path) -> None:
    """A valve folder whose clips are at 8 kHz: validation fails every one of them."""
    import numpy as np

    from asdflow.data.audio import write_audio

    for split, name in (("train", "section_00_source_train_normal_0000_a_1.wav"),
                        ("test", "section_00_source_test_normal_0000_a_1.wav")):
        write_audio(data / "valve" / split / name, np.random.default_rng(0).standard_normal(8000) * 0.1, 8000)


def test_fleet_fetches_and_validates_once_keeps_the_champion_and_leaves_a_failing_machine_type_out(
        training_run, workspace, tracking, registry):
    config = load_config(profile="tiny", overrides={"detector": {"families": None}})  # the families are compiled in
    overrides = {"progress": False, "tracking": tracking, "gate": {"min_improvement": 0.05},
                 "detector": {"families": None}}
    _bad_valve(workspace / "project" / "data")
    arguments = {
        "machine_types": "fan,valve", "project": str(workspace / "project"), "data_version": "workspace",
        "config_profile": "tiny", "config_overrides": encode_overrides(overrides),
    }
    run = run_local(build_fleet_pipeline(config, parallelism=1), arguments, workspace / "kfp")
    fleet_dir = Path(run.run_dir)
    # one fetch and one validation for the whole fleet; one branch, fan's: valve failed validation
    assert len(list(fleet_dir.rglob("fetch-data/data"))) == 1
    (report,) = fleet_dir.rglob("validate-data/report/validation.json")
    failed = json.loads(report.read_text())["failed_machine_types"]
    assert set(failed) == {"valve"} and "sample_rate" in failed["valve"]
    (manifest,) = fleet_dir.rglob("validate-data/manifest/manifest.csv")
    assert Manifest.load(manifest).machine_types() == ["fan"]
    iterations = sorted(p.name for p in fleet_dir.iterdir() if p.is_dir() and p.name.startswith("for-loop"))
    assert len(iterations) == 1, iterations
    decisions = gate_decisions(fleet_dir)
    assert set(decisions) == {"fan"}
    fan = decisions["fan"]
    assert fan.verdict == "keep" and fan.champion.version == "1" and fan.challenger.version == "2"
    assert fan.promotion is None and not list(fleet_dir.rglob("promotion")), "the dsl.If skipped promote"
    assert str(registry.get_model_version_by_alias("asd-fan", "challenger").version) == "2"
    assert str(registry.get_model_version_by_alias("asd-fan", "champion").version) == "1"


def test_a_failing_machine_type_is_reported_and_the_others_still_run(workspace, tmp_path):
    config = load_config(profile="tiny", overrides={"progress": False, "tracking": {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_location": str(tmp_path / "artifacts")}})
    with pytest.raises(PipelineRunError, match="asdflow-training failed.*asdflow-training-"):
        run_local(build_training_pipeline(config), {"machine_type": "valve", "project": str(workspace / "project"),
                                                    "data_version": "workspace"}, tmp_path / "kfp")
    report = run_locally(config, ["valve", "nothing"], workspace / "project", tmp_path / "kfp", "workspace")
    assert set(report.failures) == {"valve", "nothing"} and report.runs == [] and report.results == []


def test_run_needs_local():
    result = CliRunner().invoke(pipeline_app, ["run", "-m", "fan"])
    assert "--local" in str(result.exception)
