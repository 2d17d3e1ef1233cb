"""Log-mel spectrograms with torchaudio, frame stacking, batched extraction.

Baseline settings (DCASE): n_fft 1024, hop 512, 128 mels, power 2, then
10*log10(mel + offset). One MelSpectrogram module is built per extractor and
reused; clips of equal length are stacked into one tensor so the FFTs and the
mel projection run batched.
"""

from __future__ import annotations

import numpy as np
import torch

from asdflow.config import FeatureConfig
from asdflow.data.manifest import Manifest


class LogMelExtractor:
    def __init__(self, config: FeatureConfig):
        import torchaudio.transforms as T  # lazy: torchaudio import costs ~1 s

        self.config = config
        self.mel = T.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            power=config.power,
        )

    @torch.no_grad()
    def _logmel(self, batch: torch.Tensor) -> torch.Tensor:
        power = self.mel(batch)
        return 10.0 * torch.log10(power + self.config.log_offset)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """(samples,) -> (n_mels, n_frames) float32 log-mel in dB."""
        tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        return self._logmel(tensor).numpy()

    def batch(self, waveforms: list[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """Log-mels of several clips; equal-length neighbours run as one tensor batch."""
        out: list[np.ndarray] = []
        i = 0
        while i < len(waveforms):
            j = i + 1
            while j < len(waveforms) and j - i < batch_size and len(waveforms[j]) == len(waveforms[i]):
                j += 1
            chunk = torch.from_numpy(np.stack([np.asarray(w, dtype=np.float32) for w in waveforms[i:j]]))
            out.extend(self._logmel(chunk).numpy())
            i = j
        return out


def stack_frames(logmel: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_mels, T) -> (T - n_frames + 1, n_mels * n_frames): each row is n_frames consecutive frames.

    Row layout matches the DCASE baseline: frame-major, i.e. [frame t mels..., frame t+1 mels...].
    """
    n_mels, total = logmel.shape
    n_vectors = total - n_frames + 1
    if n_vectors < 1:
        return np.empty((0, n_mels * n_frames), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(logmel, n_frames, axis=1)  # (n_mels, n_vectors, n_frames)
    return np.ascontiguousarray(windows.transpose(1, 2, 0).reshape(n_vectors, n_frames * n_mels), dtype=np.float32)


def extract_manifest(
    manifest: Manifest, config: FeatureConfig, progress: bool = True, batch_size: int = 32
) -> list[np.ndarray]:
    """Stacked log-mel vectors for every clip of the manifest, in manifest order."""
    from asdflow.data.audio import load_audio
    from asdflow.progress import progress_bar

    extractor = LogMelExtractor(config)
    features: list[np.ndarray] = []
    records = manifest.records
    bar = progress_bar(range(0, len(records), batch_size), desc="log-mel", enabled=progress)
    for start in bar:
        waves = [load_audio(r.path, config.sample_rate) for r in records[start : start + batch_size]]
        features.extend(stack_frames(m, config.n_frames) for m in extractor.batch(waves, batch_size))
    return features
