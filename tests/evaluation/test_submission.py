"""DCASE submission files: names, exact format, round trip, and what the official evaluator makes of them."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from asdflow.errors import EvaluationError
from asdflow.evaluation import clip_key, evaluate_scores, read_submission, write_submission
from asdflow.evaluation.submission import submission_paths


def labelled_clips(seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """Two machine types, fan with two sections; names in shuffled order, as a manifest may list them."""
    rng = np.random.default_rng(seed)
    rows, scores = [], {}
    for machine_type, sections in (("fan", ("00", "01")), ("ToyCar", ("00",))):
        for section in sections:
            for domain in ("source", "target"):
                for label, n, shift in (("normal", 6, 0.0), ("anomaly", 3, 1.0)):
                    for i in range(n):
                        name = f"section_{section}_{domain}_test_{label}_{i:04d}_{machine_type}_x.wav"
                        rows.append(dict(name=name, machine_type=machine_type, section=section,
                                         domain=domain, label=label))
                        scores[name] = float(rng.normal(shift, 1.0))
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame, scores


def test_file_names_and_exact_format(tmp_path):
    records = pd.DataFrame({
        "name": ["section_00_0002.wav", "section_00_0000.wav", "section_00_0001.wav", "section_01_0000.wav"],
        "machine_type": ["valve", "valve", "valve", "valve"],
        "section": ["00", "00", "00", 1],  # an int section (CSV round trip) is written as 01
    })
    scores = {"section_00_0000.wav": 0.25, "section_00_0001.wav": -1.5, "section_00_0002.wav": 1e-7,
              "section_01_0000.wav": np.float32(3.0)}
    decisions = {"section_00_0000.wav": True, "section_00_0001.wav": 0, "section_00_0002.wav": np.bool_(False),
                 "section_01_0000.wav": 1}
    written = write_submission(tmp_path / "sub", scores, decisions, records)
    assert [p.name for p in written] == [
        "anomaly_score_valve_section_00_test.csv", "decision_result_valve_section_00_test.csv",
        "anomaly_score_valve_section_01_test.csv", "decision_result_valve_section_01_test.csv",
    ]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(p.name for p in written)
    # no header, name order, `name.wav,value`, '\n' line ends, decisions 0/1
    assert written[0].read_bytes() == (
        b"section_00_0000.wav,0.25\nsection_00_0001.wav,-1.5\nsection_00_0002.wav,1e-07\n"
    )
    assert written[1].read_bytes() == b"section_00_0000.wav,1\nsection_00_0001.wav,0\nsection_00_0002.wav,0\n"
    assert written[2].read_text() == "section_01_0000.wav,3.0\n"
    assert written[3].read_text() == "section_01_0000.wav,1\n"


def test_round_trip_keeps_every_digit(tmp_path):
    truth, scores = labelled_clips()
    decisions = {name: score > 0.5 for name, score in scores.items()}
    write_submission(tmp_path, scores, decisions, truth)
    read_scores, read_decisions = read_submission(tmp_path)
    assert read_scores == scores  # exact: floats are written with repr
    assert read_decisions == {name: int(flag) for name, flag in decisions.items()}
    # and the scores read back evaluate to the same report
    assert evaluate_scores(truth, read_scores) == evaluate_scores(truth, scores)


def _evaluator_view(directory, truth: pd.DataFrame) -> float:
    """What dcase2023_task2_evaluator computes from the files: it reads each file's rows,
    sorts them, pairs them by position with its ground-truth files (also sorted by name),
    then takes the h-mean of [AUC source..., AUC target..., pAUC...]."""
    values: dict[str, list[float]] = {"source": [], "target": [], "pauc": []}
    for (machine_type, section), group in truth.groupby(["machine_type", "section"]):
        score_path, decision_path = submission_paths(directory, machine_type, section)
        with open(score_path) as handle:
            rows = sorted(csv.reader(handle))
        with open(decision_path) as handle:
            assert len(list(csv.reader(handle))) == len(rows)
        y_pred = np.array([float(r[1]) for r in rows])
        gt = group.sort_values("name")
        y_true = (gt["label"] == "anomaly").to_numpy().astype(int)
        y_domain = (gt["domain"] == "target").to_numpy().astype(int)
        assert [r[0] for r in rows] == gt["name"].tolist()
        values["pauc"].append(roc_auc_score(y_true, y_pred, max_fpr=0.1))
        for domain, index in (("source", 0), ("target", 1)):
            keep = (y_domain == index) | (y_true != 0)
            values[domain].append(roc_auc_score(y_true[keep], y_pred[keep]))
    return float(hmean(np.maximum(values["source"] + values["target"] + values["pauc"], np.finfo(float).eps)))


def test_the_official_evaluator_reading_the_files_gets_our_score(tmp_path):
    truth, scores = labelled_clips(seed=3)
    write_submission(tmp_path, scores, {n: 0 for n in scores}, truth)
    assert _evaluator_view(tmp_path, truth) == pytest.approx(evaluate_scores(truth, scores).official, rel=1e-12)


def test_names_repeated_across_machine_types_use_qualified_keys(tmp_path):
    records = pd.DataFrame({"name": ["section_00_0000.wav"] * 2, "machine_type": ["fan", "pump"], "section": ["00"] * 2})
    with pytest.raises(EvaluationError, match="several machine types"):
        write_submission(tmp_path, {"section_00_0000.wav": 1.0}, {"section_00_0000.wav": 1}, records)
    scores = {clip_key("fan", "section_00_0000.wav"): 1.0, clip_key("pump", "section_00_0000.wav"): 2.0}
    decisions = {clip_key("fan", "section_00_0000.wav"): 0, clip_key("pump", "section_00_0000.wav"): 1}
    written = write_submission(tmp_path, scores, decisions, records)
    assert written[2].read_text() == "section_00_0000.wav,2.0\n"  # pump's score file
    assert read_submission(tmp_path, qualified=True) == (scores, decisions)
    with pytest.raises(EvaluationError, match="qualified=True"):
        read_submission(tmp_path)


def test_missing_extra_and_bad_values_are_refused_before_writing(tmp_path):
    truth, scores = labelled_clips()
    decisions = {n: 0 for n in scores}
    target = tmp_path / "sub"
    missing = dict(scores)
    missing.pop(truth["name"].iloc[0])
    with pytest.raises(EvaluationError, match=r"1 ground-truth clip\(s\) have no scores"):
        write_submission(target, missing, decisions, truth)
    with pytest.raises(EvaluationError, match=r"not in the ground truth \(stray.wav\)"):
        write_submission(target, scores, {**decisions, "stray.wav": 1}, truth)
    with pytest.raises(EvaluationError, match="non-finite scores"):
        write_submission(target, {**scores, truth["name"].iloc[1]: float("nan")}, decisions, truth)
    with pytest.raises(EvaluationError, match=r"not 0/1 or True/False: .*=2"):
        write_submission(target, scores, {**decisions, truth["name"].iloc[2]: 2}, truth)
    with pytest.raises(EvaluationError, match="lacks column"):
        write_submission(target, scores, decisions, truth.drop(columns=["section"]))
    assert not target.exists()  # nothing half-written


def test_reading_refuses_broken_submissions(tmp_path):
    with pytest.raises(EvaluationError, match="no anomaly_score"):
        read_submission(tmp_path)
    (tmp_path / "anomaly_score_fan_section_00_test.csv").write_text("a.wav,0.5\nb.wav,0.1\n")
    with pytest.raises(EvaluationError, match="no matching decision_result_fan_section_00_test.csv"):
        read_submission(tmp_path)
    (tmp_path / "decision_result_fan_section_00_test.csv").write_text("a.wav,1\nb.wav,2\n")
    with pytest.raises(EvaluationError, match="row 2: decision '2' is not 0 or 1"):
        read_submission(tmp_path)
    (tmp_path / "decision_result_fan_section_00_test.csv").write_text("a.wav,1\nc.wav,0\n")
    with pytest.raises(EvaluationError, match="list different clips: b.wav, c.wav"):
        read_submission(tmp_path)
    (tmp_path / "anomaly_score_fan_section_00_test.csv").write_text("a.wav,high\nc.wav,0.1\n")
    with pytest.raises(EvaluationError, match="score 'high' is not a number"):
        read_submission(tmp_path)
    (tmp_path / "anomaly_score_fan_section_00_test.csv").write_text("name,score,extra\n")
    with pytest.raises(EvaluationError, match="expected 'name.wav,value'"):
        read_submission(tmp_path)
