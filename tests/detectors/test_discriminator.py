import numpy as np
import pytest

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.detectors import load_detector, make_detector
from asdflow.detectors.base import available_families
from asdflow.errors import DetectorError
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest


def _config(tiny_config, **discriminator):
    cfg = tiny_config.model_copy(deep=True)
    cfg.detector.family = "discriminator"
    for key, value in discriminator.items():
        setattr(cfg.detector.discriminator, key, value)
    return cfg


@pytest.fixture(scope="module")
def fan(tiny_manifest):
    return tiny_manifest.select(machine_type="fan")


@pytest.fixture(scope="module")
def trained(fan, tiny_config, tmp_path_factory):
    cfg = _config(tiny_config, rounds=3, epochs_per_round=8, validation_fraction=0.15)
    cfg.detector.discriminator.simulation.autoencoder.epochs = 4
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    detector.fit(fan.select(split="train"), progress=False)
    return detector, detector.save(tmp_path_factory.mktemp("discriminator"))


def test_family_is_registered(tiny_config):
    assert "discriminator" in available_families()
    assert make_detector(_config(tiny_config).detector, tiny_config.features).family == "discriminator"


def test_classifier_has_four_linear_layers_and_the_encoder_is_frozen(trained):
    detector, _ = trained
    linears = [m for m in detector.classifier.modules() if m.__class__.__name__ == "Linear"]
    assert len(linears) == 4 and linears[-1].out_features == 1
    assert not any(p.requires_grad for p in detector.autoencoder.parameters())


def test_fit_info_threshold_and_validation(trained):
    detector, _ = trained
    info = detector.fit_info
    assert info["machine_type"] == "fan" and info["n_clips"] == 14
    assert info["n_train_clips"] == 12  # 15 % of 14 clips held out for the validation AUC
    assert 0.0 <= info["validation_auc"] <= 1.0
    assert np.isfinite(info["final_classifier_loss"]) and info["latent_spread"] > 0
    assert np.isfinite(detector.threshold)


def test_scores_rank_obvious_anomalies_above_normals(trained, fan):
    detector, _ = trained
    test = fan.select(split="test")
    report = evaluate_scores(ground_truth_from_manifest(test), detector.score(test, progress=False))
    # severity-1 anomalies on 1-s clips, tiny nets: clearly better than chance
    assert report.overall.auc_source > 0.6, report.to_table()


def test_save_load_round_trip_and_record_free_scoring(trained, fan):
    detector, directory = trained
    loaded = load_detector(directory)
    assert loaded.family == "discriminator" and loaded.threshold == detector.threshold
    record = fan.select(split="test").records[0]
    wav = load_audio(record.path, detector.features.sample_rate)
    a = detector.score_waveform(wav, record)
    assert loaded.score_waveform(wav, record) == pytest.approx(a, rel=1e-5)
    assert loaded.score_waveform(wav, None) == pytest.approx(a, rel=1e-5)  # no domain needed
    batch = loaded.score_waveforms([wav, wav[: len(wav) // 2]])
    assert batch[0] == pytest.approx(a, rel=1e-5) and np.isfinite(batch[1])
    assert bool(loaded.decide(a)) == (a > loaded.threshold)


def test_training_is_deterministic_per_seed(fan, tiny_config):
    cfg = _config(tiny_config, rounds=1, epochs_per_round=2)
    train = Manifest(root=fan.root, records=fan.select(split="train").records[:5])
    wav = load_audio(fan.select(split="test").records[0].path, 16000)
    scores = []
    for seed in (0, 0, 1):
        detector = make_detector(cfg.detector, cfg.features, seed=seed)
        detector.fit(train, progress=False)
        scores.append(detector.score_waveform(wav))
    assert scores[0] == scores[1] and scores[0] != scores[2]


def test_bad_input_names_the_cause(fan, tiny_config, tmp_path):
    cfg = _config(tiny_config)
    detector = make_detector(cfg.detector, cfg.features)
    few = Manifest(root=fan.root, records=fan.select(split="train").records[:2])
    with pytest.raises(DetectorError, match="too few training clips.*2 normal"):
        detector.fit(few, progress=False)
    with pytest.raises(DetectorError, match="no normal training clips"):
        detector.fit(fan.select(split="test", label="anomaly"), progress=False)
    with pytest.raises(DetectorError, match="not fitted"):
        detector.score_waveform(np.zeros(16000, dtype=np.float32))
    trained = make_detector(cfg.detector, cfg.features)
    trained.fit(Manifest(root=fan.root, records=fan.select(split="train").records[:4]), progress=False)
    bad = np.zeros(16000, dtype=np.float32)
    bad[100] = np.nan
    with pytest.raises(DetectorError, match="non-finite"):
        trained.score_waveform(bad)
    with pytest.raises(DetectorError, match="cannot load discriminator weights"):
        trained._load_weights(tmp_path)


def test_patch_scores_are_pooled_over_time_with_the_chosen_r(trained, fan, tmp_path):
    detector, _ = trained
    choice = detector.fit_info["time_pooling"]
    assert choice["strategy"] == "proxy" and choice["table"] and choice["chosen"] == f"r={detector.time_r:g}"
    test = fan.select(split="test").records[:6]
    waves = [load_audio(r.path, 16000) for r in test]
    per_r = detector.candidate_scores(waves, test, [0.0, 1.0, detector.time_r])
    assert np.allclose(per_r[detector.time_r], detector.score_waveforms(waves))
    patches = [detector._patches(im) for im in detector._images(waves)]
    logits = [detector._logits(detector._pooled(p)) for p in patches]  # the patch scores by hand
    assert np.allclose(per_r[0.0], [v.max() for v in logits]) and np.allclose(per_r[1.0], [v.mean() for v in logits])
    loaded = load_detector(detector.save(tmp_path / "again"))
    assert loaded.time_r == detector.time_r and np.allclose(loaded.score_waveforms(waves), detector.score_waveforms(waves))
