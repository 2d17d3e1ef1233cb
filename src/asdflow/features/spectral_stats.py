"""Six clip-level spectral statistics, the raw material of the statistics prompts.

`spectral_statistics` turns one waveform into six numbers; `manifest_statistics`
does it for every clip of a manifest; `normalise_statistics` places each value in
a quantile bin of its machine type ("very low" .. "very high"), which the
prompt stage turns into text.

Definitions (frames: `n_fft` samples every `hop_length`, centred: the signal is
reflect-padded by n_fft // 2 on both sides, zero-padded when too short to
reflect; magnitude spectrum S of the Hann-windowed frame; each clip value is
the mean over frames unless stated):

- flux: L2 norm of the positive part of S_t - S_{t-1}, where each frame's S is
  first scaled to unit L2 norm, so flux measures spectral change independently
  of level and lies in [0, 1]. Mean over the T - 1 frame pairs (0 with one frame).
- centroid: sum(f * S) / sum(S), in Hz.
- flatness: geometric / arithmetic mean of the power S**2, each bin floored at
  1e-10 (librosa's `amin`), in [0, 1].
- kurtosis: excess kurtosis of the waveform samples (scipy.stats.kurtosis,
  Fisher, biased), over the whole clip, not per frame.
- rms: sqrt(mean(x**2)) of each (unwindowed) frame.
- zcr: sign changes between neighbouring samples of a frame / n_fft, per
  sample; a sample of magnitude <= 1e-10 counts as zero and zero as positive
  (librosa's `zero_crossings` rule).

Silence never yields NaN. Frame-level conventions follow librosa: a silent frame
has centroid 0 Hz and flatness 1 (every bin sits at the floor, so the spectrum
is perfectly flat), and contributes 0 to flux. Kurtosis of a constant signal,
undefined (0/0), is 0: no impulsiveness. An all-zero clip therefore gives
flux 0, centroid 0, flatness 1, kurtosis 0, rms 0, zcr 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats

from asdflow.data.audio import load_audio
from asdflow.data.manifest import Manifest
from asdflow.errors import AudioError, ConfigError, DataError
from asdflow.progress import progress_bar

log = logging.getLogger(__name__)

STAT_NAMES: tuple[str, ...] = ("flux", "centroid", "flatness", "kurtosis", "rms", "zcr")

POWER_FLOOR = 1e-10  # librosa.feature.spectral_flatness amin
ZERO_THRESHOLD = 1e-10  # librosa.zero_crossings threshold

# Ordered labels per number of bins, lowest first.
LEVEL_LABELS: dict[int, tuple[str, ...]] = {
    2: ("low", "high"),
    3: ("low", "medium", "high"),
    4: ("very low", "low", "high", "very high"),
    5: ("very low", "low", "medium", "high", "very high"),
    6: ("extremely low", "very low", "low", "high", "very high", "extremely high"),
    7: ("extremely low", "very low", "low", "medium", "high", "very high", "extremely high"),
}


def frame_signal(waveform: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Centred frames (n_frames, n_fft) as a strided view of the padded signal."""
    pad = n_fft // 2
    mode = "reflect" if waveform.size > pad else "constant"
    padded = np.pad(waveform, (pad, pad), mode=mode)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]


def spectral_statistics(
    waveform: np.ndarray, sample_rate: int, n_fft: int = 1024, hop_length: int = 512
) -> dict[str, float]:
    """The six clip-level statistics of a mono waveform (see the module docstring)."""
    wav = np.asarray(waveform, dtype=np.float64)
    if wav.ndim != 1:
        raise AudioError(f"spectral_statistics: expected a mono 1-D waveform, got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError("spectral_statistics: empty waveform (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise AudioError("spectral_statistics: waveform contains NaN or infinite samples")

    frames = frame_signal(wav, n_fft, hop_length)  # (T, n_fft)
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as torch.hann_window and librosa
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))  # (T, F)
    power = magnitude**2
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)

    mag_sum = magnitude.sum(axis=1)
    safe_sum = np.where(mag_sum > 0, mag_sum, 1.0)
    centroid = np.where(mag_sum > 0, magnitude @ freqs / safe_sum, 0.0)

    floored = np.maximum(power, POWER_FLOOR)
    flatness = np.exp(np.log(floored).mean(axis=1)) / floored.mean(axis=1)

    norms = np.linalg.norm(magnitude, axis=1, keepdims=True)
    unit = magnitude / np.where(norms > 0, norms, 1.0)  # silent frames stay all-zero
    flux = np.linalg.norm(np.maximum(np.diff(unit, axis=0), 0.0), axis=1) if len(unit) > 1 else np.zeros(1)

    rms = np.sqrt((frames**2).mean(axis=1))

    positive = np.where(np.abs(frames) <= ZERO_THRESHOLD, 0.0, frames) >= 0
    zcr = (positive[:, 1:] != positive[:, :-1]).sum(axis=1) / n_fft

    # A constant signal has variance 0 (kurtosis 0/0): checked first, as scipy would warn and return NaN.
    constant = wav.size < 2 or np.ptp(wav) == 0
    kurtosis = 0.0 if constant else float(scipy.stats.kurtosis(wav, fisher=True, bias=True))

    return {
        "flux": float(flux.mean()),
        "centroid": float(centroid.mean()),
        "flatness": float(np.clip(flatness, 0.0, 1.0).mean()),
        "kurtosis": kurtosis,
        "rms": float(rms.mean()),
        "zcr": float(zcr.mean()),
    }


