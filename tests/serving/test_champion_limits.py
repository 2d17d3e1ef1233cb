"""The server's minimum clip length is never below what the detector's log-mel front end can score."""

from __future__ import annotations

import numpy as np
import pytest

from asdflow.config import FeatureConfig, ServingConfig, load_config
from asdflow.detectors.base import make_detector
from asdflow.errors import AudioError
from asdflow.features.logmel import LogMelExtractor, stack_frames
from asdflow.serving_io import TooShortError, decode_samples

from serving.champions import clip_limits, detector_min_seconds


def test_the_floor_is_the_shortest_clip_the_front_end_scores():
    features = FeatureConfig()
    floor = detector_min_seconds(features)
    assert floor == pytest.approx(0.161)  # (4 * 512 + 513) / 16000 = 0.16006 s, rounded up to the ms
    extractor = LogMelExtractor(features)
    wave = np.random.default_rng(0).standard_normal(int(round(floor * features.sample_rate))).astype(np.float32)
    assert len(stack_frames(extractor(wave), features.n_frames)) >= 1
    with pytest.raises(AudioError, match="too short for log-mel"):
        extractor(wave[: int(0.02 * features.sample_rate)])


def test_a_lowered_min_seconds_is_raised_to_the_detectors_floor():
    config = load_config(profile="tiny")
    detector = make_detector(config.detector, config.features)
    low = clip_limits(ServingConfig(min_seconds=0.02), detector)
    assert low.min_seconds == detector_min_seconds(config.features)
    sr = config.features.sample_rate
    # a 0.02 s clip (the log-mel would raise AudioError on it) is refused up front as too short
    with pytest.raises(TooShortError, match="below the minimum of 0.161 s"):
        decode_samples(np.zeros(int(0.02 * sr), np.float32).tolist(), sr, low)
    high = clip_limits(ServingConfig(min_seconds=1.5), detector)
    assert high.min_seconds == 1.5 and high.max_seconds == ServingConfig().max_seconds
