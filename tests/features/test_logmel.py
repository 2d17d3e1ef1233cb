"""Log-mel extraction: shapes, frame stacking, batching, silence, agreement with librosa."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asdflow.config import FeatureConfig
from asdflow.data.audio import load_audio, write_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.features.logmel import LogMelExtractor, extract_manifest, stack_frames

SR = 16000
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
VALVE_TEST = REAL / "dcase2023t2_dev" / "valve" / "test"
# max |asdflow - librosa| in dB with matched settings; measured 0.0018 dB on 64 real valve clips
LIBROSA_TOLERANCE_DB = 0.01


@pytest.fixture(scope="module")
def extractor() -> LogMelExtractor:
    return LogMelExtractor(FeatureConfig())


def noise(samples: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


@pytest.mark.parametrize("samples", [SR, 10 * SR, 5000])
def test_shape_and_dtype(extractor, samples):
    logmel = extractor(noise(samples))
    # centred frames: 1 + samples // hop
    assert logmel.shape == (128, 1 + samples // 512)
    assert logmel.dtype == np.float32
    assert np.all(np.isfinite(logmel))


def test_settings_follow_the_config():
    config = FeatureConfig(n_mels=64, hop_length=256)
    logmel = LogMelExtractor(config)(noise(SR))
    assert logmel.shape == (64, 1 + SR // 256)


def test_stack_frames_on_a_known_array():
    logmel = np.array([[0, 1, 2, 3], [10, 11, 12, 13]], dtype=np.float32)  # 2 mels, 4 frames
    stacked = stack_frames(logmel, 3)
    # frame-major rows, as the DCASE baseline: [frame t mels, frame t+1 mels, frame t+2 mels]
    expected = np.array([[0, 10, 1, 11, 2, 12], [1, 11, 2, 12, 3, 13]], dtype=np.float32)
    np.testing.assert_array_equal(stacked, expected)
    assert stacked.dtype == np.float32 and stacked.flags["C_CONTIGUOUS"]


def test_stack_frames_edge_cases(extractor):
    logmel = extractor(noise(SR))
    stacked = stack_frames(logmel, 5)
    assert stacked.shape == (logmel.shape[1] - 4, 128 * 5)
    np.testing.assert_array_equal(stacked[7, 128 * 2 : 128 * 3], logmel[:, 9])  # row t, slot 2 = frame t + 2
    np.testing.assert_array_equal(stack_frames(logmel, 1), logmel.T)
    assert stack_frames(logmel[:, :4], 5).shape == (0, 640)  # too few frames: no vector, no error


def test_batch_equals_single(extractor):
    # equal-length neighbours run as one tensor; the odd one out on its own
    waves = [noise(2 * SR, seed=s) for s in range(3)] + [noise(SR + 123, seed=9)] + [noise(2 * SR, seed=5)]
    batched = extractor.batch(waves)
    assert len(batched) == len(waves)
    for wav, got in zip(waves, batched):
        np.testing.assert_allclose(got, extractor(wav), atol=1e-4)


def test_silence_is_finite(extractor):
    logmel = extractor(np.zeros(SR, dtype=np.float32))
    assert np.all(np.isfinite(logmel))
    np.testing.assert_allclose(logmel, 10 * np.log10(FeatureConfig().log_offset), atol=1e-4)


def _librosa_logmel(wav: np.ndarray, config: FeatureConfig) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    # torchaudio's MelSpectrogram defaults: HTK mel scale, no filter normalisation, centred, reflect padding
    power = librosa.feature.melspectrogram(
        y=wav,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        power=config.power,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
    )
    return 10.0 * np.log10(power + config.log_offset)


def test_agrees_with_librosa_on_noise(extractor):
    wav = noise(3 * SR, seed=4)
    ours, theirs = extractor(wav), _librosa_logmel(wav, FeatureConfig())
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < LIBROSA_TOLERANCE_DB


def test_agrees_with_librosa_on_a_real_clip(extractor):
    if not VALVE_TEST.is_dir():
        pytest.skip(f"real data {VALVE_TEST} absent")
    wav = load_audio(sorted(VALVE_TEST.glob("*.wav"))[0])
    ours, theirs = extractor(wav), _librosa_logmel(wav, FeatureConfig())
    assert ours.shape == theirs.shape == (128, 313)
    assert np.abs(ours - theirs).max() < LIBROSA_TOLERANCE_DB


def test_extract_manifest_returns_stacked_vectors_in_order(tmp_path, extractor):
    waves = [noise(SR, seed=1), noise(SR // 2, seed=2), noise(SR, seed=3)]
    records = []
    for i, wav in enumerate(waves):
        path = write_audio(tmp_path / "fan" / "train" / f"clip_{i}.wav", wav, SR)
        records.append(
            ClipRecord(path=str(path), name=path.name, machine_type="fan", section="00", split="train")
        )
    config = FeatureConfig()
    features = extract_manifest(Manifest(root=str(tmp_path), records=records), config, progress=False)
    assert len(features) == 3
    for record, got in zip(records, features):
        expected = stack_frames(extractor(load_audio(record.path)), config.n_frames)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)
    assert features[1].shape[0] < features[0].shape[0]
