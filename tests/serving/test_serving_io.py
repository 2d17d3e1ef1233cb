"""asdflow.serving_io: what the detector server accepts, what it does to a clip, and why it refuses one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from asdflow.config import ServingConfig
from asdflow.data.audio import load_audio, resample
from asdflow.errors import AudioError
from asdflow.serving_io import (
    BadSampleRateError,
    BadWaveformError,
    ClipLimits,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    TooLargeError,
    TooLongError,
    TooShortError,
    TruncatedAudioError,
    UploadError,
    decode_file,
    decode_samples,
    decode_upload,
)

SR = 16000
LIMITS = ClipLimits(target_sr=SR, min_seconds=1.0, max_seconds=5.0, max_upload_bytes=2 * 1024 * 1024)


def tone(seconds: float, sr: int = SR, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def wav_bytes(samples: np.ndarray, sr: int = SR, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_mono_clip_at_the_target_rate_is_unchanged():
    samples = tone(2.0)
    clip = decode_upload(wav_bytes(samples, subtype="FLOAT"), LIMITS)
    assert clip.notes == []
    assert clip.sample_rate == SR and clip.source_sample_rate == SR and clip.channels == 1
    assert clip.waveform.dtype == np.float32
    np.testing.assert_array_equal(clip.waveform, samples)
    assert clip.duration == pytest.approx(2.0)


def test_stereo_is_mixed_down_and_says_so():
    left, right = tone(2.0, freq=300), tone(2.0, freq=500, seed=1)
    clip = decode_upload(wav_bytes(np.stack([left, right], axis=1), subtype="FLOAT"), LIMITS)
    assert clip.channels == 2
    assert clip.notes == ["stereo mixed down to mono (mean of 2 channels)"]
    np.testing.assert_allclose(clip.waveform, (left + right) / 2, atol=1e-7)


def test_more_channels_are_named_in_the_note():
    samples = np.stack([tone(1.5, seed=k) for k in range(4)], axis=1)
    clip = decode_upload(wav_bytes(samples, subtype="FLOAT"), LIMITS)
    assert clip.notes == ["4-channel audio mixed down to mono (mean of 4 channels)"]


def test_other_rate_is_resampled_and_says_so():
    samples = tone(2.0, sr=44100)
    clip = decode_upload(wav_bytes(samples, sr=44100, subtype="FLOAT"), LIMITS)
    assert clip.notes == ["resampled from 44100 Hz to 16000 Hz"]
    assert clip.source_sample_rate == 44100 and clip.sample_rate == SR
    assert len(clip.waveform) == 2 * SR
    np.testing.assert_allclose(clip.waveform, resample(samples, 44100, SR), atol=1e-6)


def test_upload_is_decoded_exactly_as_training_reads_files(tmp_path):
    """Stereo at 22.05 kHz: the server's clip equals load_audio's (same mixing and resampling rules)."""
    samples = np.stack([tone(2.0, sr=22050, freq=200), tone(2.0, sr=22050, freq=900, seed=3)], axis=1)
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(samples, sr=22050))
    clip = decode_file(path, LIMITS)
    assert clip.notes == ["stereo mixed down to mono (mean of 2 channels)", "resampled from 22050 Hz to 16000 Hz"]
    np.testing.assert_allclose(clip.waveform, load_audio(path, SR), atol=1e-6)


def test_flac_is_accepted():
    samples = tone(1.5)
    clip = decode_upload(wav_bytes(samples, fmt="FLAC"), LIMITS)
    np.testing.assert_allclose(clip.waveform, samples, atol=1 / 2**15)


def test_wav_with_a_metadata_chunk_before_the_data_is_not_mistaken_for_truncated():
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", SR, 1, format="WAV", subtype="PCM_16") as handle:
        handle.title = "a fan, recorded on site"  # written as a LIST chunk
        handle.write(tone(1.5))
    data = buf.getvalue()
    assert b"LIST" in data
    assert len(decode_upload(data, LIMITS).waveform) == int(1.5 * SR)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"this is plain text, not a recording", NotAudioError, "not an audio file"),
        (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), NotAudioError, "not an audio file"),
        (b"%PDF-1.7 a document", NotAudioError, "not an audio file"),
        (b"", EmptyAudioError, "empty"),
    ],
    ids=["text", "random-bytes", "pdf", "zero-bytes"],
)
def test_refusals_of_what_is_not_audio(data, error, words):
    with pytest.raises(error, match=words):
        decode_upload(data, LIMITS)


def test_truncated_wav_is_refused_not_scored_short():
    whole = wav_bytes(tone(3.0))
    # libsndfile alone would read this as a 1.5 s clip without complaint
    with pytest.raises(TruncatedAudioError, match="data chunk declares 96000 bytes"):
        decode_upload(whole[: len(whole) // 2], LIMITS)


def test_wav_cut_inside_its_header_is_truncated():
    whole = wav_bytes(tone(3.0))
    for cut in (12, 30, 40):
        with pytest.raises(TruncatedAudioError):
            decode_upload(whole[:cut], LIMITS)


def test_truncated_flac_is_refused():
    whole = wav_bytes(tone(3.0), fmt="FLAC")
    with pytest.raises(UploadError) as caught:
        decode_upload(whole[: len(whole) // 2], LIMITS)
    assert caught.value.reason in ("truncated", "corrupt")


def test_wav_without_samples_is_empty():
    with pytest.raises(EmptyAudioError, match="no audio samples"):
        decode_upload(wav_bytes(np.zeros(0, dtype=np.float32)), LIMITS)


def test_too_short_and_too_long():
    with pytest.raises(TooShortError, match=r"0\.500 s long, below the minimum of 1 s"):
        decode_upload(wav_bytes(tone(0.5)), LIMITS)
    with pytest.raises(TooLongError, match=r"6\.000 s long, above the limit of 5 s"):
        decode_upload(wav_bytes(tone(6.0)), LIMITS)


def test_too_long_is_judged_from_the_header_at_any_rate():
    # 6 s at 8 kHz is as long as 6 s at 16 kHz, though half the bytes
    with pytest.raises(TooLongError):
        decode_upload(wav_bytes(tone(6.0, sr=8000), sr=8000), LIMITS)


def test_too_large_is_refused_before_decoding(tmp_path):
    small = ClipLimits(target_sr=SR, min_seconds=0.1, max_seconds=60, max_upload_bytes=10_000)
    data = wav_bytes(tone(1.0))
    with pytest.raises(TooLargeError, match="above the limit of 10000 bytes"):
        decode_upload(data, small)
    path = tmp_path / "big.wav"
    path.write_bytes(data)
    with pytest.raises(TooLargeError):
        decode_file(path, small)


def test_nan_and_inf_samples_are_refused():
    samples = tone(1.5)
    samples[10], samples[20] = np.nan, np.inf
    with pytest.raises(NonFiniteAudioError, match="2 sample"):
        decode_upload(wav_bytes(samples, subtype="FLOAT"), LIMITS)
    with pytest.raises(NonFiniteAudioError):
        decode_samples(samples.tolist(), SR, LIMITS)


def test_float_array_mono_and_channels():
    samples = tone(1.5)
    clip = decode_samples(samples.tolist(), None, LIMITS)  # no rate given: the detector's
    np.testing.assert_array_equal(clip.waveform, samples)
    assert clip.notes == []
    two = decode_samples([samples.tolist(), (samples * 0).tolist()], SR, LIMITS)  # channels x samples
    assert two.notes == ["stereo mixed down to mono (mean of 2 channels)"]
    np.testing.assert_allclose(two.waveform, samples / 2, atol=1e-7)
    resampled = decode_samples(tone(1.5, sr=8000).tolist(), 8000, LIMITS)
    assert resampled.notes == ["resampled from 8000 Hz to 16000 Hz"] and len(resampled.waveform) == int(1.5 * SR)


@pytest.mark.parametrize(
    ("samples", "rate", "error"),
    [
        ([], SR, EmptyAudioError),
        ([[0.1, 0.2], [0.3]], SR, BadWaveformError),  # ragged channels
        ([[[0.0] * 10]], SR, BadWaveformError),  # three dimensions
        (["a", "b"], SR, BadWaveformError),
        ([0.0] * SR, 0, BadSampleRateError),
        ([0.0] * SR, 10_000_000, BadSampleRateError),
        ([0.0] * 100, SR, TooShortError),
        ([0.0] * (6 * SR), SR, TooLongError),
    ],
    ids=["empty", "ragged", "3d", "strings", "rate-0", "rate-10MHz", "short", "long"],
)
def test_float_array_refusals(samples, rate, error):
    with pytest.raises(error):
        decode_samples(samples, rate, LIMITS)


def test_every_refusal_is_an_audio_error_with_its_own_reason():
    classes = UploadError.__subclasses__()
    reasons = [c.reason for c in classes]
    assert len(classes) >= 10
    assert len(set(reasons)) == len(reasons), reasons
    assert all(issubclass(c, AudioError) for c in classes)


def test_limits_come_from_the_serving_config():
    serving = ServingConfig(min_seconds=0.5, max_seconds=12.0, max_upload_bytes=1234)
    limits = ClipLimits.from_config(serving, 22050)
    assert (limits.target_sr, limits.min_seconds, limits.max_seconds, limits.max_upload_bytes) == (22050, 0.5, 12.0, 1234)


# -- hostile rates and sizes: refused before the costly work ---------------------------------------


@pytest.mark.parametrize("rate", [5, 16001, 30001, 192000, 384000])
def test_an_odd_or_extreme_sample_rate_is_refused_before_resampling(rate):
    """16001 Hz shares no factor with 16000: the sinc resampler would build a 16000 x 16001 kernel."""
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(BadSampleRateError, match="not accepted; send one of 8, 11.025, 16"):
        decode_samples(np.zeros(rate // 2 or 1, dtype=np.float32).tolist(), rate, LIMITS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_an_all_zero_flac_that_would_decode_to_too_much_is_refused_from_its_header():
    silent = np.zeros((int(LIMITS.max_seconds * 96000) - 1, 3), dtype=np.float32)  # 3 channels at 96 kHz
    buf = io.BytesIO()
    sf.write(buf, silent, 96000, format="FLAC")
    data = buf.getvalue()
    assert len(data) < LIMITS.max_upload_bytes  # small on the wire, large once decoded
    with pytest.raises(TooLargeError, match="decode to"):
        decode_upload(data, LIMITS)


def test_too_many_channels_are_refused():
    with pytest.raises(BadWaveformError, match="at most 8"):
        decode_samples(np.zeros((9, SR), dtype=np.float32).tolist(), SR, LIMITS)
