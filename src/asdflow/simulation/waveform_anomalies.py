"""Anomalies simulated on real waveforms: the proxy faults that label-free selection scores against.

A plant has no labelled anomalies, so settings are chosen on held-out normal clips
against these. Each kind imitates a family of real faults, and together they pull
in both directions of the time-pooling question (short events favour near-max
pooling, steady changes near-mean pooling), so the proxy does not decide by its
own bias:

- `impacts`: a train of short decaying impacts at a defect rate (a bearing spall, a loose part);
- `resonance`: a new narrow resonance excited by the machine's own sound (a squeal, a whine);
- `tilt`: the spectrum tilted around 1 kHz (wear, a clogged intake, a changed load);
- `modulation`: slow amplitude modulation of the whole clip (imbalance, misalignment);
- `band_segments`: the clip's own cells in one band x a few time segments amplified or damped
  (the AudDSR band x time mask);
- `perlin`: the same under a thresholded Perlin mask (the AudDSR blob mask).

Faults change the machine where it sounds. So impacts, resonance and the two mask
kinds are gated to the clip's active frames (within 10 dB of its loudest frame):
throughout a steady machine's clip, only inside an impulsive machine's events.
That gating is what lets the proxy tell the two apart: measured on generated
impulsive and stationary machines and on real valve (benchmarks/pooling_selection.py),
ungated tones, noise bursts and clicks voted for the same pooling on every machine.
`modulation` is not in the selection's default kinds for the same reason: it
changes frame-level variance only, so it favours max pooling everywhere.

The mask kinds reuse `asdflow.simulation.masks` on an STFT grid. The additive
kinds are scaled to `level_db` relative to the clip's RMS; the multiplicative
ones (tilt, modulation, masks) map the same level to their strength. Everything
draws from the `rng` given: a seed reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import signal

from asdflow.errors import ConfigError
from asdflow.simulation.masks import band_segment_mask, perlin_mask

WAVEFORM_ANOMALY_KINDS: tuple[str, ...] = ("impacts", "resonance", "tilt", "modulation", "band_segments", "perlin")
STFT_SIZE = 512
ACTIVE_GATE_DB = 10.0  # frames within this of the loudest frame count as the machine sounding


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _scaled(difference: np.ndarray, reference: np.ndarray, level_db: float) -> np.ndarray:
    """difference scaled to `level_db` relative to `reference` (both over the same samples)."""
    return difference * (_rms(reference) / _rms(difference) * 10.0 ** (level_db / 20.0))


def impacts(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """A train of short decaying impacts at a defect rate (a bearing spall, a loose part), sounding only
    while the machine does: throughout a steady machine's clip, within an impulsive machine's events."""
    length = int(0.01 * sr)  # 10 ms of ringing per impact
    decay = np.exp(-np.arange(length) / (0.002 * sr))
    rate = rng.uniform(5.0, 40.0)  # impacts per second
    f0 = rng.uniform(1000, 0.4 * sr)
    burst = (0.5 * rng.standard_normal(length) + np.sin(2 * np.pi * f0 * np.arange(length) / sr)) * decay
    train = np.zeros(len(x) + length)
    for start in np.arange(rng.uniform(0, 1.0 / rate), len(x) / sr, 1.0 / rate):
        i = int(start * sr)
        train[i : i + length] += burst
    spec = _stft(x, sr)
    gated = _istft(_stft(train[: len(x)], sr) * active_frames(spec)[None, :], sr, len(x))
    return x + _scaled(gated, x, level_db + 6.0)


def active_frames(spec: np.ndarray, gate_db: float = ACTIVE_GATE_DB) -> np.ndarray:
    """Frames whose energy is within gate_db of the loudest frame: where the machine is sounding.

    A stationary machine is active everywhere, an impulsive one only during its events, so a
    change gated to these frames is uniform on the first and event-bound on the second.
    """
    energy_db = 10 * np.log10(np.sum(np.abs(spec) ** 2, axis=0) + 1e-20)
    return energy_db >= energy_db.max() - gate_db


def _stft(x: np.ndarray, sr: int) -> np.ndarray:
    return signal.stft(x, fs=sr, nperseg=STFT_SIZE)[2]


def _istft(spec: np.ndarray, sr: int, length: int) -> np.ndarray:
    out = signal.istft(spec, fs=sr, nperseg=STFT_SIZE)[1]
    return out[:length] if len(out) >= length else np.pad(out, (0, length - len(out)))


def resonance(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """A new narrow resonance, excited only while the machine sounds (its active frames)."""
    f0 = rng.uniform(300, 0.42 * sr)
    b, a = signal.iirpeak(f0, Q=rng.uniform(8, 30), fs=sr)
    spec = _stft(x, sr)
    rung = _stft(signal.lfilter(b, a, x), sr) * active_frames(spec)[None, :]
    added = _istft(rung, sr, len(x))
    return x + _scaled(added, x, level_db + 6.0)


def tilt(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    # level -15..0 dB -> 1.5..6 dB per octave, either direction
    slope = np.interp(level_db, [-20.0, 0.0], [1.0, 6.0]) * rng.choice([-1.0, 1.0])
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    tilted = np.fft.irfft(spectrum * 10.0 ** (slope * octaves / 20.0), n=len(x))
    return tilted * (_rms(x) / _rms(tilted))  # same loudness: the shape changed, not the level


def modulation(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    depth = float(np.clip(10.0 ** (level_db / 20.0), 0.05, 0.9))
    rate = rng.uniform(1.0, 12.0)  # Hz: a rotation or beat
    t = np.arange(len(x)) / sr
    return x * (1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


def _masked_gain(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator, make_mask: Callable) -> np.ndarray:
    """The clip's own time-frequency cells under a mask amplified (or damped): the change follows the machine."""
    spec = _stft(x, sr)
    active = active_frames(spec)
    # the mask is drawn over the active frames only, then laid back onto the clip's time axis
    mask = np.zeros(spec.shape, dtype=bool)
    mask[:, active] = make_mask((spec.shape[0], int(active.sum())), float(rng.uniform(0.1, 0.4)), rng)
    gain_db = np.interp(level_db, [-20.0, 5.0], [3.0, 15.0]) * rng.choice([-1.0, 1.0], p=[0.3, 0.7])
    return _istft(spec * np.where(mask, 10.0 ** (gain_db / 20.0), 1.0), sr, len(x))


