import numpy as np
import pytest

from asdflow.errors import ConfigError
from asdflow.simulation.waveform_anomalies import (
    WAVEFORM_ANOMALY_KINDS, active_frames, simulate_many, simulate_waveform_anomaly, _stft,
)

SR = 16000


def steady(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def impulsive(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    x = 1e-3 * rng.standard_normal(int(seconds * SR))
    for start in (3000, 20000):
        n = np.arange(1600)
        x[start : start + 1600] += 0.5 * np.sin(2 * np.pi * 1000 * n / SR) * np.exp(-n / 300)
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", WAVEFORM_ANOMALY_KINDS)
def test_every_kind_changes_the_clip_and_keeps_its_shape(kind):
    x = steady()
    y = simulate_waveform_anomaly(x, SR, kind, 0.0, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    assert np.sqrt(np.mean((y - x) ** 2)) > 1e-3 * np.sqrt(np.mean(x**2))


@pytest.mark.parametrize("kind", WAVEFORM_ANOMALY_KINDS)
def test_same_seed_same_anomaly(kind):
    x = steady()
    a = simulate_waveform_anomaly(x, SR, kind, -3.0, np.random.default_rng(5))
    b = simulate_waveform_anomaly(x, SR, kind, -3.0, np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_active_frames_follow_the_machine():
    assert active_frames(_stft(steady(), SR)).mean() > 0.9  # a steady machine sounds throughout
    assert active_frames(_stft(impulsive(), SR)).mean() < 0.2  # an impulsive one only in its events


@pytest.mark.parametrize("kind", ["resonance", "impacts", "band_segments"])
def test_gated_kinds_change_an_impulsive_clip_only_during_its_events(kind):
    x = impulsive()
    y = simulate_waveform_anomaly(x, SR, kind, 0.0, np.random.default_rng(1))
    quiet = slice(8000, 18000)  # between the two events
    assert np.abs(y[quiet] - x[quiet]).max() < 0.05 * np.abs(y - x).max()


def test_simulate_many_gives_one_of_each_kind_per_clip():
    clips = [steady(seed=i) for i in range(3)]
    anomalies, owners, kinds = simulate_many(clips, SR, ["tilt", "impacts"], (-5.0, 5.0), seed=0)
    assert len(anomalies) == 6 and list(owners) == [0, 0, 1, 1, 2, 2] and kinds == ["tilt", "impacts"] * 3
    # a kind's anomalies do not depend on which other kinds are asked for
    alone, _, _ = simulate_many(clips, SR, ["impacts"], (-5.0, 5.0), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(alone, anomalies[1::2]))
    again, _, _ = simulate_many(clips, SR, ["tilt", "impacts"], (-5.0, 5.0), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(anomalies, again))


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="unknown waveform anomaly kind"):
        simulate_waveform_anomaly(steady(), SR, "meteor", 0.0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="mono waveform"):
        simulate_waveform_anomaly(np.zeros((100, 2), np.float32), SR, "tilt", 0.0, np.random.default_rng(0))
