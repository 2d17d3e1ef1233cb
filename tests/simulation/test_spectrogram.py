import numpy as np
import pytest

from asdflow.config import FeatureConfig
from asdflow.errors import DataError
from asdflow.simulation.spectrogram import (
    SpectrogramNormalizer, crop_frames, cut_patches, fit_frames, logmel_image, patch_starts,
)


def test_logmel_image_shape_and_fixed_frames():
    features = FeatureConfig(n_mels=32)
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    image = logmel_image(wav, features)
    assert image.shape == (32, 16000 // 512 + 1)
    assert logmel_image(wav, features, n_frames=20).shape == (32, 20)
    assert logmel_image(wav, features, n_frames=50).shape == (32, 50)  # wrapped up


def test_patches_cover_the_whole_image_with_the_last_patch_flush():
    assert patch_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert patch_starts(20, 32, 16) == [0]
    image = np.arange(4 * 100, dtype=np.float32).reshape(4, 100)
    patches = cut_patches(image, 32, 16)
    assert patches.shape == (6, 4, 32)
    assert np.array_equal(patches[-1], image[:, -32:])
    assert cut_patches(image[:, :10], 32, 16).shape == (1, 4, 32)
    assert fit_frames(image, 10).shape == (4, 10)


def test_crop_drops_both_ends_but_never_everything():
    features = FeatureConfig()
    image = np.zeros((8, 313))
    one_second = round(16000 / 512)
    assert crop_frames(image, features, 1.0).shape[1] == 313 - 2 * one_second
    assert crop_frames(image, features, 100.0).shape[1] == 313


def test_normalizer_round_trip_and_per_bin_statistics(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.normal(loc=np.arange(6)[:, None] * 10, scale=2.0, size=(6, 50)) for _ in range(3)]
    norm = SpectrogramNormalizer().fit(images)
    z = norm.normalize(np.concatenate(images, axis=1))
    assert np.allclose(z.mean(axis=1), 0, atol=1e-4) and np.allclose(z.std(axis=1), 1, atol=1e-2)
    loaded = SpectrogramNormalizer.load(norm.save(tmp_path / "n.npz"))
    assert np.allclose(loaded.denormalize(loaded.normalize(images[0])), images[0], atol=1e-3)
    with pytest.raises(DataError, match="non-finite"):
        SpectrogramNormalizer().fit([np.full((2, 3), np.nan)])
    with pytest.raises(DataError, match="not fitted"):
        SpectrogramNormalizer().normalize(images[0])


def test_iter_logmels_keeps_order_across_chunks_and_load_logmels_crops(tiny_manifest):
    from asdflow.data.audio import load_audio
    from asdflow.features.logmel import LogMelExtractor
    from asdflow.simulation.spectrogram import iter_logmels, load_logmels

    features = FeatureConfig()
    records = tiny_manifest.select(machine_type="fan", split="train").records[:5]
    pairs = list(iter_logmels(records, features, chunk=2))  # chunks of 2, 2, 1
    assert [r.path for r, _ in pairs] == [r.path for r in records]
    expected = LogMelExtractor(features)(load_audio(records[4].path, features.sample_rate))
    np.testing.assert_allclose(pairs[4][1], expected, rtol=1e-5, atol=1e-4)
    n = int(round(0.1 * features.sample_rate / features.hop_length))
    assert n >= 1
    cropped = load_logmels(records, features, crop_seconds=0.1)
    assert [im.shape[1] for im in cropped] == [im.shape[1] - 2 * n for _, im in pairs]