def manifest_statistics(
    manifest: Manifest,
    sample_rate: int = 16000,
    progress: bool = True,
    n_fft: int = 1024,
    hop_length: int = 512,
) -> pd.DataFrame:
    """One row per readable clip: path, name, machine_type and the six statistics.

    A clip that cannot be read is left out of the rows and listed, with the
    reason, in `frame.attrs["problems"]` (and logged), so one bad file loses
    no other result.
    """
    rows: list[dict[str, object]] = []
    problems: list[dict[str, str]] = []
    for record in progress_bar(manifest.records, desc="spectral statistics", enabled=progress):
        try:
            waveform = load_audio(record.path, target_sr=sample_rate)
            stats = spectral_statistics(waveform, sample_rate, n_fft=n_fft, hop_length=hop_length)
        except AudioError as err:
            log.warning("spectral statistics skipped: %s", err)
            problems.append({"path": record.path, "reason": str(err)})
            continue
        rows.append({"path": record.path, "name": record.name, "machine_type": record.machine_type, **stats})
    frame = pd.DataFrame(rows, columns=["path", "name", "machine_type", *STAT_NAMES])
    frame.attrs["problems"] = problems
    return frame


def normalise_statistics(
    frame: pd.DataFrame,
    by: str | None = "machine_type",
    n_bins: int = 5,
    columns: Sequence[str] = STAT_NAMES,
) -> pd.DataFrame:
    """Place each statistic in a quantile bin within its group (machine type).

    Returns a copy of `frame` with, per statistic, `<stat>_quantile` (mid-rank
    percentile within the group, in (0, 1); ties share a value) and
    `<stat>_level` (one of LEVEL_LABELS[n_bins], e.g. "very low".."very high").
    Mid-ranks keep small groups and ties sensible: a lone clip, or a group of
    identical values, sits at quantile 0.5 (the middle bin, "medium" for an odd
    n_bins) rather than at an extreme.
    """
    if n_bins not in LEVEL_LABELS:
        raise ConfigError(f"normalise_statistics: n_bins must be one of {sorted(LEVEL_LABELS)}, got {n_bins}")
    needed = [c for c in [*columns, *([by] if by else [])] if c not in frame.columns]
    if needed:
        raise DataError(f"normalise_statistics: the frame lacks the column(s) {needed}")
    labels = np.array(LEVEL_LABELS[n_bins], dtype=object)
    out = frame.copy()
    if out.empty:
        for column in columns:
            out[f"{column}_quantile"] = pd.Series(dtype=float)
            out[f"{column}_level"] = pd.Series(dtype=object)
        return out
    groups = out.groupby(by, sort=False) if by else None
    for column in columns:
        values = out[column].astype(float)
        if values.isna().any():
            raise DataError(f"normalise_statistics: column {column!r} has missing values")
        ranks = groups[column].rank(method="average") if groups is not None else values.rank(method="average")
        sizes = groups[column].transform("size") if groups is not None else pd.Series(len(values), index=out.index)
        quantile = (ranks - 0.5) / sizes
        bins = np.minimum((quantile.to_numpy() * n_bins).astype(int), n_bins - 1)
        out[f"{column}_quantile"] = quantile.to_numpy()
        out[f"{column}_level"] = labels[bins]
    return out
