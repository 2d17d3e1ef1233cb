"""Tracking on a real SQLite MLflow store: what a training run records, and the pyfunc model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from asdflow.config import TrackingConfig
from asdflow.data.audio import load_audio, resample
from asdflow.detectors.base import load_detector
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest
from asdflow.registry.models import register_detector
from asdflow.registry.tracking import log_training_run, resolve_tracking

MACHINE = "fan"


def test_relative_store_paths_resolve_against_the_project_dir(tmp_path):
    local = resolve_tracking(TrackingConfig(), project_dir=tmp_path)
    assert local.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert local.artifact_location == str(tmp_path.resolve() / "mlruns" / "artifacts")
    absolute = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/x.db", artifact_location="s3://bucket/asd")
    assert resolve_tracking(absolute, project_dir="/elsewhere") == absolute
    # a server decides where artifacts go unless given an object store
    remote = resolve_tracking(TrackingConfig(tracking_uri="http://127.0.0.1:5000"), project_dir=tmp_path)
    assert (remote.tracking_uri, remote.artifact_location) == ("http://127.0.0.1:5000", "")
    remote_s3 = TrackingConfig(tracking_uri="https://mlflow.example", artifact_location="s3://b/a")
    assert resolve_tracking(remote_s3, project_dir=tmp_path).artifact_location == "s3://b/a"


def _git_project(path: Path) -> str:
    path.mkdir()
    (path / "data.dvc").write_text(
        "outs:\n- md5: 3a7f1c0de5b6e1f2a4c8d9e0b1a2c3d4.dir\n  size: 1234\n  nfiles: 52\n  path: data\n"
    )
    git = ["git", "-C", str(path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "data.dvc"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "data"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def test_training_run_logs_params_metrics_artifacts_commit_and_data_hash(tmp_path, monkeypatch, material, tiny_config):
    project = tmp_path / "project"
    commit = _git_project(project)
    # the default relative store, written from another working directory: it lands in the project
    elsewhere = tmp_path / "component_cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    fan, good = material.fan, material.good
    run = log_training_run(
        MACHINE, tiny_config, scores=good.scores, eval_manifest=fan.select(split="test"),
        train_manifest=fan.select(split="train"), detector_dir=good.directory, project_dir=project,
    )
    assert (project / "mlruns" / "mlflow.db").exists() and not (elsewhere / "mlruns").exists()
    assert run.tracking_uri == f"sqlite:///{project.resolve()}/mlruns/mlflow.db"

    client = mlflow.MlflowClient(run.tracking_uri)
    logged = client.get_run(run.run_id)
    params, metrics, tags = logged.data.params, logged.data.metrics, logged.data.tags
    assert params["detector.baseline_ae.epochs"] == str(tiny_config.detector.baseline_ae.epochs)
    assert params["features.n_mels"] == "128" and params["synth.machine_types"] == '["fan", "pump"]'

    report = evaluate_scores(ground_truth_from_manifest(fan), good.scores)
    section = report.sections[0]
    assert section.section == "00"
    for name in ("official", "auc_source", "auc_target", "pauc"):
        assert metrics[f"{MACHINE}.section_00.{name}"] == pytest.approx(getattr(section, name))
        assert metrics[f"{MACHINE}.{name}"] == pytest.approx(getattr(report.machine_types[MACHINE], name))
    assert metrics["official"] == pytest.approx(good.official)
    assert metrics["fit.n_clips"] == len(fan.select(split="train"))

    assert tags["git_commit"] == commit and tags["mlflow.source.git.commit"] == commit
    assert tags["dvc_data_hash"] == "3a7f1c0de5b6e1f2a4c8d9e0b1a2c3d4.dir"
    assert tags["data_hash_source"] == "dvc" and tags["machine_type"] == MACHINE

    inputs = {d.dataset.name: d for d in logged.inputs.dataset_inputs}
    assert set(inputs) == {"fan-training", "fan-evaluation"}
    assert inputs["fan-training"].dataset.digest == "3a7f1c0de5b6e1f2a4c8d9e0b1a2c3d4"
    assert {t.key: t.value for t in inputs["fan-training"].tags}["mlflow.data.context"] == "training"

    artifacts = {f.path for folder in ("plots", "submission", "evaluation") for f in client.list_artifacts(run.run_id, folder)}
    assert artifacts == {
        "plots/roc_fan.png", "plots/score_histogram_fan.png", "evaluation/report.json",
        "submission/anomaly_score_fan_section_00_test.csv", "submission/decision_result_fan_section_00_test.csv",
    }
    # the label-free choice of the time pooling: tags, its proxy table and the plot
    choice = load_detector(good.directory).fit_info["time_pooling"]
    assert tags["time_pooling.chosen"] == choice["chosen"] and tags["time_pooling.strategy"] == choice["strategy"]
    assert {f.path for f in client.list_artifacts(run.run_id, "selection")} == {
        "selection/time_pooling_fan.json", "selection/time_pooling_fan.png"}
    logged_choice = mlflow.artifacts.load_dict(f"{logged.info.artifact_uri}/selection/time_pooling_fan.json")
    assert logged_choice["chosen"] == choice["chosen"] and len(logged_choice["table"]) == len(choice["table"])
    experiment = client.get_experiment(run.experiment_id)
    assert experiment.name == tiny_config.tracking.experiment
    assert Path(experiment.artifact_location.removeprefix("file://")) == project.resolve() / "mlruns" / "artifacts"
    csv = Path(client.download_artifacts(run.run_id, "submission/anomaly_score_fan_section_00_test.csv", str(tmp_path)))
    rows = pd.read_csv(csv, header=None, names=["name", "score"])
    assert dict(zip(rows["name"], rows["score"])) == pytest.approx(good.scores)


def test_pyfunc_model_scores_waveforms_like_the_detector(tmp_path, material, sqlite_config):
    good, fan = material.good, material.fan
    run = log_training_run(MACHINE, sqlite_config, scores=good.scores, eval_manifest=fan.select(split="test"),
                           detector_dir=good.directory, project_dir=tmp_path, data_hash="abc123")
    registered = register_detector(good.directory, MACHINE, sqlite_config, run_id=run.run_id, project_dir=tmp_path)
    assert (registered.name, registered.version, registered.alias) == ("asd-fan", "1", "challenger")

    client = mlflow.MlflowClient(run.tracking_uri)
    version = client.get_model_version_by_alias("asd-fan", "challenger")
    assert str(version.version) == "1" and version.run_id == run.run_id
    assert version.tags["detector_family"] == "baseline_ae" and version.tags["machine_type"] == MACHINE
    assert version.tags["run_id"] == run.run_id and version.tags["dvc_data_hash"] == "abc123"
    assert float(version.tags["official"]) == pytest.approx(good.official)

    model = mlflow.pyfunc.load_model("models:/asd-fan@challenger")
    test = fan.select(split="test").records
    waveforms = [load_audio(r.path, 16000) for r in test]
    out = model.predict(pd.DataFrame({"waveform": waveforms}))
    assert list(out.columns) == ["score", "decision", "threshold"] and len(out) == len(test)
    reference = load_detector(good.directory)
    np.testing.assert_allclose(out["score"], [good.scores[r.name] for r in test], rtol=1e-5)
    assert (out["threshold"] == reference.threshold).all()
    assert (out["decision"] == (out["score"] > reference.threshold)).all()

    # plain lists (as JSON would bring them) at another sample rate are resampled first
    at_22k = [resample(w, 16000, 22050) for w in waveforms[:3]]
    moved = model.predict(pd.DataFrame({"waveform": [w.tolist() for w in at_22k], "sample_rate": [22050] * 3}))
    expected = reference.score_waveforms([resample(w, 22050, 16000) for w in at_22k])
    np.testing.assert_allclose(moved["score"], expected, rtol=1e-5)


def test_twfr_goes_through_registry_and_pyfunc_unchanged(tmp_path, material, sqlite_config):
    """The new family behind the one Detector interface: registered and served like any other."""
    from asdflow.detectors.base import make_detector

    cfg = sqlite_config.model_copy(deep=True)
    cfg.detector.family = "twfr"
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    detector.fit(material.fan.select(split="train"), progress=False)
    directory = detector.save(tmp_path / "twfr")
    test = material.fan.select(split="test")
    scores = detector.score(test, progress=False)
    run = log_training_run(MACHINE, cfg, scores=scores, eval_manifest=test, detector_dir=directory,
                           project_dir=tmp_path, data_hash="abc123")
    register_detector(directory, MACHINE, cfg, run_id=run.run_id, project_dir=tmp_path)
    client = mlflow.MlflowClient(run.tracking_uri)
    version = client.get_model_version_by_alias("asd-fan", "challenger")
    assert version.tags["detector_family"] == "twfr"
    assert client.get_run(run.run_id).data.tags["selection.chosen"] == detector.fit_info["selection"]["chosen"]
    model = mlflow.pyfunc.load_model(f"models:/asd-fan/{version.version}")
    out = model.predict(pd.DataFrame({"waveform": [load_audio(r.path, 16000) for r in test.records]}))
    np.testing.assert_allclose(out["score"], [scores[r.name] for r in test.records], rtol=1e-6)
    assert (out["decision"] == (out["score"] > detector.threshold)).all()
