import numpy as np
import pytest

from asdflow.errors import ConfigError
from asdflow.simulation.masks import band_segment_mask, perlin_mask, sample_mask


@pytest.mark.parametrize("coverage", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(32, 64), (128, 313), (7, 5)])
def test_perlin_mask_hits_the_requested_coverage(shape, coverage):
    mask = perlin_mask(shape, coverage, np.random.default_rng(0))
    assert mask.shape == shape and mask.dtype == bool
    assert mask.sum() == max(1, round(coverage * mask.size))


def test_perlin_mask_is_blobby_not_salt_and_pepper():
    mask = perlin_mask((64, 128), 0.3, np.random.default_rng(1))
    # neighbours agree far more often than for independent cells (0.3^2 + 0.7^2 = 0.58)
    agree = (mask[:, 1:] == mask[:, :-1]).mean()
    assert agree > 0.85


@pytest.mark.parametrize("coverage", [0.05, 0.2, 0.5])
def test_band_segment_mask_is_one_band_times_segments(coverage):
    shape = (64, 200)
    for seed in range(5):
        mask = band_segment_mask(shape, coverage, np.random.default_rng(seed), n_segments=3)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = mask.any(axis=0)
        assert np.all(np.diff(rows) == 1)  # one contiguous band
        assert np.all(mask[rows][:, cols])  # band x segments: a full product
        n_runs = int(cols[0]) + int(np.sum(cols[1:] & ~cols[:-1]))
        assert 1 <= n_runs <= 3
        assert abs(mask.mean() - coverage) < 0.02 + 1.0 / shape[0]


def test_masks_are_deterministic_per_seed_and_differ_across_seeds():
    for kind in ("perlin", "band_segments"):
        a = sample_mask((32, 50), kind, 0.25, np.random.default_rng(3))
        b = sample_mask((32, 50), kind, 0.25, np.random.default_rng(3))
        c = sample_mask((32, 50), kind, 0.25, np.random.default_rng(4))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_bad_mask_arguments_are_config_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="coverage"):
        perlin_mask((8, 8), 0.0, rng)
    with pytest.raises(ConfigError, match="coverage"):
        band_segment_mask((8, 8), 1.5, rng)
    with pytest.raises(ConfigError, match="unknown mask kind"):
        sample_mask((8, 8), "stripes", 0.2, rng)
    with pytest.raises(ConfigError, match="shape"):
        perlin_mask((0, 8), 0.2, rng)
