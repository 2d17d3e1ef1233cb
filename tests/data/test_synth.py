"""The synthetic machine-sound generator: layout, determinism, domains, anomalies, bad input."""

from __future__ import annotations

import csv
import filecmp
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdflow.config import AnomalyKindConfig, SynthConfig, load_config
from asdflow.data.synth import (
    METADATA_FILE,
    assign_anomaly_kinds,
    plan_machine_type,
    render_clip,
    synthesize_dataset,
)
from asdflow.data.synth_anomalies import FAULTS, RATIO_OFFSET_DB, severity_to_ratio_db
from asdflow.data.synth_physics import machine_profile
from asdflow.errors import ConfigError, DataError

# A small regex reader, independent of the project's manifest reader.
LABELLED = re.compile(
    r"^section_(?P<section>\d\d)_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_(?P<index>\d{4})_(?P<attrs>.+)\.wav$"
)
SUPPLEMENTAL = re.compile(
    r"^section_(?P<section>\d\d)_(?P<domain>source|target)_supplemental_"
    r"(?P<kind>clean|noise)_(?P<index>\d{4})_(?P<attrs>.+)\.wav$"
)

TINY = dict(
    machine_types=["fan", "gearbox"],
    sections=["00", "01"],
    duration=1.0,
    n_train_source=8,
    n_train_target=2,
    n_test_per_condition=5,
    n_supplemental_clean=2,
    n_supplemental_noise=2,
    seed=7,
)


def tiny(**changes) -> SynthConfig:
    return SynthConfig(**{**TINY, **changes})


def attrs_of(text: str) -> dict[str, str]:
    parts = text.split("_")
    return dict(zip(parts[0::2], parts[1::2]))


def log_bands(x: np.ndarray, n_fft: int = 512, hop: int = 256, n_bands: int = 32) -> np.ndarray:
    """Frames x log band energies on log-spaced bands: a library-free stand-in for log-mel."""
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.unique(np.geomspace(2, power.shape[1] - 1, n_bands + 1).astype(int))
    return np.log10(np.add.reduceat(power, edges[:-1], axis=1) + 1e-12)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, SynthConfig, object]:
    out = tmp_path_factory.mktemp("synth") / "data"
    config = tiny()
    summary = synthesize_dataset(config, out, progress=False, workers=1)
    return out, config, summary


def test_layout_names_and_audio_format(dataset):
    out, config, summary = dataset
    assert summary.n_files == 2 * 2 * (8 + 2 + 4 * 5 + 2 + 2)
    for mt in config.machine_types:
        seen: Counter = Counter()
        indices: dict[tuple, list[int]] = {}
        for split in ("train", "test", "supplemental"):
            for path in sorted((out / mt / split).glob("*.wav")):
                if split == "supplemental":
                    m = SUPPLEMENTAL.match(path.name)
                    assert m, path.name
                    key = (m["section"], m["domain"], split, m["kind"])
                else:
                    m = LABELLED.match(path.name)
                    assert m and m["split"] == split, path.name
                    key = (m["section"], m["domain"], split, m["label"])
                    assert set(attrs_of(m["attrs"])) == {"speed", "load", "bg"}
                seen[key] += 1
                indices.setdefault(key, []).append(int(m["index"]))
                info = sf.info(str(path))
                assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        for section in config.sections:
            assert seen[(section, "source", "train", "normal")] == 8
            assert seen[(section, "target", "train", "normal")] == 2
            for domain in ("source", "target"):
                assert seen[(section, domain, "test", "normal")] == 5
                assert seen[(section, domain, "test", "anomaly")] == 5
            assert seen[(section, "source", "supplemental", "clean")] == 2
            assert seen[(section, "source", "supplemental", "noise")] == 2
        assert all(sorted(v) == list(range(len(v))) for v in indices.values())  # NNNN from 0000, no gaps
        assert summary.counts[mt] == {
            "train_source": 16, "train_target": 4, "test_normal": 20, "test_anomaly": 20,
            "supplemental_clean": 4, "supplemental_noise": 4,
        }