def band_segments(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    return _masked_gain(x, sr, level_db, rng, band_segment_mask)


def perlin(x: np.ndarray, sr: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    return _masked_gain(x, sr, level_db, rng, perlin_mask)


_KINDS: dict[str, Callable[[np.ndarray, int, float, np.random.Generator], np.ndarray]] = {
    "impacts": impacts,
    "resonance": resonance,
    "tilt": tilt,
    "modulation": modulation,
    "band_segments": band_segments,
    "perlin": perlin,
}


def simulate_waveform_anomaly(
    waveform: np.ndarray, sample_rate: int, kind: str, level_db: float, rng: np.random.Generator
) -> np.ndarray:
    """One simulated anomaly of `kind` on a mono waveform (float32, same length)."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown waveform anomaly kind {kind!r}: choose from {', '.join(WAVEFORM_ANOMALY_KINDS)}")
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1 or len(x) < STFT_SIZE:
        raise ConfigError(f"anomaly simulation needs a mono waveform of at least {STFT_SIZE} samples, got {x.shape}")
    out = _KINDS[kind](x, sample_rate, float(level_db), rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def simulate_many(
    waveforms: Sequence[np.ndarray],
    sample_rate: int,
    kinds: Sequence[str],
    level_db: tuple[float, float],
    seed: int,
    ids: Sequence[int] | None = None,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """One anomaly of each kind per waveform: (anomalies, position of the normal each came from, kinds).

    Each (clip id, kind) pair has its own generator from the seed (ids default to the positions),
    so a clip's anomaly of one kind does not depend on which other clips or kinds are asked for.
    """
    anomalies: list[np.ndarray] = []
    owners: list[int] = []
    labels: list[str] = []
    ids = list(range(len(waveforms))) if ids is None else [int(i) for i in ids]
    for i, (clip_id, wave) in enumerate(zip(ids, waveforms)):
        for k, kind in enumerate(kinds):
            rng = np.random.default_rng([seed, clip_id, WAVEFORM_ANOMALY_KINDS.index(kind) if kind in _KINDS else 99 + k])
            anomalies.append(simulate_waveform_anomaly(wave, sample_rate, kind, rng.uniform(*level_db), rng))
            owners.append(i)
            labels.append(kind)
    return anomalies, np.asarray(owners, dtype=int), labels
