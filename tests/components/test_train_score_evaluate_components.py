"""train_detector, score_clips and evaluate_scores through .python_func."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from asdflow.data.manifest import Manifest
from asdflow.detectors.base import load_detector


def test_train_saves_a_detector_of_the_machine_type(trained):
    detector = load_detector(trained.path)
    meta = json.loads((Path(trained.path) / "detector.json").read_text())
    assert meta["machine_type"] == "fan" and detector.family == trained.metadata["family"] == "baseline_ae"
    assert trained.metadata["threshold"] == detector.threshold > 0


def test_score_writes_every_test_clip_and_the_submission_files(scored, validated):
    test_clips = Manifest.load(validated[0].path).select(split="test")
    frame = pd.read_csv(Path(scored.path) / "scores.csv")
    assert sorted(frame["name"]) == sorted(r.name for r in test_clips.records)
    assert frame["score"].notna().all() and set(frame["decision"]) <= {0, 1}
    assert (Path(scored.path) / "anomaly_score_fan_section_00_test.csv").is_file()
    assert (Path(scored.path) / "decision_result_fan_section_00_test.csv").is_file()
    assert scored.metadata["n_clips"] == len(test_clips)


def test_evaluate_reports_the_official_score_and_logs_kfp_metrics(evaluated):
    evaluation, metrics = evaluated
    report = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    for name in ("roc.png", "score_histogram.png"):
        assert (Path(evaluation.path) / name).stat().st_size > 0
    assert metrics.metadata["official"] == report["overall"]["official"]
    assert set(metrics.metadata) == {"official", "auc_source", "auc_target", "pauc"}
    # the tiny data's anomalies are obvious (severity 1): a trained detector finds them
    assert metrics.metadata["official"] > 0.7


def test_evaluate_of_a_few_labelled_clips_logs_only_finite_metrics(settings, validated, scored):
    """One target normal and one anomaly (a real DCASE excerpt): no source AUC, which KFP cannot store as NaN."""
    from kfp.dsl import Artifact, Dataset, Metrics

    import components
    from tests.components.conftest import artifact

    clips = Manifest.load(validated[0].path)
    test = clips.select(split="test")
    keep = ([r for r in test.records if r.label == "anomaly"][:1]
            + [r for r in test.records if r.label == "normal" and r.domain == "target"][:1])
    few = Manifest(root=clips.root, records=clips.select(split="train").records + keep)
    manifest = artifact(Dataset, settings.work / "few" / "manifest")
    few.save(manifest.path)
    scores = artifact(Dataset, settings.work / "few" / "scores")
    frame = pd.read_csv(Path(scored.path) / "scores.csv")
    Path(scores.path).mkdir(parents=True, exist_ok=True)
    frame[frame["name"].isin({r.name for r in keep})].to_csv(Path(scores.path) / "scores.csv", index=False)
    evaluation = artifact(Artifact, settings.work / "few" / "evaluation")
    metrics = artifact(Metrics, settings.work / "few" / "metrics")
    components.evaluate_scores.python_func(scores=scores, manifest=manifest, evaluation=evaluation, metrics=metrics)
    assert "not the official score" in evaluation.metadata["partial"]
    assert "auc_source" not in metrics.metadata and {"auc_target", "pauc", "official"} <= set(metrics.metadata)
