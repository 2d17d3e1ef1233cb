import numpy as np
import pytest
from scipy import stats

from asdflow.data.audio import load_audio
from asdflow.detectors import load_detector, make_detector
from asdflow.detectors.baseline_ae.detector import BaselineAEDetector
from asdflow.detectors.threshold import gamma_threshold
from asdflow.errors import DetectorError
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest


@pytest.fixture(scope="module")
def baseline_config(tiny_config):
    """The suite's tiny config with this family chosen (the default family is twfr)."""
    cfg = tiny_config.model_copy(deep=True)
    cfg.detector.family = "baseline_ae"
    return cfg


@pytest.fixture(scope="module")
def fan(tiny_manifest):
    return tiny_manifest.select(machine_type="fan")


@pytest.fixture(scope="module")
def trained(fan, baseline_config, tmp_path_factory):
    cfg = baseline_config.model_copy(deep=True)
    cfg.detector.baseline_ae.epochs = 15
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    detector.fit(fan, progress=False)
    directory = detector.save(tmp_path_factory.mktemp("detector"))
    return detector, directory


def test_network_has_the_baseline_shape(baseline_config):
    detector = make_detector(baseline_config.detector, baseline_config.features)
    linears = [m for m in detector.model.modules() if m.__class__.__name__ == "Linear"]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (640, 128), (128, 128), (128, 128), (128, 128), (128, 8),
        (8, 128), (128, 128), (128, 128), (128, 128), (128, 640),
    ]


def test_separates_obvious_anomalies(trained, fan):
    detector, _ = trained
    test = fan.select(split="test")
    kinds = detector.score_manifest_kinds(test, progress=False)
    truth = ground_truth_from_manifest(test)
    for kind, scores in kinds.items():
        report = evaluate_scores(truth, scores)
        # severity-1 anomalies on 1-s clips: both scores must beat chance clearly
        assert report.overall.auc_source > 0.75, (kind, report.to_table())


def test_fit_info_and_threshold(trained):
    detector, _ = trained
    info = detector.fit_info
    assert info["machine_type"] == "fan"
    assert info["domains"] == {"source": 12, "target": 2}
    assert np.isfinite(info["final_train_loss"])
    assert detector.threshold is not None and np.isfinite(detector.threshold)
    assert set(detector.error_stats) == {"source", "target"}


def test_save_load_round_trip_scores_identically(trained, fan):
    detector, directory = trained
    loaded = load_detector(directory)
    assert isinstance(loaded, BaselineAEDetector)
    assert loaded.threshold == detector.threshold and loaded.machine_type == "fan"
    clip = load_audio(fan.select(split="test").records[0].path)
    assert loaded.score_kinds(clip) == pytest.approx(detector.score_kinds(clip), rel=1e-6)
    batch = loaded.score_waveforms([clip, clip])
    assert batch[0] == pytest.approx(loaded.score_waveform(clip), rel=1e-6)


def test_decide_uses_the_threshold(trained):
    detector, _ = trained
    t = detector.threshold
    assert list(detector.decide(np.array([t - 1, t + 1]))) == [False, True]


def test_same_seed_same_model(fan, baseline_config):
    a = make_detector(baseline_config.detector, baseline_config.features, seed=3)
    b = make_detector(baseline_config.detector, baseline_config.features, seed=3)
    a.fit(fan, progress=False)
    b.fit(fan, progress=False)
    assert a.threshold == pytest.approx(b.threshold)


def test_refuses_several_machine_types(tiny_manifest, baseline_config):
    detector = make_detector(baseline_config.detector, baseline_config.features)
    with pytest.raises(DetectorError, match="one machine type"):
        detector.fit(tiny_manifest, progress=False)


def test_refuses_too_few_clips(fan, baseline_config):
    one = fan.select(split="train")
    one.records = one.records[:1]
    with pytest.raises(DetectorError, match="at least 2"):
        make_detector(baseline_config.detector, baseline_config.features).fit(one, progress=False)


def test_too_short_clip_is_a_clear_error(trained):
    detector, _ = trained
    with pytest.raises(DetectorError, match="too short"):
        detector.score_waveform(np.zeros(1000, dtype=np.float32))


def test_load_from_empty_dir(tmp_path):
    with pytest.raises(DetectorError, match="detector.json"):
        load_detector(tmp_path)


def test_gamma_threshold_matches_the_distribution():
    rng = np.random.default_rng(0)
    samples = rng.gamma(shape=3.0, scale=2.0, size=20000)
    expected = stats.gamma.ppf(0.9, 3.0, scale=2.0)
    assert gamma_threshold(samples, 0.9) == pytest.approx(expected, rel=0.03)
    assert gamma_threshold(np.full(5, 4.0)) == 4.0
    with pytest.raises(DetectorError):
        gamma_threshold(np.array([1.0]))


def test_corrupt_weights_are_a_detector_error(trained, tmp_path):
    import shutil

    _, directory = trained
    copy = shutil.copytree(directory, tmp_path / "copy")
    (copy / "autoencoder.pt").write_bytes(b"not a torch file")
    with pytest.raises(DetectorError, match="cannot load"):
        load_detector(copy)


def test_gamma_threshold_falls_back_to_the_empirical_quantile_when_the_fit_fails():
    nearly_equal = 0.2 + 1e-9 * np.arange(14)  # scipy's gamma fit raises on this
    threshold = gamma_threshold(nearly_equal, 0.9)
    assert np.isfinite(threshold) and nearly_equal.min() <= threshold <= nearly_equal.max()


def test_gamma_threshold_fits_negative_scores_as_a_shifted_gamma():
    scores = np.random.default_rng(1).gamma(3.0, 2.0, 5000) - 10.0
    assert gamma_threshold(scores, 0.9) == pytest.approx(np.quantile(scores, 0.9), abs=0.3)


def test_gamma_threshold_on_a_spread_tracks_the_quantile():
    spread = np.random.default_rng(0).gamma(2.0, 1.0, 200)
    assert gamma_threshold(spread, 0.9) == pytest.approx(np.quantile(spread, 0.9), rel=0.2)
