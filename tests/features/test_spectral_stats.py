"""The six clip-level spectral statistics: known signals, silence, librosa agreement, manifests, bins."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asdflow.data.audio import load_audio, write_audio
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import AudioError, ConfigError, DataError
from asdflow.features.spectral_stats import (
    STAT_NAMES,
    manifest_statistics,
    normalise_statistics,
    spectral_statistics,
)

SR = 16000
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
VALVE_TEST = REAL / "dcase2023t2_dev" / "valve" / "test"


def sine(freq: float, seconds: float = 2.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float = 2.0, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_keys_and_types():
    stats = spectral_statistics(noise(), SR)
    assert tuple(stats) == STAT_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_pure_sine(freq):
    stats = spectral_statistics(sine(freq), SR)
    assert stats["centroid"] == pytest.approx(freq, rel=0.02)
    assert stats["flatness"] < 1e-3  # one spectral line: nothing like flat
    assert stats["zcr"] == pytest.approx(2 * freq / SR, rel=0.02)
    assert stats["rms"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert stats["kurtosis"] == pytest.approx(-1.5, abs=0.01)  # excess kurtosis of a sinusoid
    assert stats["flux"] < 0.05  # stationary


def test_white_noise_is_flat_and_sine_is_not():
    noisy = spectral_statistics(noise(), SR)
    # Power of white noise per bin is exponential: geometric/arithmetic mean -> exp(-Euler gamma) = 0.56.
    assert noisy["flatness"] == pytest.approx(math.exp(-0.5772), abs=0.03)
    assert noisy["centroid"] == pytest.approx(SR / 4, rel=0.02)  # flat spectrum 0..8 kHz
    assert noisy["zcr"] == pytest.approx(0.5, abs=0.02)
    assert abs(noisy["kurtosis"]) < 0.1  # Gaussian
    assert noisy["flatness"] > 100 * spectral_statistics(sine(1000.0), SR)["flatness"]


def test_click_train_has_high_kurtosis():
    clicks = np.zeros(2 * SR, dtype=np.float32)
    clicks[::800] = 1.0  # 20 clicks per second
    stats = spectral_statistics(clicks, SR)
    assert stats["kurtosis"] > 100
    assert stats["kurtosis"] > 100 * abs(spectral_statistics(noise(), SR)["kurtosis"])


def test_rms_of_a_constant_and_scaling():
    stats = spectral_statistics(np.full(SR, 0.3, dtype=np.float32), SR)
    assert stats["rms"] == pytest.approx(0.3, rel=1e-6)
    assert stats["zcr"] == 0.0
    assert stats["kurtosis"] == 0.0  # constant: defined as 0, not NaN
    loud, quiet = spectral_statistics(noise(scale=0.2), SR), spectral_statistics(noise(scale=0.1), SR)
    assert loud["rms"] == pytest.approx(2 * quiet["rms"], rel=1e-5)
    # level-independent statistics do not move with gain
    for key in ("flux", "centroid", "flatness", "kurtosis", "zcr"):
        assert loud[key] == pytest.approx(quiet[key], rel=1e-4, abs=1e-9)


def test_flux_rises_when_the_spectrum_changes():
    steady = sine(1000.0)
    # alternate 500 Hz and 3 kHz every 1024 samples: a new spectrum every other frame
    half = np.arange(2 * SR) // 1024 % 2 == 0
    switching = np.where(half, sine(500.0), sine(3000.0)).astype(np.float32)
    low, high = spectral_statistics(steady, SR)["flux"], spectral_statistics(switching, SR)["flux"]
    assert 0.0 <= low < 0.05
    assert 0.2 < high <= 1.0


@pytest.mark.parametrize("length", [1, 10, 600, SR])
def test_silence_is_finite_with_documented_values(length):
    stats = spectral_statistics(np.zeros(length, dtype=np.float32), SR)
    assert stats == pytest.approx(
        {"flux": 0.0, "centroid": 0.0, "flatness": 1.0, "kurtosis": 0.0, "rms": 0.0, "zcr": 0.0}
    )


def test_short_clip_is_finite():
    stats = spectral_statistics(noise(seconds=0.01), SR)  # 160 samples, under n_fft // 2
    assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
        (np.zeros((2, 100), dtype=np.float32), "mono"),
    ],
)
def test_bad_input_raises_audio_error(bad, message):
    with pytest.raises(AudioError, match=message):
        spectral_statistics(bad, SR)


def _librosa_reference(wav: np.ndarray) -> dict[str, float]:
    librosa = pytest.importorskip("librosa")
    # The same framing as asdflow: n_fft 1024, hop 512, centred, reflect padding for the STFT.
    kw = {"n_fft": 1024, "hop_length": 512, "pad_mode": "reflect"}
    return {
        "centroid": float(librosa.feature.spectral_centroid(y=wav, sr=SR, **kw).mean()),
        "flatness": float(librosa.feature.spectral_flatness(y=wav, **kw).mean()),
        "rms": float(librosa.feature.rms(y=wav, frame_length=1024, hop_length=512, pad_mode="reflect").mean()),
        # librosa pads zcr frames with edge values (no option): a few edge frames differ
        "zcr": float(librosa.feature.zero_crossing_rate(wav, frame_length=1024, hop_length=512).mean()),
    }


def _assert_agrees_with_librosa(wav: np.ndarray) -> None:
    ours, theirs = spectral_statistics(wav, SR), _librosa_reference(wav)
    # Same frames: only float32 (librosa) vs float64 (here) rounding; measured <= 1e-7 relative.
    for key in ("centroid", "flatness", "rms"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    # zcr: librosa's edge padding changes the two edge frames only; measured 0.3 % on 10 s clips.
    assert ours["zcr"] == pytest.approx(theirs["zcr"], rel=5e-3)


def test_agrees_with_librosa_on_noise():
    _assert_agrees_with_librosa(noise(seconds=10.0, seed=3))


def test_agrees_with_librosa_on_a_real_clip():
    if not VALVE_TEST.is_dir():
        pytest.skip(f"real data {VALVE_TEST} absent")
    clip = sorted(VALVE_TEST.glob("*.wav"))[0]
    _assert_agrees_with_librosa(load_audio(clip))


def _record(path: Path, machine_type: str) -> ClipRecord:
    return ClipRecord(path=str(path), name=path.name, machine_type=machine_type, section="00", split="train")


def test_manifest_statistics_keeps_good_clips_and_lists_bad_ones(tmp_path):
    good = [
        write_audio(tmp_path / "fan" / "a.wav", sine(500.0, seconds=1.0), SR),
        write_audio(tmp_path / "pump" / "a.wav", noise(seconds=1.0), SR),
    ]
    broken = tmp_path / "pump" / "broken.wav"
    broken.write_bytes(b"not a wav file")
    manifest = Manifest(
        root=str(tmp_path),
        records=[_record(good[0], "fan"), _record(broken, "pump"), _record(good[1], "pump")],
    )
    frame = manifest_statistics(manifest, progress=False)
    assert list(frame.columns) == ["path", "name", "machine_type", *STAT_NAMES]
    assert frame["path"].tolist() == [str(p) for p in good]
    assert frame["machine_type"].tolist() == ["fan", "pump"]
    assert not frame[list(STAT_NAMES)].isna().any().any()
    assert frame.loc[0, "centroid"] == pytest.approx(500.0, rel=0.03)
    assert frame.loc[0, "flatness"] < frame.loc[1, "flatness"]
    problems = frame.attrs["problems"]
    assert [p["path"] for p in problems] == [str(broken)]
    assert "broken.wav" in problems[0]["reason"]


def test_manifest_statistics_resamples_to_the_requested_rate(tmp_path):
    path = write_audio(tmp_path / "fan" / "a.wav", sine(1000.0, seconds=1.0), SR)
    frame = manifest_statistics(Manifest(root=str(tmp_path), records=[_record(path, "fan")]), 8000, progress=False)
    assert frame.loc[0, "centroid"] == pytest.approx(1000.0, rel=0.03)
    assert frame.loc[0, "zcr"] == pytest.approx(2 * 1000.0 / 8000, rel=0.03)


def _stats_frame() -> pd.DataFrame:
    rows = []
    for machine, offset in (("fan", 0.0), ("pump", 1000.0)):
        for i in range(10):
            rows.append({"name": f"{machine}_{i}", "machine_type": machine, **{k: offset + i for k in STAT_NAMES}})
    return pd.DataFrame(rows)


def test_normalise_statistics_bins_within_each_machine_type():
    out = normalise_statistics(_stats_frame(), by="machine_type", n_bins=5)
    expected = ["very low"] * 2 + ["low"] * 2 + ["medium"] * 2 + ["high"] * 2 + ["very high"] * 2
    for machine in ("fan", "pump"):  # pump's values are all above fan's, yet binned on their own
        part = out[out["machine_type"] == machine]
        for stat in STAT_NAMES:
            assert part[f"{stat}_level"].tolist() == expected
            assert part[f"{stat}_quantile"].tolist() == pytest.approx([(i + 0.5) / 10 for i in range(10)])
    assert list(out.columns[:8]) == ["name", "machine_type", *STAT_NAMES]  # the input columns are kept


def test_normalise_statistics_without_groups_and_other_bin_counts():
    out = normalise_statistics(_stats_frame(), by=None, n_bins=3)
    assert out["rms_level"].tolist()[:7] == ["low"] * 7
    assert out["rms_level"].tolist()[-7:] == ["high"] * 7
    assert set(out["rms_level"]) == {"low", "medium", "high"}


def test_normalise_statistics_ties_and_lone_clips_are_medium():
    frame = pd.DataFrame(
        [{"name": f"v{i}", "machine_type": "valve", **{k: 1.0 for k in STAT_NAMES}} for i in range(4)]
        + [{"name": "s0", "machine_type": "slider", **{k: 7.0 for k in STAT_NAMES}}]
    )
    out = normalise_statistics(frame)
    assert set(out[[f"{k}_level" for k in STAT_NAMES]].to_numpy().ravel()) == {"medium"}


def test_normalise_statistics_errors():
    frame = _stats_frame()
    with pytest.raises(ConfigError, match="n_bins"):
        normalise_statistics(frame, n_bins=9)
    with pytest.raises(DataError, match="flux"):
        normalise_statistics(frame.drop(columns=["flux"]))
    with pytest.raises(DataError, match="section"):
        normalise_statistics(frame, by="section")
    frame.loc[3, "rms"] = np.nan
    with pytest.raises(DataError, match="rms"):
        normalise_statistics(frame)
    empty = normalise_statistics(frame.iloc[:0])
    assert empty.empty and "rms_level" in empty.columns
