"""Classical single-channel baseline: a Wiener-style gain from a noise PSD measured on noise-only clips.

gain(f, t) = max(1 - alpha * N(f) / |X(f, t)|^2, floor), applied to the mixture's STFT
(power spectral subtraction written as a Wiener gain); N(f) is the mean power spectrum
of the supplemental noise clips. The floor limits musical noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError

EPS = 1e-12


@dataclass
class WienerDenoiser:
    noise_psd: np.ndarray  # [n_fft // 2 + 1]
    n_fft: int = 512
    hop: int = 128
    alpha: float = 1.0  # over-subtraction factor
    floor: float = 0.05  # lowest gain

    def _window(self) -> torch.Tensor:
        return torch.hann_window(self.n_fft, dtype=torch.float64)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(wav, dtype=np.float64))
        spec = torch.stft(x, self.n_fft, self.hop, window=self._window(), return_complex=True, center=True)
        power = spec.abs() ** 2
        noise = torch.from_numpy(self.noise_psd).unsqueeze(1)
        gain = torch.clamp(1 - self.alpha * noise / (power + EPS), min=self.floor)
        out = torch.istft(spec * gain, self.n_fft, self.hop, window=self._window(), center=True, length=len(wav))
        return out.numpy().astype(np.float32)


def noise_psd(noise_clips: list[np.ndarray], n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Mean power spectrum over every frame of the noise-only clips."""
    window = torch.hann_window(n_fft, dtype=torch.float64)
    frames = [
        torch.stft(torch.from_numpy(np.asarray(c, dtype=np.float64)), n_fft, hop, window=window,
                   return_complex=True, center=True).abs() ** 2
        for c in noise_clips if len(c) >= n_fft
    ]
    if not frames:
        raise DataError(f"no noise clip of at least {n_fft} samples to estimate the noise spectrum from")
    return torch.cat(frames, dim=1).mean(dim=1).numpy()


def fit_wiener(noise_clips: list[np.ndarray], n_fft: int = 512, hop: int = 128, alpha: float = 1.0, floor: float = 0.05) -> WienerDenoiser:
    return WienerDenoiser(noise_psd(noise_clips, n_fft, hop), n_fft, hop, alpha, floor)


def wiener_from_manifest(manifest: Manifest, machine_type: str, sample_rate: int = 16000, **kwargs) -> WienerDenoiser:
    """The baseline for one machine type, its noise PSD from that machine type's supplemental noise clips."""
    paths = [r.path for r in manifest.records
             if r.machine_type == machine_type and r.split == "supplemental" and r.supplemental_kind == "noise"]
    if not paths:
        raise DataError(f"machine type {machine_type!r}: no noise clips in {manifest.root}/{machine_type}/supplemental")
    return fit_wiener([load_audio(p, target_sr=sample_rate) for p in paths], **kwargs)
