"""Audio I/O rules of asdflow.data.audio: errors name the file, mono by the mean, 16 kHz."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdflow.data.audio import load_audio, md5_of, read_audio_info, write_audio
from asdflow.errors import AudioError


def _sine(freq: float, sr: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _error_of(call, path: Path) -> str:
    with pytest.raises(AudioError) as info:
        call(path)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


def test_corrupt_wav_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "section_00_source_train_normal_0000.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 8)  # a header cut short
    assert "not a readable audio file" in _error_of(load_audio, path)
    assert "not a readable audio file" in _error_of(read_audio_info, path)


def test_empty_file_and_zero_frame_wav(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "not a readable audio file" in _error_of(load_audio, empty)
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    assert read_audio_info(zero).frames == 0
    assert "empty audio" in _error_of(load_audio, zero)


def test_missing_file_says_so(tmp_path: Path) -> None:
    assert "no such file" in _error_of(load_audio, tmp_path / "absent.wav")
    assert "no such file" in _error_of(read_audio_info, tmp_path / "absent.wav")


def test_nan_samples_in_a_float_wav(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    wav = _sine(440, 16000, 0.1)
    wav[17] = np.nan
    sf.write(str(path), wav, 16000, subtype="FLOAT")
    assert "NaN" in _error_of(load_audio, path)
    wav[17] = np.inf
    sf.write(str(path), wav, 16000, subtype="FLOAT")
    assert "infinite" in _error_of(load_audio, path)


def test_stereo_is_mixed_to_mono_by_the_mean(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left = np.full(800, 0.5, dtype=np.float32)
    right = np.full(800, -0.25, dtype=np.float32)
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    info = read_audio_info(path)
    assert (info.channels, info.frames, info.sample_rate) == (2, 800, 16000)
    mono = load_audio(path)
    assert mono.shape == (800,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, 0.125, atol=1e-4)  # (0.5 - 0.25) / 2, not one channel


@pytest.mark.parametrize("frames", [11025, 1000])
def test_22050_is_resampled_to_16k_with_the_right_length_and_pitch(tmp_path: Path, frames: int) -> None:
    path = tmp_path / "noisex.wav"
    wav = _sine(1000.0, 22050, frames / 22050)
    sf.write(str(path), wav, 22050, subtype="PCM_16")
    out = load_audio(path, target_sr=16000)
    assert out.shape == (math.ceil(frames * 16000 / 22050),)
    assert out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * 16000 / out.size
    assert abs(peak_hz - 1000.0) < 16000 / out.size * 1.5  # still a 1 kHz tone
    assert 0.3 < np.max(np.abs(out[out.size // 4 : -out.size // 4])) < 0.6  # level kept
    assert load_audio(path, target_sr=None).shape == (frames,)  # None keeps the file's rate


def test_write_audio_is_pcm16_and_clips(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "deep" / "clip.wav", np.array([0.0, 1.5, -2.0, 0.25], dtype=np.float32), 16000)
    assert sf.info(str(path)).subtype == "PCM_16"
    back = load_audio(path)
    np.testing.assert_allclose(back, [0.0, 1.0, -1.0, 0.25], atol=1e-4)  # clipped, not wrapped


def test_md5_of_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert md5_of(path, chunk=4096) == hashlib.md5(payload).hexdigest()
