"""Decoding what a client sends the detector server into a mono waveform at the detector's rate.

Pure functions, no web framework: the server (serving/service.py) calls them and maps
each error class to an HTTP status. Every accepted clip comes back with notes saying
what was done to it (a stereo clip mixed down, another rate resampled), so a client
sees exactly what was scored; every refused one raises an `AudioError` subclass whose
`reason` is a stable machine-readable code and whose message names the problem.

Checks, cheapest first, so a bad upload is refused before it is decoded:
size (too large) -> empty -> container header (not audio, truncated, corrupt) -> sample
rate (one of the common rates, so resampling costs little) -> duration and decoded size from
the header (too long, too short, too large once decoded) -> samples (NaN/inf) -> mono -> resample.
The mixing and resampling rules are those of `asdflow.data.audio` (mean of channels,
torchaudio's sinc resampler), so a clip is scored as it would be in training.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf

from asdflow.config import ServingConfig
from asdflow.data.audio import resample, to_mono
from asdflow.errors import AudioError

# The rates a client may send. A rate that shares few factors with the detector's makes the sinc
# resampler build a kernel of target x rate taps: 16001 Hz cost +4.1 GB and 17 s for a 1 s clip.
# These share large factors with 16 kHz (and 22.05/44.1 kHz with each other), so the cost stays bounded.
ACCEPTED_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
MAX_CHANNELS = 8
# Decoded float32 bytes per second of clip at most: 96 kHz x 2 channels (a mono 96 kHz clip, a stereo
# 48 kHz one); a highly compressed upload (an all-zero FLAC) is refused before it is decoded.
MAX_DECODED_BYTES_PER_SECOND = 96_000 * 2 * 4


# -- why a clip is refused ---------------------------------------------------------


class UploadError(AudioError):
    """A clip sent for scoring cannot be scored; `reason` is a stable code for clients."""

    reason: ClassVar[str] = "bad_audio"


class EmptyAudioError(UploadError):
    reason = "empty"


class NotAudioError(UploadError):
    reason = "not_audio"


class TruncatedAudioError(UploadError):
    reason = "truncated"


class CorruptAudioError(UploadError):
    reason = "corrupt"


class TooShortError(UploadError):
    reason = "too_short"


class TooLongError(UploadError):
    reason = "too_long"


class TooLargeError(UploadError):
    reason = "too_large"


class NonFiniteAudioError(UploadError):
    reason = "non_finite"


class BadSampleRateError(UploadError):
    reason = "bad_sample_rate"


class BadWaveformError(UploadError):
    reason = "bad_waveform"


# -- limits and results --------------------------------------------------------------


@dataclass(frozen=True)
class ClipLimits:
    """What the server accepts, and the rate the detector scores at."""

    target_sr: int = 16000
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    max_upload_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_config(cls, serving: ServingConfig, target_sr: int) -> "ClipLimits":
        return cls(
            target_sr=int(target_sr),
            min_seconds=serving.min_seconds,
            max_seconds=serving.max_seconds,
            max_upload_bytes=serving.max_upload_bytes,
        )


@dataclass
class DecodedClip:
    waveform: np.ndarray  # mono float32 at `sample_rate`
    sample_rate: int
    source_sample_rate: int
    channels: int
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.waveform) / self.sample_rate


# -- entry points ----------------------------------------------------------------------


def decode_upload(data: bytes, limits: ClipLimits, source: str = "upload") -> DecodedClip:
    """The bytes of an audio file (wav, flac, ogg...) -> a mono clip at `limits.target_sr`."""
    if len(data) > limits.max_upload_bytes:
        raise TooLargeError(
            f"{source}: {len(data)} bytes, above the limit of {limits.max_upload_bytes} bytes"
        )
    if len(data) == 0:
        raise EmptyAudioError(f"{source}: empty upload (0 bytes)")
    _check_container(data, source)
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError, TypeError) as err:
        raise _unreadable(data, source, err) from None
    frames, sample_rate, channels = int(info.frames), int(info.samplerate), int(info.channels)
    if frames <= 0:
        raise EmptyAudioError(f"{source}: the file holds no audio samples")
    _check_sample_rate(sample_rate, source, limits.target_sr)
    _check_duration(frames, sample_rate, limits, source)
    _check_decoded_size(frames, channels, limits, source)
    try:
        samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise _unreadable(data, source, err) from None
    if samples.shape[0] < frames:
        raise TruncatedAudioError(
            f"{source}: truncated audio: the header promises {frames} frames, the data holds {samples.shape[0]}"
        )
    return _finish(samples, sample_rate, limits, source)


def decode_file(path: str | Path, limits: ClipLimits, source: str | None = None) -> DecodedClip:
    """An uploaded file on disk; its size is checked before it is read."""
    path = Path(path)
    source = source or path.name
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise TooLargeError(f"{source}: {size} bytes, above the limit of {limits.max_upload_bytes} bytes")
    return decode_upload(path.read_bytes(), limits, source)


def decode_samples(
    samples: Sequence[float] | np.ndarray,
    sample_rate: int | None,
    limits: ClipLimits,
    source: str = "waveform",
) -> DecodedClip:
    """A float array (mono, or channels x samples) at `sample_rate` (default: the target rate)."""
    sample_rate = limits.target_sr if sample_rate is None else sample_rate
    _check_sample_rate(sample_rate, source, limits.target_sr)
    try:
        array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadWaveformError(
            f"{source}: not an array of numbers (give a list of floats, or one list per channel)"
        ) from None
    if array.ndim == 2:
        array = array.T  # channels x samples -> samples x channels, as soundfile reads
    elif array.ndim != 1:
        raise BadWaveformError(f"{source}: a waveform has 1 dimension (or 2: channels x samples), got {array.ndim}")
    if array.size == 0 or array.shape[0] == 0:
        raise EmptyAudioError(f"{source}: empty waveform (0 samples)")
    _check_duration(array.shape[0], sample_rate, limits, source)
    _check_decoded_size(array.shape[0], array.shape[1] if array.ndim == 2 else 1, limits, source)
    return _finish(array if array.ndim == 2 else array[:, None], sample_rate, limits, source)


# -- checks ------------------------------------------------------------------------------


def _check_sample_rate(sample_rate: int, source: str, target_sr: int | None = None) -> None:
    if int(sample_rate) not in ACCEPTED_SAMPLE_RATES and int(sample_rate) != target_sr:
        accepted = ", ".join(f"{r / 1000:g}" for r in ACCEPTED_SAMPLE_RATES)
        raise BadSampleRateError(f"{source}: sample rate {sample_rate} Hz is not accepted; send one of {accepted} kHz")


def _check_decoded_size(frames: int, channels: int, limits: ClipLimits, source: str) -> None:
    """What decoding will allocate, from the header, before any sample is decoded."""
    if channels > MAX_CHANNELS:
        raise BadWaveformError(f"{source}: {channels} channels, at most {MAX_CHANNELS} are accepted")
    decoded = frames * channels * 4
    cap = int(limits.max_seconds * MAX_DECODED_BYTES_PER_SECOND)
    if decoded > cap:
        raise TooLargeError(f"{source}: {frames} frames x {channels} channels decode to {decoded} bytes, "
                            f"above the limit of {cap} bytes")


def _check_duration(frames: int, sample_rate: int, limits: ClipLimits, source: str) -> None:
    seconds = frames / sample_rate
    if seconds > limits.max_seconds:
        raise TooLongError(f"{source}: {seconds:.3f} s long, above the limit of {limits.max_seconds:g} s")
    if seconds < limits.min_seconds:
        raise TooShortError(f"{source}: {seconds:.3f} s long, below the minimum of {limits.min_seconds:g} s")


def _finish(samples: np.ndarray, sample_rate: int, limits: ClipLimits, source: str) -> DecodedClip:
    """(frames, channels) float32 -> mono at the target rate, with notes."""
    if not np.isfinite(samples).all():
        bad = int(samples.size - np.isfinite(samples).sum())
        raise NonFiniteAudioError(f"{source}: {bad} sample(s) are NaN or infinite")
    notes: list[str] = []
    channels = int(samples.shape[1])
    mono = to_mono(samples) if channels > 1 else samples[:, 0]
    if channels > 1:
        kind = "stereo" if channels == 2 else f"{channels}-channel audio"
        notes.append(f"{kind} mixed down to mono (mean of {channels} channels)")
    if sample_rate != limits.target_sr:
        mono = resample(mono, sample_rate, limits.target_sr)
        notes.append(f"resampled from {sample_rate} Hz to {limits.target_sr} Hz")
    return DecodedClip(
        waveform=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=limits.target_sr,
        source_sample_rate=int(sample_rate),
        channels=channels,
        notes=notes,
    )


# Magic numbers of the containers libsndfile reads: a file that starts with one of them
# is audio that failed to decode (truncated or corrupt), not "not audio".
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"caff", b"riff", b"wvpk")


def _looks_like_audio(data: bytes) -> bool:
    return data[:4] in _MAGIC or data[:3] == b"ID3"


def _unreadable(data: bytes, source: str, err: Exception) -> UploadError:
    detail = _libsndfile_reason(err)
    if not _looks_like_audio(data):
        return NotAudioError(f"{source}: not an audio file libsndfile can read ({detail}); send wav or flac")
    if len(data) < 64 or "lost sync" in detail or "unexpected end" in detail.lower():
        return TruncatedAudioError(f"{source}: truncated audio file ({len(data)} bytes; {detail})")
    return CorruptAudioError(f"{source}: corrupt audio file ({detail})")


def _libsndfile_reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    # "Error opening <_io.BytesIO object at 0x...>: Format not recognised." -> the part after the object
    return text.split(">: ", 1)[-1].strip().rstrip(".") if ">: " in text else text


def _check_container(data: bytes, source: str) -> None:
    """RIFF/WAVE: the declared data chunk must fit in the bytes received.

    libsndfile reads a cut-off wav without complaint and returns fewer frames, so a clip
    cut short in transfer would be scored as if whole; the chunk sizes give it away.
    Sizes of 0 or 0xFFFFFFFF mean "unknown" (streamed writers) and are not judged.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):
                return
            available = len(data) - body
            if size > available:
                raise TruncatedAudioError(
                    f"{source}: truncated wav: the data chunk declares {size} bytes, {available} arrived"
                )
            return
        offset = body + size + (size & 1)  # chunks are padded to an even length
    # the chunks ran out before a data chunk: the file was cut off inside its header
    raise TruncatedAudioError(f"{source}: truncated wav: the file ends before its data chunk ({len(data)} bytes)")
