"""Log-mel images and fixed-size patches for the simulation and the discriminator.

The images are the baseline's log-mel (asdflow.features.logmel, dB), one (n_mels, T)
array per clip. Networks see them normalised per machine type: per mel bin, the mean
and standard deviation over every frame of the normal training clips
(`SpectrogramNormalizer`, saved beside the model), so a quiet high band and a loud low
band weigh alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asdflow.config import FeatureConfig
from asdflow.errors import DataError


def fit_frames(image: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_mels, T) -> (n_mels, n_frames): the centred n_frames if longer, wrapped around if shorter."""
    total = image.shape[1]
    if total == n_frames:
        return image
    if total > n_frames:
        start = (total - n_frames) // 2
        return image[:, start : start + n_frames]
    return np.pad(image, ((0, 0), (0, n_frames - total)), mode="wrap")


def logmel_image(wav: np.ndarray, features: FeatureConfig, n_frames: int | None = None) -> np.ndarray:
    """Log-mel (dB) of a mono waveform as an (n_mels, T) float32 image; T = n_frames when given."""
    from asdflow.features.logmel import LogMelExtractor

    image = LogMelExtractor(features)(np.asarray(wav, dtype=np.float32))
    return fit_frames(image, n_frames) if n_frames else image


def crop_frames(image: np.ndarray, features: FeatureConfig, crop_seconds: float) -> np.ndarray:
    """Drop `crop_seconds` at each end (start/stop transients); never below one frame left."""
    n = int(round(crop_seconds * features.sample_rate / features.hop_length))
    if n <= 0 or image.shape[1] - 2 * n < 1:
        return image
    return image[:, n:-n]


def patch_starts(total: int, frames: int, hop: int) -> list[int]:
    """Start frames of the patches of a T-frame image; the last patch ends at the image's end."""
    if total <= frames:
        return [0]
    starts = list(range(0, total - frames + 1, hop))
    if starts[-1] != total - frames:
        starts.append(total - frames)
    return starts


def cut_patches(image: np.ndarray, frames: int, hop: int) -> np.ndarray:
    """(n_mels, T) -> (n_patches, n_mels, frames); a short image is wrapped up to one patch."""
    if image.shape[1] < frames:
        image = fit_frames(image, frames)
    return np.stack([image[:, s : s + frames] for s in patch_starts(image.shape[1], frames, hop)]).astype(np.float32)


class SpectrogramNormalizer:
    """Per-mel-bin standardisation fitted on normal training images of one machine type."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.mean = mean
        self.std = std

    def fit(self, images: list[np.ndarray]) -> "SpectrogramNormalizer":
        if not images:
            raise DataError("cannot fit spectrogram statistics on no images")
        frames = np.concatenate([np.asarray(im, dtype=np.float64) for im in images], axis=1)
        if not np.all(np.isfinite(frames)):
            raise DataError("non-finite log-mel values: cannot fit spectrogram statistics")
        self.mean = frames.mean(axis=1).astype(np.float32)
        self.std = (frames.std(axis=1) + 1e-3).astype(np.float32)  # a constant bin stays finite
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise DataError("spectrogram normaliser is not fitted")
        return self.mean, self.std

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Any (..., n_mels, T) array of dB values -> standardised per mel bin."""
        mean, std = self._check()
        return ((x - mean[:, None]) / std[:, None]).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        mean, std = self._check()
        return (x * std[:, None] + mean[:, None]).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        mean, std = self._check()
        return {"mel_mean": mean, "mel_std": std}

    @classmethod
    def from_state(cls, state) -> "SpectrogramNormalizer":
        return cls(np.asarray(state["mel_mean"], dtype=np.float32), np.asarray(state["mel_std"], dtype=np.float32))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, **self.state())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SpectrogramNormalizer":
        return cls.from_state(np.load(path))


def iter_logmels(records, features: FeatureConfig, chunk: int = 16, progress: bool = False, desc: str = "log-mel",
                 extractor=None):
    """(record, dB log-mel image) of each record's clip, in order, loaded and featurised `chunk` clips at a time.

    Unchecked and uncropped: each caller applies its own checks (and error wording)."""
    from asdflow.data.audio import load_audio
    from asdflow.features.logmel import LogMelExtractor
    from asdflow.progress import progress_bar

    extractor = extractor if extractor is not None else LogMelExtractor(features)
    for start in progress_bar(range(0, len(records), chunk), desc=desc, enabled=progress):
        batch = records[start : start + chunk]
        yield from zip(batch, extractor.batch([load_audio(r.path, features.sample_rate) for r in batch]))


def load_logmels(records, features: FeatureConfig, crop_seconds: float = 0.0, progress: bool = False) -> list[np.ndarray]:
    """dB log-mel image of each record's clip (cropped), in order; DataError names a non-finite clip."""
    images: list[np.ndarray] = []
    for record, image in iter_logmels(records, features, progress=progress):
        if not np.all(np.isfinite(image)):
            raise DataError(f"{record.path}: non-finite log-mel features")
        images.append(crop_frames(image, features, crop_seconds))
    return images
