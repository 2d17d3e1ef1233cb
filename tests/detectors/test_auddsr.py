"""AudDSR behind the Detector interface: fit, score, save/load, seeds, bad input (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.detectors import available_families, load_detector, make_detector
from asdflow.detectors.auddsr.detector import AudDSRDetector
from asdflow.errors import DetectorError

TINY = dict(
    hidden_channels=8, embedding_dim=4, n_codes_top=8, n_codes_bottom=8, crop_frames=16,
    vq_steps=10, vq_batch_size=4, steps=10, batch_size=4, unet_channels=4,
)


def _config(tiny_config, **overrides):
    cfg = tiny_config.model_copy(deep=True)
    cfg.detector.family = "auddsr"
    cfg.detector.auddsr = cfg.detector.auddsr.model_copy(update={**TINY, **overrides})
    return cfg


@pytest.fixture(scope="module")
def fan(tiny_manifest):
    return tiny_manifest.select(machine_type="fan")


@pytest.fixture(scope="module")
def trained(fan, tiny_config, tmp_path_factory):
    cfg = _config(tiny_config)
    detector = make_detector(cfg.detector, cfg.features, seed=0)
    detector.fit(fan.select(split="train"), progress=False)
    return detector, detector.save(tmp_path_factory.mktemp("auddsr"))


@pytest.fixture(scope="module")
def test_clips(fan):
    records = fan.select(split="test").records[:4]
    return records, [load_audio(r.path) for r in records]


def test_registered_family(tiny_config):
    assert "auddsr" in available_families()
    cfg = _config(tiny_config)
    assert isinstance(make_detector(cfg.detector, cfg.features), AudDSRDetector)


def test_fit_info_and_threshold(trained):
    detector, _ = trained
    info = detector.fit_info
    assert info["machine_type"] == "fan" and info["n_clips"] == 14
    assert info["domains"] == {"source": 12, "target": 2}
    assert info["parameters"] == detector.parameter_count() > 0
    for key in ("final_vq_loss", "final_reconstruction_loss", "final_focal_loss", "seconds"):
        assert np.isfinite(info[key]), key
    assert detector.threshold is not None and np.isfinite(detector.threshold)
    assert not any(p.requires_grad for p in detector.vqvae.parameters())  # frozen after its stage


def test_scores_are_anomaly_map_means(trained, test_clips):
    detector, _ = trained
    _, waves = test_clips
    specs = detector.extractor.batch(waves)
    maps = detector.anomaly_maps(specs)
    assert maps[0].shape == (detector.features.n_mels // 4, -(-specs[0].shape[1] // 4))
    assert np.all((maps[0] >= 0) & (maps[0] <= 1))
    scores = detector.score_waveforms(waves)
    assert scores == pytest.approx([m.mean() for m in maps], rel=1e-5)
    variants = detector.score_variants(specs)
    assert variants["mean"] == pytest.approx(scores, rel=1e-6)
    assert np.all(variants["max"] >= variants["top1"]) and np.all(variants["top1"] >= variants["top10"])
    assert detector._clip_score(np.arange(100.0), "top_k_mean", 10) == pytest.approx(94.5)


def test_save_load_round_trip_scores_identically(trained, test_clips):
    detector, directory = trained
    records, waves = test_clips
    loaded = load_detector(directory)
    assert isinstance(loaded, AudDSRDetector)
    assert loaded.threshold == detector.threshold and loaded.machine_type == "fan"
    assert loaded.score_waveforms(waves) == pytest.approx(detector.score_waveforms(waves), rel=1e-6)
    # record or none (serving without a filename): the same score; one clip alone = in a batch
    assert loaded.score_waveform(waves[0], records[0]) == pytest.approx(loaded.score_waveform(waves[0]), rel=1e-6)
    assert loaded.score_waveform(waves[1]) == pytest.approx(loaded.score_waveforms(waves)[1], rel=1e-5)
    by_name = loaded.score(Manifest(root="", records=records), progress=False)
    assert by_name[records[2].name] == pytest.approx(loaded.score_waveform(waves[2]), rel=1e-5)
    assert list(loaded.decide(np.array([loaded.threshold - 1, loaded.threshold + 1]))) == [False, True]


def test_same_seed_same_model(trained, fan, tiny_config, test_clips):
    detector, _ = trained
    cfg = _config(tiny_config)
    again = make_detector(cfg.detector, cfg.features, seed=0)
    again.fit(fan.select(split="train"), progress=False)
    assert again.threshold == pytest.approx(detector.threshold, rel=1e-6)
    assert again.score_waveforms(test_clips[1]) == pytest.approx(detector.score_waveforms(test_clips[1]), rel=1e-6)


def test_median_clip_normalisation_fits_and_scores(fan, tiny_config, test_clips):
    cfg = _config(tiny_config, clip_normalisation="median", vq_steps=3, steps=3)
    detector = make_detector(cfg.detector, cfg.features, seed=1)
    detector.fit(fan.select(split="train"), progress=False)
    wave = test_clips[1][0]
    # a constant gain (a level offset in dB) changes nothing after the per-mel median is removed
    assert detector.score_waveform(wave * 2.0) == pytest.approx(detector.score_waveform(wave), rel=1e-3, abs=1e-5)


def test_too_few_clips_is_an_error(fan, tiny_config):
    cfg = _config(tiny_config)
    one = Manifest(root="", records=fan.select(split="train").records[:1])
    with pytest.raises(DetectorError, match="at least 2 normal training clips, got 1"):
        make_detector(cfg.detector, cfg.features).fit(one, progress=False)
    with pytest.raises(DetectorError, match="no normal training clips"):
        make_detector(cfg.detector, cfg.features).fit(Manifest(root="", records=[]), progress=False)


def test_nan_features_are_an_error(tiny_config, trained):
    cfg = _config(tiny_config)
    specs = [np.full((128, 32), -50.0, dtype=np.float32) for _ in range(3)]
    specs[1][5, 7] = np.nan
    with pytest.raises(DetectorError, match="training clip 1: non-finite log-mel"):
        make_detector(cfg.detector, cfg.features).fit_spectrograms(specs)
    detector, _ = trained
    wave = np.zeros(16000, dtype=np.float32)
    wave[100] = np.nan
    with pytest.raises(DetectorError, match="non-finite"):
        detector.score_waveform(wave)


def test_bad_sizes_are_config_errors(tiny_config):
    cfg = _config(tiny_config, crop_frames=24)
    with pytest.raises(DetectorError, match="crop_frames must be a positive multiple of 16"):
        make_detector(cfg.detector, cfg.features)
    cfg = _config(tiny_config)
    features = cfg.features.model_copy(update={"n_mels": 100})
    with pytest.raises(DetectorError, match="n_mels divisible by 16"):
        make_detector(cfg.detector, features)


def test_missing_weights_are_a_clear_error(trained, tmp_path):
    detector, directory = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "detector.json").write_text((directory / "detector.json").read_text())
    with pytest.raises(DetectorError, match="cannot load auddsr weights"):
        load_detector(broken)


def test_out_of_range_settings_are_named(tiny_config):
    cfg = _config(tiny_config, anomaly_probability=1.5, coverage_range=(0.5, 0.1))
    with pytest.raises(DetectorError, match="anomaly_probability must be in .*coverage_range must satisfy"):
        make_detector(cfg.detector, cfg.features)


def test_map_frames_are_pooled_over_time_with_the_chosen_r(trained, fan, tmp_path):
    detector, _ = trained
    choice = detector.fit_info["time_pooling"]
    assert choice["strategy"] == "proxy" and choice["table"] and choice["chosen"] == f"r={detector.time_r:g}"
    test = fan.select(split="test").records[:6]
    waves = [load_audio(r.path, 16000) for r in test]
    per_r = detector.candidate_scores(waves, test, [0.0, 1.0, detector.time_r])
    assert np.allclose(per_r[detector.time_r], detector.score_waveforms(waves))
    maps = detector.anomaly_maps(detector._checked(detector.extractor.batch(waves)))  # by hand
    assert np.allclose(per_r[1.0], [m.mean() for m in maps])  # r 1: the map's mean, as before
    assert np.allclose(per_r[0.0], [m.mean(axis=0).max() for m in maps])
    loaded = load_detector(detector.save(tmp_path / "again"))
    assert loaded.time_r == detector.time_r and np.allclose(loaded.score_waveforms(waves), detector.score_waveforms(waves))
