"""Audio I/O through soundfile (torchaudio's load/save need FFmpeg; ARCHITECTURE.md).

Rules, applied the same everywhere (training, scoring, serving):
- multi-channel audio is mixed down to mono by averaging the channels
  (DCASE clips are mono; averaging keeps the level of correlated channels and
  never picks one microphone arbitrarily);
- audio at another sample rate is resampled to the target rate with
  torchaudio's band-limited sinc resampler (pure Python, no compiled extension);
- an unreadable, empty or non-finite file raises AudioError naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asdflow.errors import AudioError


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def read_audio_info(path: str | Path) -> AudioInfo:
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise AudioError(f"{path}: not a readable audio file ({_reason(err, path)})") from None
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,), averaging channels."""
    if waveform.ndim == 1:
        return waveform
    return waveform.mean(axis=1)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return waveform
    import torch
    import torchaudio.functional as AF

    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    return AF.resample(tensor, orig_freq=orig_sr, new_freq=target_sr).numpy()


def decode_audio(data: np.ndarray, sample_rate: int, target_sr: int | None, source: str) -> np.ndarray:
    """Validate decoded samples, mix to mono and resample: shared by file and upload paths."""
    if data.size == 0:
        raise AudioError(f"{source}: empty audio (0 samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{source}: contains NaN or infinite samples")
    mono = to_mono(np.asarray(data, dtype=np.float32))
    if target_sr is not None:
        mono = resample(mono, sample_rate, target_sr)
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_audio(path: str | Path, target_sr: int | None = 16000) -> np.ndarray:
    """Mono float32 waveform in [-1, 1] at `target_sr` (None keeps the file's rate)."""
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise AudioError(f"{path}: not a readable audio file ({_reason(err, path)})") from None
    return decode_audio(data, sample_rate, target_sr, str(path))


def write_audio(path: str | Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM wav, as the DCASE sets are distributed; clips at +-1 rather than wrapping."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(waveform, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return path


def md5_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _reason(err: Exception, path: str | Path) -> str:
    if not Path(path).exists():
        return "no such file"  # libsndfile only says "System error."
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
