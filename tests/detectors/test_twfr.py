"""TWFR family: GWRP-pooled log-mel, GMM / density k-NN, label-free choice of the pooling."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from asdflow.data.audio import write_audio
from asdflow.data.dcase_reader import build_manifest
from asdflow.data.synth_timing import write_timing_machine
from asdflow.detectors import load_detector, make_detector
from asdflow.detectors.twfr.detector import parse_candidate
from asdflow.errors import DetectorError
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest


def twfr_config(tiny_config, **twfr):
    cfg = tiny_config.model_copy(deep=True)
    cfg.detector.family = "twfr"
    cfg.detector.twfr = type(cfg.detector.twfr).model_validate({**cfg.detector.twfr.model_dump(), **twfr})
    return cfg


@pytest.fixture(scope="module")
def timing_machines(tmp_path_factory):
    root = tmp_path_factory.mktemp("timing_machines")
    for kind in ("impulsive", "stationary"):
        write_timing_machine(root, kind, n_train=32, n_test=24, seconds=3.0)
    return build_manifest(root, progress=False, compute_md5=False)


def fit_and_auc(cfg, manifest, machine):
    part = manifest.select(machine_type=machine)
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    detector.fit(part.select(split="train"), progress=False)
    test = part.select(split="test")
    scores = detector.score(test, progress=False)
    labels = [r.label == "anomaly" for r in test.records]
    return detector, roc_auc_score(labels, [scores[r.name] for r in test.records])


@pytest.mark.parametrize("machine, near", [("impulsive", "max"), ("stationary", "mean")])
def test_label_free_choice_lands_where_the_machine_needs_it(tiny_config, timing_machines, machine, near):
    """From normal clips alone: near-max pooling for the impulsive machine, near-mean for the stationary
    one, and within 0.05 of the best candidate on the test anomalies (the oracle, read only here)."""
    cfg = twfr_config(tiny_config)
    detector, auc = fit_and_auc(cfg, timing_machines, machine)
    selection = detector.fit_info["selection"]
    _, r = parse_candidate(selection["chosen"])
    assert (r <= 0.5) if near == "max" else (r >= 0.97), selection["chosen"]
    oracle = max(
        fit_and_auc(twfr_config(tiny_config, default_scorer=s, default_r=r_, selection={"strategy": "fixed"}),
                    timing_machines, machine)[1]
        for r_ in cfg.detector.twfr.r_grid for s in cfg.detector.twfr.scorers
    )
    assert auc >= oracle - 0.05, (selection["chosen"], auc, oracle)
    # the wrong end of the pooling range really is wrong on these machines (the test can fail)
    wrong = 1.0 if near == "max" else 0.0
    _, wrong_auc = fit_and_auc(twfr_config(tiny_config, default_r=wrong, selection={"strategy": "fixed"}),
                               timing_machines, machine)
    assert wrong_auc < auc - 0.1


def test_fit_info_records_the_proxy_table_and_the_choice(tiny_config, timing_machines):
    cfg = twfr_config(tiny_config, r_grid=[0.0, 0.9, 1.0], scorers=["knn"])  # + the default, knn r=0.5
    detector, _ = fit_and_auc(cfg, timing_machines, "impulsive")
    info = detector.fit_info
    table = info["selection"]["table"]
    assert {row["candidate"] for row in table} == {"knn r=0", "knn r=0.5", "knn r=0.9", "knn r=1"}
    for row in table:
        assert 0 <= row["auc"] <= 1 and 0 <= row["hmean"] <= 1 and set(row["auc_by_kind"]) >= {"impacts"}
    assert info["selection"]["strategy"] == "proxy" and info["selection"]["chosen"] in {r["candidate"] for r in table}
    assert "knn" in info["pooling"]
    json.dumps(info)  # fit_info goes to detector.json and MLflow


@pytest.mark.parametrize("strategy", ["fusion_mean", "fusion_min", "fixed"])
def test_other_strategies_fit_score_and_round_trip(tiny_config, timing_machines, strategy, tmp_path):
    cfg = twfr_config(tiny_config, r_grid=[0.0, 0.9, 1.0], selection={"strategy": strategy})
    detector, auc = fit_and_auc(cfg, timing_machines, "impulsive")
    assert auc > 0.6
    assert detector.fit_info["selection"]["chosen"] == (strategy if strategy != "fixed" else "knn r=0.5")
    test = timing_machines.select(machine_type="impulsive", split="test")
    loaded = load_detector(detector.save(tmp_path / "twfr"))
    assert loaded.score(test, progress=False) == pytest.approx(detector.score(test, progress=False))
    assert loaded.threshold == detector.threshold and loaded.fit_info["selection"]["strategy"] == strategy


def test_threshold_comes_from_held_out_scores(tiny_config, timing_machines):
    cfg = twfr_config(tiny_config, default_r=0.0, selection={"strategy": "fixed"})
    detector, _ = fit_and_auc(cfg, timing_machines, "impulsive")
    normals = timing_machines.select(machine_type="impulsive", split="test")
    normals = normals.model_copy(update={"records": [r for r in normals.records if r.label == "normal"]})
    scores = np.array(list(detector.score(normals, progress=False).values()))
    # a k-NN scores its own bank 0: an in-sample threshold would flag most unseen normals
    assert detector.threshold > 0 and np.mean(scores > detector.threshold) < 0.5


def test_too_few_clips_fall_back_to_the_fixed_default(tiny_config, timing_machines):
    part = timing_machines.select(machine_type="stationary", split="train")
    few = part.model_copy(update={"records": part.records[:5]})
    detector = make_detector(twfr_config(tiny_config).detector, tiny_config.features)
    info = detector.fit(few, progress=False)
    assert info["selection"]["chosen"] == "knn r=0.5"
    assert "fewer than selection.min_clips" in info["selection"]["reason"]


def test_two_training_clips_still_give_a_detector_and_one_is_a_clear_error(tiny_config, timing_machines):
    """A machine type with two recorded clips (the real DCASE excerpts): the leave-one-out threshold
    scores each clip against a bank of one, which has no density to normalise by."""
    part = timing_machines.select(machine_type="stationary")
    train = [r for r in part.records if r.split == "train"]
    detector = make_detector(twfr_config(tiny_config).detector, tiny_config.features)
    detector.fit(part.model_copy(update={"records": train[:2]}), progress=False)
    scores = detector.score(part.select(split="test"), progress=False)
    assert np.isfinite(detector.threshold) and all(np.isfinite(v) for v in scores.values())
    with pytest.raises(DetectorError, match="needs at least 2 normal training clips, got 1"):
        detector.fit(part.model_copy(update={"records": train[:1]}), progress=False)


def test_one_domain_and_real_dcase_sections_work(tiny_config, tiny_manifest):
    fan = tiny_manifest.select(machine_type="fan")
    source_only = fan.model_copy(update={"records": [r for r in fan.records if r.domain == "source"]})
    detector = make_detector(twfr_config(tiny_config).detector, tiny_config.features)
    info = detector.fit(source_only.select(split="train"), progress=False)
    assert info["domains"] == {"source": 12, "target": 0}
    report = evaluate_scores(ground_truth_from_manifest(fan.select(split="test")),
                             detector.score(fan.select(split="test"), progress=False))
    assert report.overall.auc_source > 0.75  # severity-1 anomalies


def _dataset_with(tmp_path, bad):
    rng = np.random.default_rng(0)
    for i in range(6):
        wave = 0.1 * rng.standard_normal(16000).astype(np.float32)
        write_audio(tmp_path / "m" / "train" / f"section_00_source_train_normal_{i:04d}_a_1.wav", wave, 16000)
    path = tmp_path / "m" / "train" / "section_00_source_train_normal_0099_a_1.wav"
    if bad == "silent":
        write_audio(path, np.zeros(16000, np.float32), 16000)
    else:  # NaN samples in a float wav
        import soundfile as sf

        wave = np.full(16000, np.nan, np.float32)
        sf.write(str(path), wave, 16000, subtype="FLOAT")
    return build_manifest(tmp_path, progress=False, compute_md5=False)


@pytest.mark.parametrize("bad", ["silent", "nan"])
def test_silent_or_nan_clip_is_named(tiny_config, tmp_path, bad):
    manifest = _dataset_with(tmp_path, bad)
    detector = make_detector(twfr_config(tiny_config).detector, tiny_config.features)
    with pytest.raises(DetectorError, match="normal_0099"):
        detector.fit(manifest, progress=False)


def test_unfitted_and_corrupt_state_give_clear_errors(tiny_config, tmp_path):
    detector = make_detector(twfr_config(tiny_config).detector, tiny_config.features)
    with pytest.raises(DetectorError, match="not fitted"):
        detector.score_waveforms([np.zeros(16000, np.float32)])
    detector.save(tmp_path)
    with pytest.raises(DetectorError, match="no fitted candidate"):
        load_detector(tmp_path)
    (tmp_path / "twfr.npz").write_bytes(b"not a zip")
    with pytest.raises(DetectorError, match="cannot load twfr state"):
        load_detector(tmp_path)
