import numpy as np
import pytest

from asdflow.detectors.pooling import describe_r, gwrp, gwrp_many, gwrp_weights
from asdflow.errors import DetectorError


def test_r_zero_is_max_and_r_one_is_mean():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(6, 50))
    assert np.allclose(gwrp(frames, 0.0), frames.max(axis=1))
    assert np.allclose(gwrp(frames, 1.0), frames.mean(axis=1))


def test_between_max_and_mean_and_monotone_in_r():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(4, 100))
    pooled = [gwrp(frames, r) for r in (0.0, 0.5, 0.9, 0.99, 1.0)]
    for higher, lower in zip(pooled, pooled[1:]):
        assert np.all(higher >= lower - 1e-12)  # more weight on the top frames never pools lower


def test_weights_sum_to_one_and_decay_geometrically():
    w = gwrp_weights(10, 0.5)
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose(w[1:] / w[:-1], 0.5)
    assert np.all(np.isfinite(gwrp_weights(100000, 0.01)))  # no underflow to NaN on long clips


def test_order_of_frames_does_not_matter_and_many_matches_one():
    rng = np.random.default_rng(2)
    frames = rng.normal(size=(3, 40))
    shuffled = frames[:, rng.permutation(40)]
    many = gwrp_many(frames, [0.0, 0.7, 1.0])
    for r, pooled in many.items():
        assert np.allclose(pooled, gwrp(shuffled, r))


def test_one_dimensional_frame_scores():
    scores = np.array([1.0, 5.0, 3.0])
    assert float(gwrp(scores, 0.0)) == 5.0
    assert float(gwrp(scores, 1.0)) == pytest.approx(3.0)
    assert float(gwrp(scores, 0.5)) == pytest.approx((5 + 0.5 * 3 + 0.25 * 1) / 1.75)


def test_r_out_of_range_is_refused():
    with pytest.raises(DetectorError, match="r must be in"):
        gwrp(np.ones(3), 1.5)


def test_describe():
    assert describe_r(0) == "max" and describe_r(1) == "mean" and "10 frames" in describe_r(0.9)