def test_attributes_csv_matches_files(dataset):
    out, config, _ = dataset
    for mt in config.machine_types:
        for section in config.sections:
            with open(out / mt / f"attributes_{section}.csv", newline="") as handle:
                rows = list(csv.reader(handle))
            assert rows[0] == ["file_name", "d1p", "d1v", "d2p", "d2v", "d3p", "d3v"]
            listed = {row[0]: dict(zip(row[1::2], row[2::2])) for row in rows[1:]}
            wavs = (out / mt).glob("*/*.wav")
            on_disk = {f"{p.parent.name}/{p.name}" for p in wavs if p.name.startswith(f"section_{section}_")}
            assert set(listed) == on_disk
            for file_name, attrs in listed.items():
                tail = re.search(r"_\d{4}_(.+)\.wav$", file_name)[1]
                assert attrs == attrs_of(tail)


def test_metadata_keeps_the_ground_truth(dataset):
    out, config, _ = dataset
    meta = json.loads((out / METADATA_FILE).read_text())
    clips = {c["path"]: c for c in meta["clips"]}
    assert set(clips) == {f"{p.relative_to(out)}" for p in out.glob("*/*/*.wav")}
    assert set(meta["machine_types"]) == set(config.machine_types)
    for clip in clips.values():
        if clip["label"] == "anomaly":
            assert clip["anomaly_kind"] in SynthConfig.ANOMALY_KINDS and 0 <= clip["severity"] <= 1
        else:
            assert clip["anomaly_kind"] is None and clip["severity"] is None
        if clip["supplemental_kind"] == "clean":
            assert clip["background"] is None and clip["attributes"]["bg"] == "none"
        if clip["supplemental_kind"] == "noise":
            assert clip["speed_rpm"] == 0 and clip["background"] == clip["attributes"]["bg"]
    # 5 anomalies per domain and section over 5 equally weighted kinds: each kind once.
    for mt in config.machine_types:
        for section in config.sections:
            for domain in ("source", "target"):
                kinds = [
                    c["anomaly_kind"] for c in clips.values()
                    if (c["machine_type"], c["section"], c["domain"], c["label"]) == (mt, section, domain, "anomaly")
                ]
                assert sorted(kinds) == sorted(SynthConfig.ANOMALY_KINDS)


