"""Two generated machines whose right time pooling is known, for testing the pooling selection.

- `impulsive` (valve-like): quiet background whose level varies from clip to clip,
  plus 1 to 6 open/close events at random times, each a few damped resonances.
  Mean pooling mixes the event count and the background level into every mel bin;
  near-max pooling reads the events themselves. Anomaly: one event rings with
  its upper resonance much louder and a little detuned (a worn seat).
- `stationary` (a fan or pump under a drifting supply): a harmonic hum in broadband
  noise whose level drifts within the clip and from clip to clip. Frame maxima of
  the noise jitter by several dB; the mean is steady. Anomaly: a weak steady tone
  between two harmonics (a bearing starting to whine) for the whole clip.

`write_timing_machine` writes a DCASE-layout dataset (source domain, section 00)
and returns nothing else: tests and benchmarks read it like any real dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from asdflow.data.audio import write_audio

TimingMachine = Literal["impulsive", "stationary"]
SAMPLE_RATE = 16000


def _damped(freq: float, decay_s: float, length: int, sr: int, phase: float) -> np.ndarray:
    t = np.arange(length) / sr
    return np.sin(2 * np.pi * freq * t + phase) * np.exp(-t / decay_s)


def impulsive_clip(rng: np.random.Generator, seconds: float, anomalous: bool, sr: int = SAMPLE_RATE) -> np.ndarray:
    n = int(seconds * sr)
    background = rng.standard_normal(n) * 10 ** (rng.uniform(-52, -40) / 20)
    background = np.convolve(background, np.ones(4) / 4, mode="same")  # a little darker than white
    clip = background
    n_events = int(rng.integers(1, 7))
    length = int(0.12 * sr)
    anomalous_event = int(rng.integers(0, n_events)) if anomalous else -1
    for e in range(n_events):
        start = int(rng.integers(0, n - length))
        gain = 10 ** (rng.uniform(-3, 3) / 20) * 0.3
        upper = 10 ** (-14 / 20)
        freq_upper = 3600.0
        if e == anomalous_event:
            upper, freq_upper = 10 ** (4 / 20), 3900.0
        event = (_damped(900 * rng.uniform(0.98, 1.02), 0.025, length, sr, rng.uniform(0, 6.3))
                 + 0.6 * _damped(1900 * rng.uniform(0.98, 1.02), 0.018, length, sr, rng.uniform(0, 6.3))
                 + upper * _damped(freq_upper, 0.012, length, sr, rng.uniform(0, 6.3)))
        clip[start : start + length] += gain * event
    return clip


def stationary_clip(rng: np.random.Generator, seconds: float, anomalous: bool, sr: int = SAMPLE_RATE) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 118.0 * rng.uniform(0.995, 1.005)
    hum = sum((0.5 / k) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 16))
    noise = rng.standard_normal(n) * 0.12
    clip = hum + noise
    if anomalous:
        whine = 1.5 * f0 * 11  # between harmonics 16 and 17 of the hum, above the last one
        clip = clip + 10 ** (-30 / 20) * np.sin(2 * np.pi * whine * t + rng.uniform(0, 6.3))
    # the level drifts: from clip to clip (+-6 dB) and slowly within the clip (+-2 dB)
    drift = rng.uniform(-6, 6) + 2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    return 0.1 * clip * 10 ** (drift / 20)


def write_timing_machine(
    root: str | Path, kind: TimingMachine, n_train: int = 40, n_test: int = 30, seconds: float = 4.0, seed: int = 0
) -> Path:
    """<root>/<kind>/{train,test}/section_00_source_*.wav: n_train normals, n_test normals + n_test anomalies."""
    make = {"impulsive": impulsive_clip, "stationary": stationary_clip}[kind]
    root = Path(root)
    plan = [("train", "normal", i) for i in range(n_train)]
    plan += [("test", label, i) for label in ("normal", "anomaly") for i in range(n_test)]
    for split, label, index in plan:
        rng = np.random.default_rng([seed, ("train", "test").index(split), ("normal", "anomaly").index(label), index])
        clip = make(rng, seconds, label == "anomaly")
        name = f"section_00_source_{split}_{label}_{index:04d}_kind_{kind}.wav"
        write_audio(root / kind / split / name, clip / max(1.0, float(np.abs(clip).max()) / 0.95), SAMPLE_RATE)
    return root / kind
