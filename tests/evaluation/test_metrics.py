"""The DCASE official score on small score lists worked out by hand.

Conventions: label 1 = anomaly, higher score = more anomalous. AUC counts, over
every (anomaly, normal) pair, 1 when the anomaly scores higher and 1/2 on a tie.
pAUC is sklearn's McClish-standardised partial AUC for FPR <= 0.1:
    pAUC = 1/2 * (1 + (A - min_area) / (max_area - min_area)),
    A = area under the ROC curve for FPR in [0, 0.1] (the curve interpolated
    linearly at FPR 0.1), min_area = 0.1^2 / 2 = 0.005, max_area = 0.1.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import EvaluationError
from asdflow.evaluation import EvaluationReport, clip_key, evaluate_scores, ground_truth_from_manifest
from asdflow.evaluation.metrics import EPSILON


def make_section(machine_type: str, section: str, source_normal, target_normal, source_anomaly, target_anomaly):
    """Ground-truth rows and scores of one section, named like DCASE test clips."""
    rows, scores = [], {}
    groups = [("source", "normal", source_normal), ("target", "normal", target_normal),
              ("source", "anomaly", source_anomaly), ("target", "anomaly", target_anomaly)]
    for domain, label, values in groups:
        for i, value in enumerate(values):
            name = f"section_{section}_{domain}_test_{label}_{i:04d}_{machine_type}.wav"
            rows.append({"name": name, "machine_type": machine_type, "section": section,
                         "domain": domain, "label": label})
            scores[name] = value
    return pd.DataFrame(rows), scores


def combine(*parts):
    frames, scores = zip(*parts)
    merged: dict[str, float] = {}
    for s in scores:
        merged.update(s)
    return pd.concat(frames, ignore_index=True), merged


# Section A (interpolation at FPR 0.1):
#   source normals 1, 2, 3, 4; target normals 2.5, 5, 6; anomalies 4.5, 7 (source), 3.5 (target)
#   AUC source: 3.5 beats 1,2,3 (3); 4.5 beats all four (4); 7 beats all four (4) -> 11/12
#   AUC target: 3.5 beats 2.5 (1); 4.5 beats 2.5 (1); 7 beats all three (3)       -> 5/9
#   pAUC over 7 normals, 3 anomalies: descending 7(A) 6(N) ... so the ROC rises to TPR 1/3
#   at FPR 0 and stays there until FPR 1/7 > 0.1; A = 0.1 * 1/3 = 1/30;
#   pAUC = 1/2 (1 + (1/30 - 1/200) / (19/200)) = 1/2 (1 + 17/57) = 37/57
SECTION_A = dict(source_normal=[1, 2, 3, 4], target_normal=[2.5, 5, 6], source_anomaly=[4.5, 7], target_anomaly=[3.5])
A_AUC_SOURCE, A_AUC_TARGET, A_PAUC = 11 / 12, 5 / 9, 37 / 57

# Section B (ties):
#   source normals 9, 8, 7, 6, 5; target normals 4, 3, 2, 1, 0; anomalies 9 (source), 5.5 (target)
#   AUC source: 9 beats 8,7,6,5 and ties 9 (4.5); 5.5 beats 5 (1) -> 5.5/10 = 0.55
#   AUC target: both anomalies beat 4..0                          -> 1.0
#   pAUC over 10 normals: the tie at 9 makes the ROC a straight segment from (0, 0) to
#   (0.1, 0.5); A = 0.1 * 0.5 / 2 = 0.025; pAUC = 1/2 (1 + 0.02 / 0.095) = 1/2 (1 + 4/19) = 23/38
SECTION_B = dict(source_normal=[9, 8, 7, 6, 5], target_normal=[4, 3, 2, 1, 0], source_anomaly=[9], target_anomaly=[5.5])
B_AUC_SOURCE, B_AUC_TARGET, B_PAUC = 0.55, 1.0, 23 / 38

# Section C (perfect separation): every anomaly above every normal -> AUCs 1, pAUC 1
SECTION_C = dict(source_normal=[0.1, 0.2], target_normal=[0.3, 0.15], source_anomaly=[0.9], target_anomaly=[0.8])


def test_section_scores_match_hand_computation():
    truth, scores = make_section("fan", "00", **SECTION_A)
    report = evaluate_scores(truth, scores)
    (section,) = report.sections
    assert section.auc_source == pytest.approx(A_AUC_SOURCE, abs=1e-12)
    assert section.auc_target == pytest.approx(A_AUC_TARGET, abs=1e-12)
    assert section.pauc == pytest.approx(A_PAUC, abs=1e-12)
    # official = harmonic mean of the three = 3 / (12/11 + 9/5 + 57/37)
    assert section.official == pytest.approx(3 / (12 / 11 + 9 / 5 + 57 / 37), abs=1e-12)
    assert (section.n_source_normal, section.n_target_normal, section.n_anomaly) == (4, 3, 3)
    # one section: the machine type and the overall official score are that section's
    assert report.machine_types["fan"].official == pytest.approx(section.official, abs=1e-12)
    assert report.official == pytest.approx(section.official, abs=1e-12)


def test_pauc_is_not_the_plain_auc_of_the_section():
    # Section A's full AUC over all clips: anomalies 3.5, 4.5, 7 vs normals 1,2,2.5,3,4,5,6:
    # 3.5 beats 4, 4.5 beats 5, 7 beats 7 -> 16/21; the official pAUC differs from it.
    truth, scores = make_section("fan", "00", **SECTION_A)
    y = (truth["label"] == "anomaly").astype(int)
    s = truth["name"].map(scores)
    assert roc_auc_score(y, s) == pytest.approx(16 / 21)
    assert evaluate_scores(truth, scores).sections[0].pauc != pytest.approx(16 / 21)


def test_ties_count_half_as_sklearn_does():
    truth, scores = make_section("fan", "01", **SECTION_B)
    (section,) = evaluate_scores(truth, scores).sections
    assert section.auc_source == pytest.approx(B_AUC_SOURCE, abs=1e-12)
    assert section.auc_target == pytest.approx(B_AUC_TARGET, abs=1e-12)
    assert section.pauc == pytest.approx(B_PAUC, abs=1e-12)


def test_all_scores_tied_gives_chance():
    # every clip scores 1: each pair is a tie -> AUC 1/2; the ROC is the diagonal, A = 0.005 = min_area -> pAUC 1/2
    truth, scores = make_section("fan", "00", [1, 1], [1, 1], [1], [1])
    (section,) = evaluate_scores(truth, scores).sections
    assert (section.auc_source, section.auc_target, section.pauc) == pytest.approx((0.5, 0.5, 0.5))
    assert section.official == pytest.approx(0.5)


def test_harmonic_mean_aggregation_over_sections_and_machine_types():
    truth, scores = combine(
        make_section("fan", "00", **SECTION_A),
        make_section("fan", "01", **SECTION_B),
        make_section("pump", "00", **SECTION_C),
    )
    report = evaluate_scores(truth, scores)
    assert [(s.machine_type, s.section) for s in report.sections] == [("fan", "00"), ("fan", "01"), ("pump", "00")]

    fan = report.machine_types["fan"]
    # fan: harmonic mean of its 6 values 11/12, 5/9, 37/57, 0.55, 1, 23/38 (reciprocals 12/11, 9/5, 57/37, 20/11, 1, 38/23)
    assert fan.official == pytest.approx(6 / (12 / 11 + 9 / 5 + 57 / 37 + 20 / 11 + 1 + 38 / 23), abs=1e-12)
    assert fan.auc_source == pytest.approx((11 / 12 + 0.55) / 2)
    assert fan.auc_target == pytest.approx((5 / 9 + 1.0) / 2)
    assert fan.pauc == pytest.approx((37 / 57 + 23 / 38) / 2)
    assert fan.arithmetic_mean == pytest.approx((11 / 12 + 5 / 9 + 37 / 57 + 0.55 + 1 + 23 / 38) / 6)
    assert fan.n_sections == 2
    assert report.machine_types["pump"].official == pytest.approx(1.0)

    # overall: harmonic mean of all 9 values (pump adds three 1s)
    overall = 9 / (12 / 11 + 9 / 5 + 57 / 37 + 20 / 11 + 1 + 38 / 23 + 3)
    assert report.official == pytest.approx(overall, abs=1e-12)
    assert report.overall.n_sections == 3
    assert report.overall.auc_source == pytest.approx((11 / 12 + 0.55 + 1) / 3)
    # the harmonic mean is below the arithmetic one unless all values agree
    assert report.overall.official < report.overall.arithmetic_mean


def test_matches_the_official_evaluator_formula_on_random_scores():
    # The evaluator's way: masks (domain == d) | (label != 0), then h-mean over the
    # concatenated [AUC source..., AUC target..., pAUC...] of every machine type and section.
    rng = np.random.default_rng(0)
    parts = []
    for machine_type in ("fan", "valve"):
        for section in ("00", "01"):
            parts.append(make_section(machine_type, section, rng.normal(0, 1, 12), rng.normal(0.5, 1, 6),
                                      rng.normal(1.5, 1, 5), rng.normal(1, 1, 7)))
    truth, scores = combine(*parts)
    values = []
    for key in ("source", "target", "pauc"):
        for _, group in truth.groupby(["machine_type", "section"]):
            y = (group["label"] == "anomaly").to_numpy().astype(int)
            s = group["name"].map(scores).to_numpy()
            domain_is = group["domain"].to_numpy()
            if key == "pauc":
                values.append(roc_auc_score(y, s, max_fpr=0.1))
            else:
                keep = (domain_is == key) | (y != 0)
                values.append(roc_auc_score(y[keep], s[keep]))
    expected = hmean(np.maximum(values, np.finfo(float).eps))
    assert evaluate_scores(truth, scores).official == pytest.approx(expected, rel=1e-12)


def test_an_inverted_detector_scores_near_zero_instead_of_failing():
    # every anomaly below every normal: AUCs 0 (clipped at machine epsilon before the h-mean);
    # the ROC stays at TPR 0 up to FPR 0.1, A = 0 -> pAUC = 1/2 (1 + (0 - 0.005) / 0.095) = 1/2 (1 - 1/19) = 9/19
    truth, scores = make_section("fan", "00", [5, 6], [7, 8], [1], [2])
    report = evaluate_scores(truth, scores)
    (section,) = report.sections
    assert section.auc_source == 0.0 and section.auc_target == 0.0
    assert section.pauc == pytest.approx(9 / 19, abs=1e-12)
    assert 0 < report.official < 1e-14
    assert report.official == pytest.approx(3 / (2 / EPSILON + 19 / 9))


def test_scores_of_any_numeric_type_and_integer_sections():
    truth, scores = make_section("fan", "00", **SECTION_A)
    truth["section"] = 0  # as a CSV round trip would read it
    as_numpy = {k: np.float32(v) for k, v in scores.items()}
    report = evaluate_scores(truth, as_numpy)
    assert report.sections[0].section == "00"
    assert report.sections[0].auc_source == pytest.approx(A_AUC_SOURCE)


# -- name checks ----------------------------------------------------------------


def test_missing_names_are_refused_and_listed():
    truth, scores = make_section("fan", "00", **SECTION_A)
    dropped = sorted(scores)[:2]
    for name in dropped:
        del scores[name]
    with pytest.raises(EvaluationError) as err:
        evaluate_scores(truth, scores)
    message = str(err.value)
    assert "2 ground-truth clip(s) have no scores" in message
    assert all(name in message for name in dropped)
    assert "not in the ground truth" not in message


def test_extra_names_are_refused_and_listed():
    truth, scores = make_section("fan", "00", **SECTION_A)
    scores["section_00_source_test_normal_9999_stray.wav"] = 0.3
    with pytest.raises(EvaluationError, match=r"1 scored name\(s\) are not in the ground truth.*9999_stray"):
        evaluate_scores(truth, scores)


def test_many_differences_are_counted_and_the_listing_is_capped():
    truth, scores = make_section("fan", "00", **SECTION_A)
    scores = {f"other_{i:03d}.wav": 0.0 for i in range(25)}
    with pytest.raises(EvaluationError) as err:
        evaluate_scores(truth, scores)
    message = str(err.value)
    assert "10 ground-truth clip(s) have no scores" in message
    assert "25 scored name(s) are not in the ground truth" in message
    assert "(15 more)" in message
    assert "other_009.wav" in message and "other_010.wav" not in message


def test_names_repeated_across_machine_types_need_qualified_keys():
    # eval-style names repeat under every machine type; bare names would mix the scores up
    fan, fan_scores = make_section("fan", "00", **SECTION_A)
    pump, pump_scores = make_section("pump", "00", **SECTION_C)
    pump["name"] = fan["name"].iloc[: len(pump)].to_numpy()
    pump_scores = dict(zip(pump["name"], pump_scores.values()))
    truth = pd.concat([fan, pump], ignore_index=True)
    with pytest.raises(EvaluationError, match="several machine types"):
        evaluate_scores(truth, {**fan_scores, **pump_scores})
    qualified = {clip_key("fan", n): v for n, v in fan_scores.items()}
    qualified.update({clip_key("pump", n): v for n, v in pump_scores.items()})
    report = evaluate_scores(truth, qualified)
    assert report.machine_types["fan"].official == pytest.approx(3 / (12 / 11 + 9 / 5 + 57 / 37))
    assert report.machine_types["pump"].official == pytest.approx(1.0)


# -- data errors ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None, "high"])
def test_non_finite_scores_are_refused_naming_the_clip(bad):
    truth, scores = make_section("fan", "00", **SECTION_A)
    victim = sorted(scores)[3]
    scores[victim] = bad
    with pytest.raises(EvaluationError, match=rf"1 clip\(s\) have non-finite scores: {victim}"):
        evaluate_scores(truth, scores)


def test_a_domain_without_normals_is_refused_naming_machine_section_and_domain():
    truth, scores = make_section("fan", "03", [1, 2], [], [3], [4])
    with pytest.raises(EvaluationError, match="fan section 03: no target-domain normal clips"):
        evaluate_scores(truth, scores)
    truth, scores = make_section("fan", "03", [], [1, 2], [3], [4])
    with pytest.raises(EvaluationError, match="fan section 03: no source-domain normal clips"):
        evaluate_scores(truth, scores)


def test_a_section_without_anomalies_is_refused_and_every_gap_is_listed():
    good = make_section("fan", "00", **SECTION_A)
    no_anomaly = make_section("pump", "01", [1, 2], [3, 4], [], [])
    no_target = make_section("valve", "02", [1, 2], [], [5], [])
    truth, scores = combine(good, no_anomaly, no_target)
    with pytest.raises(EvaluationError) as err:
        evaluate_scores(truth, scores)
    message = str(err.value)
    assert "pump section 01: no anomalous clips" in message
    assert "valve section 02: no target-domain normal clips" in message
    assert "fan" not in message


def test_bad_labels_domains_columns_and_empty_ground_truth():
    truth, scores = make_section("fan", "00", **SECTION_A)
    with pytest.raises(EvaluationError, match="labels must be normal or anomaly"):
        evaluate_scores(truth.assign(label="broken"), scores)
    with pytest.raises(EvaluationError, match="domains must be source or target"):
        evaluate_scores(truth.assign(domain=None), scores)
    with pytest.raises(EvaluationError, match="lacks column"):
        evaluate_scores(truth.drop(columns=["domain"]), scores)
    with pytest.raises(EvaluationError, match="no labelled test clips"):
        evaluate_scores(truth.iloc[:0], {})
    with pytest.raises(EvaluationError, match="max_fpr"):
        evaluate_scores(truth, scores, max_fpr=0)


def test_integer_labels_are_accepted():
    truth, scores = make_section("fan", "00", **SECTION_A)
    numeric = truth.assign(label=(truth["label"] == "anomaly").astype(int))
    assert evaluate_scores(numeric, scores).official == pytest.approx(evaluate_scores(truth, scores).official)


# -- ground truth and report --------------------------------------------------------


def test_ground_truth_keeps_only_labelled_test_clips():
    def record(name, split, domain=None, label=None, machine_type="fan", section="00"):
        return ClipRecord(path=f"/data/{machine_type}/{split}/{name}", name=name, machine_type=machine_type,
                          section=section, domain=domain, split=split, label=label)

    manifest = Manifest(root="/data", records=[
        record("section_00_source_train_normal_0000_a.wav", "train", "source", "normal"),
        record("section_01_target_test_anomaly_0000_a.wav", "test", "target", "anomaly", section="01"),
        record("section_00_source_test_normal_0000_a.wav", "test", "source", "normal"),
        record("section_00_0000.wav", "test"),  # unlabelled eval clip
        record("section_00_source_supplemental_noise_0000.wav", "supplemental", "source"),
        record("section_00_target_test_normal_0000_a.wav", "test", "target", "normal", machine_type="bearing"),
    ])
    truth = ground_truth_from_manifest(manifest)
    assert list(truth.columns) == ["name", "machine_type", "section", "domain", "label"]
    assert truth.to_dict(orient="records") == [
        {"name": "section_00_target_test_normal_0000_a.wav", "machine_type": "bearing", "section": "00",
         "domain": "target", "label": "normal"},
        {"name": "section_00_source_test_normal_0000_a.wav", "machine_type": "fan", "section": "00",
         "domain": "source", "label": "normal"},
        {"name": "section_01_target_test_anomaly_0000_a.wav", "machine_type": "fan", "section": "01",
         "domain": "target", "label": "anomaly"},
    ]
    empty = ground_truth_from_manifest(Manifest(root="/data"))
    assert list(empty.columns) == ["name", "machine_type", "section", "domain", "label"] and len(empty) == 0


def test_report_round_trips_and_prints_an_aligned_table(tmp_path):
    truth, scores = combine(make_section("fan", "00", **SECTION_A), make_section("fan", "01", **SECTION_B),
                            make_section("pump", "00", **SECTION_C))
    report = evaluate_scores(truth, scores)
    assert EvaluationReport.from_dict(report.to_dict()) == report
    assert EvaluationReport.from_json(report.to_json()) == report
    assert EvaluationReport.load(report.save(tmp_path / "report.json")) == report

    table = report.to_table()
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["machine", "type"]
    assert any(line.startswith("fan") and " all " in line for line in lines)  # fan has two sections
    assert not any(line.startswith("pump") and " all " in line for line in lines)  # pump has one
    assert f"{report.official:.4f}" in next(line for line in lines if line.startswith("overall"))
    assert "0.9167" in table and "0.5556" in table and "0.6491" in table  # 11/12, 5/9, 37/57
    data_lines = [line for line in lines if line.startswith(("fan", "pump", "overall"))]
    official_column = lines[0].index("official") + len("official")
    assert all(line[official_column - 6:official_column].replace(".", "").isdigit() for line in data_lines)

    metrics = report.to_metrics()
    assert metrics["official"] == report.official
    assert metrics["fan.section_01.pauc"] == pytest.approx(B_PAUC)
    assert all(math.isfinite(v) for v in metrics.values())