def test_same_config_gives_identical_bytes_alone_or_among_others(dataset, tmp_path):
    out, config, _ = dataset
    again = tmp_path / "again"
    synthesize_dataset(config, again, progress=False, workers=2)  # a process pool: same bytes
    comparison = filecmp.dircmp(out, again)
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    match, mismatch, errors = filecmp.cmpfiles(out, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    assert not comparison.left_only and not comparison.right_only

    alone = tmp_path / "alone"
    synthesize_dataset(tiny(machine_types=["gearbox"]), alone, progress=False)
    wavs = [p.relative_to(alone) for p in (alone / "gearbox").rglob("*") if p.is_file()]
    assert len(wavs) == len([p for p in (out / "gearbox").rglob("*") if p.is_file()])
    match, mismatch, errors = filecmp.cmpfiles(alone, out, [str(w) for w in wavs], shallow=False)
    assert not mismatch and not errors

    first = render_clip(plan_machine_type(config, "fan")[0], config)
    other_seed = render_clip(plan_machine_type(tiny(seed=8), "fan")[0], tiny(seed=8))
    assert first.tobytes() != other_seed.tobytes()


def test_domains_really_shift(dataset):
    out, config, _ = dataset
    meta = json.loads((out / METADATA_FILE).read_text())["clips"]
    for mt in config.machine_types:
        clips = [c for c in meta if c["machine_type"] == mt and c["section"] == "00" and c["label"] == "normal"]
        by_domain = {d: [c for c in clips if c["domain"] == d] for d in ("source", "target")}
        speeds = {d: {c["attributes"]["speed"] for c in cs} for d, cs in by_domain.items()}
        backgrounds = {d: {c["attributes"]["bg"] for c in cs} for d, cs in by_domain.items()}
        assert not speeds["source"] & speeds["target"]
        assert not backgrounds["source"] & backgrounds["target"]
        # A spectral statistic shifts: a nearest-centroid rule tells the domains apart (leave one out).
        features = {
            d: np.array([log_bands(sf.read(str(out / c["path"]))[0]).mean(axis=0) for c in cs])
            for d, cs in by_domain.items()
        }
        correct, total = 0, 0
        for d, feats in features.items():
            other = "target" if d == "source" else "source"
            for i, f in enumerate(feats):
                own = np.delete(feats, i, axis=0).mean(axis=0)
                correct += np.linalg.norm(f - own) < np.linalg.norm(f - features[other].mean(axis=0))
                total += 1
        assert correct / total >= 0.9, (mt, correct, total)


def _machine_energy(spec, config) -> float:
    machine_only = spec.model_copy(update={"anomaly_kind": None, "background": None, "snr_db": None})
    return float(np.mean(render_clip(machine_only, config).astype(np.float64) ** 2))


@pytest.mark.parametrize("kind", SynthConfig.ANOMALY_KINDS)
def test_each_kind_changes_the_sound_more_with_severity(kind):
    config = tiny(machine_types=["pump"], sections=["00"])
    spec = next(s for s in plan_machine_type(config, "pump") if s.label == "anomaly")
    normal = render_clip(spec.model_copy(update={"anomaly_kind": None}), config).astype(np.float64)
    machine = _machine_energy(spec, config)
    ratios = []
    for severity in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = render_clip(spec.model_copy(update={"anomaly_kind": kind, "severity": severity}), config)
        ratio = 10 * np.log10(np.mean((x - normal) ** 2) / machine)  # the background cancels: same seed
        ratios.append(ratio)
        expected = severity_to_ratio_db(severity) + RATIO_OFFSET_DB[kind]
        assert ratio == pytest.approx(expected, abs=0.1)  # float32 rounding of the clip only
    assert all(b > a + 5 for a, b in zip(ratios, ratios[1:]))
    assert ratios[0] < -35 and ratios[-1] > 0


def test_fault_signatures_are_physical():
    config = tiny(machine_types=["fan"], sections=["00"], duration=2.0)
    spec = next(s for s in plan_machine_type(config, "fan") if s.label == "anomaly")
    spec = spec.model_copy(update={"background": None, "snr_db": None})
    profile = machine_profile("fan")
    normal = render_clip(spec.model_copy(update={"anomaly_kind": None}), config).astype(np.float64)
    freqs = np.fft.rfftfreq(normal.size, 1 / config.sample_rate)

    # Bearing defect: the envelope of the added signal repeats at the defect frequency (the
    # envelope spectrum peaks there, far above its median over 10-400 Hz).
    fault = render_clip(spec.model_copy(update={"anomaly_kind": "bearing_defect", "severity": 0.6}), config) - normal
    envelope = np.abs(np.fft.rfft(np.abs(fault) - np.abs(fault).mean()))
    defect = profile.bearing_order * spec.speed_rpm / 60
    near = np.abs(freqs - defect) < 0.05 * defect
    assert envelope[near].max() > 20 * np.median(envelope[(freqs > 10) & (freqs < 400)])

    # Friction squeal: the added energy sits in a narrow band around the squeal frequency.
    fault = render_clip(spec.model_copy(update={"anomaly_kind": "friction_squeal", "severity": 0.6}), config) - normal
    power = np.abs(np.fft.rfft(fault)) ** 2
    near = np.abs(freqs - profile.squeal_hz) < 0.15 * profile.squeal_hz
    assert power[near].sum() > 0.5 * power.sum()


def _scores(config: SynthConfig, machine_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Per test clip (source domain): mean squared z-score of its frames' log band energies
    against the training frames; returns (normal scores, anomaly scores)."""
    specs = plan_machine_type(config, machine_type)
    train = np.concatenate([log_bands(render_clip(s, config)) for s in specs if s.split == "train"])
    mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-3
    scores = {"normal": [], "anomaly": []}
    for s in specs:
        if s.split == "test" and s.domain == "source":
            scores[s.label].append(np.mean(((log_bands(render_clip(s, config)) - mu) / sd) ** 2))
    return np.array(scores["normal"]), np.array(scores["anomaly"])


def test_severity_one_is_obvious_and_zero_is_not():
    base = dict(machine_types=["fan"], sections=["00"], n_train_source=12, n_train_target=0,
                n_test_per_condition=10, n_supplemental_clean=0, n_supplemental_noise=0, severity_spread=0.0)
    normal, anomaly = _scores(tiny(**base, severity=1.0), "fan")
    assert np.mean(anomaly > np.median(normal)) >= 0.9
    assert anomaly.mean() > 2 * normal.mean()
    normal, anomaly = _scores(tiny(**base, severity=0.0), "fan")
    assert abs(anomaly.mean() / normal.mean() - 1) < 0.15


def test_anomaly_kinds_follow_the_weights():
    config = tiny(anomaly_kinds={
        "bearing_defect": AnomalyKindConfig(weight=3),
        "imbalance": AnomalyKindConfig(weight=1),
        "friction_squeal": AnomalyKindConfig(enabled=False),
        "rattle": AnomalyKindConfig(enabled=False),
        "clogging": AnomalyKindConfig(weight=0),
    })
    kinds = assign_anomaly_kinds(config, "fan", "00", "source", 8)
    assert Counter(kinds) == {"bearing_defect": 6, "imbalance": 2}
    assert kinds == assign_anomaly_kinds(config, "fan", "00", "source", 8)
    assert set(FAULTS) == set(SynthConfig.ANOMALY_KINDS) == set(RATIO_OFFSET_DB)


def test_profiles_known_hashed_and_per_section():
    fan, pump = machine_profile("fan"), machine_profile("pump")
    assert fan != pump and fan.source_background != fan.target_background
    assert machine_profile("conveyor") == machine_profile("conveyor")  # hashed, stable across processes
    assert machine_profile("conveyor").resonances != machine_profile("compressor").resonances
    assert machine_profile("fan", "01").resonances != fan.resonances
    for profile in (fan, pump, machine_profile("conveyor")):
        assert not set(profile.source_speeds_rpm) & set(profile.target_speeds_rpm)


def test_existing_folder_keeps_foreign_files_and_other_metadata(tmp_path):
    out = tmp_path / "data"
    (out / "fan" / "train").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "fan" / "train" / "recorded.wav").write_bytes(b"not ours")
    small = dict(sections=["00"], n_train_source=2, n_train_target=1, n_test_per_condition=1,
                 n_supplemental_clean=1, n_supplemental_noise=1)
    summary = synthesize_dataset(tiny(machine_types=["fan"], **small), out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "fan" / "train" / "recorded.wav").read_bytes() == b"not ours"
    assert summary.untouched_files == 1
    synthesize_dataset(tiny(machine_types=["pump"], **small), out, progress=False)
    meta = json.loads((out / METADATA_FILE).read_text())
    assert {c["machine_type"] for c in meta["clips"]} == {"fan", "pump"}
    assert set(meta["machine_types"]) == {"fan", "pump"}


def test_bad_config_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown anomaly kind"):
        synthesize_dataset({**TINY, "anomaly_kinds": {"meltdown": {}}}, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="unknown anomaly kind"):
        load_config(overrides={"synth": {"anomaly_kinds": {"meltdown": {"weight": 1}}}})
    nothing = {k: {"enabled": False} for k in SynthConfig.ANOMALY_KINDS}
    with pytest.raises(ConfigError, match="no anomaly kind is enabled"):
        synthesize_dataset({**TINY, "anomaly_kinds": nothing}, tmp_path / "b", progress=False)
    for duration in (0.0, -1.0):
        # model_copy skips validation, as an attribute assigned after construction would.
        with pytest.raises(ConfigError, match="duration"):
            synthesize_dataset(tiny().model_copy(update={"duration": duration}), tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="duration"):
        load_config(overrides={"synth": {"duration": 0}})
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing written on bad input
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        synthesize_dataset(tiny(), tmp_path / "file", progress=False)
