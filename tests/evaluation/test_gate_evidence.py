"""What the gate judges on (asdflow.evaluation.gate_evidence), and the train stage keeping its clips out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asdflow.config import GateConfig
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.evaluation.gate_evidence import SimulatedScore, plan_evidence, reserved_for_gate, simulated_anomalies


def _record(split: str, label: str | None, i: int, domain: str | None = "source") -> ClipRecord:
    name = f"section_00_{domain}_{split}_{label}_{i:04d}.wav" if label else f"section_00_{i:04d}.wav"
    return ClipRecord(path=f"/d/fan/{split}/{name}", name=name, machine_type="fan", section="00", domain=domain,
                      split=split, label=label)


def _manifest(n_train=40, test_normal=0, test_anomaly=0, unlabelled=0) -> Manifest:
    records = [_record("train", "normal", i) for i in range(n_train)]
    records += [_record("test", "normal", 100 + i, "target" if i % 2 else "source") for i in range(test_normal)]
    records += [_record("test", "anomaly", 200 + i) for i in range(test_anomaly)]
    records += [_record("test", None, 300 + i, None) for i in range(unlabelled)]
    return Manifest(root="/d", records=records)


def test_labelled_anomalies_make_labelled_evidence_and_nothing_is_kept_from_training():
    plan = plan_evidence(_manifest(test_normal=6, test_anomaly=3), "fan", GateConfig())
    assert plan.evidence == "labelled" and len(plan.normals) == 6 and len(plan.anomalies) == 3
    assert plan.reserved_from_training == set()


def test_normal_test_clips_without_anomalies_are_the_held_out_normals():
    plan = plan_evidence(_manifest(test_normal=6), "fan", GateConfig())
    assert plan.evidence == "simulated" and len(plan.normals) == 6 and plan.anomalies == []
    assert plan.reserved_from_training == set()
    forced = plan_evidence(_manifest(test_normal=6, test_anomaly=3), "fan", GateConfig(evidence="simulated"))
    assert forced.evidence == "simulated" and len(forced.normals) == 6


def test_an_evaluation_set_without_labels_holds_training_normals_out_by_a_stable_hash():
    gate = GateConfig(holdout_fraction=0.2)
    plan = plan_evidence(_manifest(n_train=200, unlabelled=5), "fan", gate)
    assert plan.evidence == "simulated" and 20 <= len(plan.reserved_from_training) <= 60
    assert {r.name for r in plan.normals} == plan.reserved_from_training
    # the same clips stay out when the dataset gains clips
    grown = plan_evidence(_manifest(n_train=300, unlabelled=5), "fan", gate)
    assert plan.reserved_from_training <= grown.reserved_from_training
    assert all(reserved_for_gate(name, 0.2) for name in plan.reserved_from_training)
    # a tiny dataset still gets the minimum, never more than half of its training clips
    small = plan_evidence(_manifest(n_train=6), "fan", GateConfig(min_heldout_normals=4))
    assert len(small.reserved_from_training) == 3


def test_simulated_anomalies_keep_the_clip_s_domain_and_say_what_they_are():
    sr = 16000
    normals = [_record("test", "normal", i, "target") for i in range(2)]
    waves = [np.random.default_rng(i).standard_normal(sr).astype(np.float32) * 0.1 for i in range(2)]
    records, made = simulated_anomalies(normals, waves, sr, GateConfig(simulated_kinds=["impacts", "tilt"]))
    assert len(records) == len(made) == 4
    assert all(r.label == "anomaly" and r.domain == "target" and r.name.startswith("simulated_") for r in records)
    again, made_again = simulated_anomalies(normals, waves, sr, GateConfig(simulated_kinds=["impacts", "tilt"]))
    assert all(np.array_equal(a, b) for a, b in zip(made, made_again))


def test_simulated_score_of_one_domain_has_no_target_auc_and_an_official_score():
    normals = [_record("test", "normal", i) for i in range(4)]
    judged = SimulatedScore(normals, np.array([0.0, 0.1, 0.2, 0.3]), np.array([1.0, 2.0, 0.15]), max_fpr=0.1)
    assert judged.auc_source == pytest.approx(10 / 12) and math.isnan(judged.auc_target)
    assert 0 < judged.official <= 1


def test_train_stage_leaves_the_gate_s_clips_out(tiny_manifest, tiny_config, tmp_path):
    from asdflow.jobs import train_detector

    unlabelled = Manifest(root=tiny_manifest.root, records=[
        r.model_copy(update={"label": None, "domain": None}) if r.split == "test" else r
        for r in tiny_manifest.records])
    config = tiny_config.model_copy(update={"detector": tiny_config.detector.model_copy(update={"family": "twfr"})})
    result = train_detector(unlabelled, "fan", config, tmp_path / "det")
    plan = plan_evidence(unlabelled, "fan", config.gate)
    assert result.n_reserved_for_gate == len(plan.reserved_from_training) >= config.gate.min_heldout_normals
    n_train = sum(1 for r in tiny_manifest.records if r.machine_type == "fan" and r.split == "train")
    assert result.fit_info["n_clips"] == n_train - result.n_reserved_for_gate


def test_evaluate_without_labelled_anomalies_reports_why_instead_of_failing(tiny_manifest, tmp_path):
    import pandas as pd

    from asdflow.jobs import evaluate_clips

    plant = Manifest(root=tiny_manifest.root, records=[
        r for r in tiny_manifest.records if r.machine_type == "fan" and r.label != "anomaly"])
    test = [r for r in plant.records if r.split == "test"]
    scores = pd.DataFrame({"name": [r.name for r in test], "machine_type": "fan",
                           "score": np.linspace(0, 1, len(test))})
    report = evaluate_clips(scores, plant, tmp_path)
    assert report.not_evaluated and "no labelled anomalies" in report.not_evaluated
    assert math.isnan(report.official) and (tmp_path / "evaluation.json").is_file()
    from asdflow.evaluation.metrics import EvaluationReport

    again = EvaluationReport.load(tmp_path / "evaluation.json")  # what the register step reads
    assert again.not_evaluated == report.not_evaluated and math.isnan(again.overall.official)


def test_a_few_labelled_clips_get_a_partial_score_marked_as_not_official(tiny_manifest, tmp_path):
    """One anomaly and one target normal (a real DCASE machine of ../shared): no source AUC, no failure."""
    import pandas as pd

    from asdflow.jobs import evaluate_clips

    fan = [r for r in tiny_manifest.records if r.machine_type == "fan"]
    pick = ([r for r in fan if r.split == "test" and r.label == "anomaly"][:1]
            + [r for r in fan if r.split == "test" and r.label == "normal" and r.domain == "target"][:1])
    plant = Manifest(root=tiny_manifest.root, records=[r for r in fan if r.split == "train"] + pick)
    scores = pd.DataFrame({"name": [r.name for r in pick], "machine_type": "fan", "score": [2.0, 1.0]})
    report = evaluate_clips(scores, plant, tmp_path)
    assert report.partial and "no source-domain normal clips" in report.partial
    summary = report.machine_types["fan"]
    assert math.isnan(summary.auc_source) and summary.auc_target == 1.0 and summary.official == pytest.approx(1.0)
    from asdflow.evaluation.metrics import EvaluationReport

    assert math.isnan(EvaluationReport.load(tmp_path / "evaluation.json").machine_types["fan"].auc_source)
