"""The Tango / AudioLDM mel front-end: what the VAE encodes and the HiFi-GAN vocoder inverts.

16 kHz, n_fft = win = 1024 (Hann), hop 160, centred (reflect-padded) STFT magnitude
(power 1), a 64-band Slaney mel filterbank from 0 to 8 kHz (librosa's, as
AudioLDM's TacotronSTFT), then `log(clamp(mel, 1e-5))`. Frames are padded or cut
to a multiple the VAE and UNet can halve (`n_frames`). The layout is
(batch, 1, frames, mels): time is the image height, mel bins its width.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG_FLOOR = 1e-5  # AudioLDM's dynamic range compression clamp


def mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2).astype(
        np.float32
    )


def normalize_wav(wav: np.ndarray) -> np.ndarray:
    """Tango's training normalisation: zero mean, peak 0.5 (level is restored after generation)."""
    wav = wav - wav.mean()
    return (wav / (np.abs(wav).max() + 1e-8) * 0.5).astype(np.float32)


class MelFrontEnd(torch.nn.Module):
    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 160, n_mels: int = 64,
                 basis: np.ndarray | None = None):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        basis = mel_basis(sample_rate, n_fft, n_mels) if basis is None else np.asarray(basis, dtype=np.float32)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def n_frames(self, duration: float, multiple: int) -> int:
        """STFT frames of `duration` seconds, rounded up to a multiple of `multiple` (10 s, 32 -> 1024)."""
        frames = int(round(duration * self.sample_rate / self.hop_length)) + 1
        return int(math.ceil(frames / multiple) * multiple)

    def forward(self, wav: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(batch, samples) float waveforms -> (batch, 1, n_frames, n_mels) log-mel."""
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.n_fft, self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs()
        mel = torch.log(torch.clamp(self.basis @ spec, min=LOG_FLOOR)).transpose(1, 2)  # (batch, frames, mels)
        if mel.shape[1] < n_frames:  # pad with silence (the log floor), as Tango pads the waveform with zeros
            pad = torch.full((mel.shape[0], n_frames - mel.shape[1], mel.shape[2]), math.log(LOG_FLOOR),
                             dtype=mel.dtype, device=mel.device)
            mel = torch.cat([mel, pad], dim=1)
        return mel[:, None, :n_frames, :]
