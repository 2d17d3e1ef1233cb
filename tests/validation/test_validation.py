"""Data validation with real Great Expectations (ephemeral context) on tiny DCASE-layout sets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdflow.config import ValidationConfig
from asdflow.data.audio import write_audio
from asdflow.data.manifest import ClipRecord, Manifest, ManifestProblem
from asdflow.errors import DataError
from asdflow.validation import raise_on_failure, validate_dataset
from asdflow.validation.clip_stats import clip_stats

SR = 16000
SECONDS = 1.0
CONFIG = ValidationConfig(
    sample_rate=SR, channels=1, min_duration=0.5, max_duration=2.0, min_train_per_domain=1, min_test_per_domain_and_label=1
)

# (split folder, domain, label, index) of a clean machine: both domains in train and test, every test label
CLEAN_LAYOUT = [
    ("train", "source", "normal", 0),
    ("train", "source", "normal", 1),
    ("train", "target", "normal", 2),
    ("test", "source", "normal", 3),
    ("test", "source", "anomaly", 4),
    ("test", "target", "normal", 5),
    ("test", "target", "anomaly", 6),
]


def clip_name(split: str, domain: str, label: str, index: int) -> str:
    return f"section_00_{domain}_{split}_{label}_{index:04d}_a_1.wav"


def noise(seed: int, seconds: float = SECONDS, sr: int = SR, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * level).astype(np.float32)


def record(root: Path, machine: str, split: str, domain: str | None, label: str | None, name: str, **extra) -> ClipRecord:
    return ClipRecord(
        path=str(root / machine / split / name), name=name, machine_type=machine, section="00",
        domain=domain, split=split, label=label, **extra,
    )


def make_clean(root: Path, machines=("fan", "pump"), layout=CLEAN_LAYOUT) -> Manifest:
    """Writes the clips with asdflow's own writer and returns the hand-built manifest."""
    records = []
    for m, machine in enumerate(machines):
        for split, domain, label, index in layout:
            name = clip_name(split, domain, label, index)
            write_audio(root / machine / split / name, noise(100 * m + index), SR)
            records.append(record(root, machine, split, domain, label, name))
    return Manifest(root=str(root), records=records)


def add_clip(manifest: Manifest, machine: str, split: str, domain: str, label: str, index: int, write) -> str:
    """Writes one clip with `write(path)` and appends its record; returns its clip id."""
    root = Path(manifest.root)
    name = clip_name(split, domain, label, index)
    path = root / machine / split / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    manifest.records.append(record(root, machine, split, domain, label, name))
    return f"{machine}/{split}/{name}"


def tree_fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def by_key(result, key):
    return next(e for e in result.expectations if e.key == key)


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """A clean two-machine set plus one clip per defect, each in fan, with the expected failing expectation."""
    root = tmp_path_factory.mktemp("defects") / "data"
    manifest = make_clean(root)
    expected = {}
    expected[add_clip(manifest, "fan", "train", "source", "normal", 20,
                      lambda p: sf.write(p, np.stack([noise(20), noise(21)], axis=1), SR, subtype="PCM_16"))] = "channels"
    expected[add_clip(manifest, "fan", "train", "source", "normal", 21,
                      lambda p: write_audio(p, noise(22, sr=44100), 44100))] = "sample_rate"
    nan_wave = noise(23)
    nan_wave[100:110] = np.nan
    expected[add_clip(manifest, "fan", "train", "source", "normal", 22,
                      lambda p: sf.write(p, nan_wave, SR, subtype="FLOAT"))] = "finite"
    expected[add_clip(manifest, "fan", "train", "source", "normal", 23,
                      lambda p: write_audio(p, np.zeros(SR, np.float32), SR))] = "not_silent"
    square = np.sign(np.sin(np.arange(SR) * 2 * np.pi * 50 / SR)).astype(np.float32)
    expected[add_clip(manifest, "fan", "train", "source", "normal", 24,
                      lambda p: write_audio(p, square, SR))] = "not_clipped"
    expected[add_clip(manifest, "fan", "train", "source", "anomaly", 25,
                      lambda p: write_audio(p, noise(25), SR))] = "train_normal"
    expected[add_clip(manifest, "fan", "train", "source", "normal", 26,
                      lambda p: write_audio(p, noise(26, seconds=0.2), SR))] = "duration"
    expected[add_clip(manifest, "fan", "test", "source", "normal", 27,
                      lambda p: p.write_bytes(b"RIFF\x00\x00garbage, not a wav"))] = "readable"
    return manifest, expected


@pytest.fixture(scope="module")
def defects_result(defects, tmp_path_factory):
    manifest, _ = defects
    return validate_dataset(manifest, CONFIG, tmp_path_factory.mktemp("report"), quarantine=False, progress=False)


def test_clean_set_passes(tmp_path):
    manifest = make_clean(tmp_path / "data")
    result = validate_dataset(manifest, CONFIG, tmp_path / "out", progress=False)
    assert result.success, [e for e in result.expectations if not e.success]
    assert result.failing_clips == {} and result.quarantined == []
    assert len(result.kept_manifest) == len(manifest) == 14
    assert raise_on_failure(result) is result
    # every planned expectation was actually evaluated by GX (no silent exception)
    assert all(e.error is None for e in result.expectations)
    keys = {e.key for e in result.expectations}
    assert {"sample_rate", "channels", "duration", "finite", "not_silent", "not_clipped", "label_allowed",
            "domain_allowed", "split_allowed", "train_normal", "unique_name", "min_train", "min_test",
            "both_domains[fan/train]", "both_domains[pump/test]", "reader"} <= keys


def test_each_defect_names_its_clip_and_expectation(defects, defects_result):
    _, expected = defects
    result = defects_result
    assert not result.success
    assert set(result.failing_clips) == set(expected), "exactly the defective clips fail"
    for cid, key in expected.items():
        assert cid in by_key(result, key).failing, f"{cid} should fail {key}"
        description = by_key(result, key).description
        assert any(r.startswith(description) for r in result.failing_clips[cid])
    # each defect is caught by its own expectation, not by a neighbour's
    assert by_key(result, "sample_rate").failing == [c for c, k in expected.items() if k == "sample_rate"]
    assert by_key(result, "channels").failing == [c for c, k in expected.items() if k == "channels"]
    assert by_key(result, "not_silent").failing == [c for c, k in expected.items() if k == "not_silent"]
    # values are reported: the 44.1 kHz clip says what it is
    wrong_rate = next(c for c, k in expected.items() if k == "sample_rate")
    assert "got 44100" in " ".join(result.failing_clips[wrong_rate])
    unreadable = next(c for c, k in expected.items() if k == "readable")
    assert by_key(result, "readable").failing == [unreadable]
    # the pump clips are all fine, and dataset-level checks pass (the set has enough good clips)
    assert not any(c.startswith("pump/") for c in result.failing_clips)
    assert by_key(result, "min_test").success and by_key(result, "both_domains[fan/train]").success


def test_reports_name_every_failing_clip(defects, defects_result):
    _, expected = defects
    html = Path(defects_result.report_html).read_text()
    data = json.loads(Path(defects_result.report_json).read_text())
    assert html.startswith("<!DOCTYPE html>") and "FAILED" in html
    assert "<script" not in html and "http" not in html  # self-contained
    assert data["success"] is False and set(data["failing_clips"]) == set(expected)
    for cid in expected:
        assert Path(cid).name in html
    assert not Path(defects_result.report_json).with_name("quarantine.json").exists()


def test_data_error_is_one_clear_message(defects, defects_result):
    _, expected = defects
    with pytest.raises(DataError) as caught:
        raise_on_failure(defects_result)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{len(expected)} failing clip(s) of {defects_result.n_clips}" in message
    assert "sample rate is 16000 Hz" in message and "train clips are normal only" in message
    assert next(iter(defects_result.failing_clips)) in message  # names clips with reasons
    assert message.endswith(defects_result.report_html)
    assert len(message) < 2000


def test_quarantine_keeps_good_clips_and_touches_nothing(defects, tmp_path):
    manifest, expected = defects
    before = tree_fingerprint(Path(manifest.root))
    result = validate_dataset(manifest, CONFIG, tmp_path / "out", quarantine=True, progress=False)
    assert result.success, result.after_quarantine
    assert raise_on_failure(result) is result
    assert {q.clip_id for q in result.quarantined} == set(expected)
    assert all(q.reasons for q in result.quarantined)
    kept_paths = {r.path for r in result.kept_manifest.records}
    assert kept_paths == {r.path for r in manifest.records} - {q.path for q in result.quarantined}
    assert len(result.kept_manifest) == len(manifest) - len(expected)
    # the written record of what was left out, and the kept manifest beside it
    listed = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    assert {q["clip_id"] for q in listed["quarantined"]} == set(expected)
    assert {q["name"] for q in listed["quarantined"]} == {Path(c).name for c in expected}
    assert len(Manifest.load(tmp_path / "out")) == len(result.kept_manifest)
    assert tree_fingerprint(Path(manifest.root)) == before, "nothing deleted, moved or rewritten"


def test_missing_target_domain_fails_even_with_quarantine(tmp_path):
    no_target = [row for row in CLEAN_LAYOUT if not (row[0] == "train" and row[1] == "target")]
    manifest = make_clean(tmp_path / "data", machines=("fan",), layout=no_target)
    for quarantine in (False, True):
        result = validate_dataset(manifest, CONFIG, tmp_path / f"out{quarantine}", quarantine=quarantine, progress=False)
        assert not result.success
        blocking = {e.key: e for e in result.failed_expectations()}
        assert "both_domains[fan/train]" in blocking and "target" in blocking["both_domains[fan/train]"].observed
        assert blocking["min_train"].failing == ["fan/train/target/normal"]
        assert result.failing_clips == {}  # no clip is to blame
        with pytest.raises(DataError, match="fan/train/target/normal"):
            raise_on_failure(result)


def test_too_few_clips_after_quarantine_fails(tmp_path):
    manifest = make_clean(tmp_path / "data", machines=("fan",))
    # the only target test anomaly is silent: quarantine drops it, and then that group is empty
    silent = next(r for r in manifest.records if r.split == "test" and r.domain == "target" and r.label == "anomaly")
    write_audio(silent.path, np.zeros(SR, np.float32), SR)
    assert validate_dataset(manifest, CONFIG, tmp_path / "plain", quarantine=False, progress=False).expectations
    result = validate_dataset(manifest, CONFIG, tmp_path / "q", quarantine=True, progress=False)
    assert [q.name for q in result.quarantined] == [silent.name]
    assert not result.success
    assert [e.key for e in result.failed_expectations()] == ["min_test"]
    assert result.failed_expectations()[0].failing == ["fan/test/target/anomaly"]
    with pytest.raises(DataError, match="even after quarantining 1 clip"):
        raise_on_failure(result)


def test_duration_per_machine_type_and_unique_names(tmp_path):
    manifest = make_clean(tmp_path / "data")
    # pump clips must be 0.5..0.8 s here; fan keeps the global range
    config = CONFIG.model_copy(update={"duration_by_machine": {"pump": (0.5, 0.8)}})
    # the same file name twice within fan (a copy in a second folder listed by hand)
    first = manifest.records[0]
    copy = Path(manifest.root) / "fan" / "copy" / first.name
    copy.parent.mkdir()
    copy.write_bytes(Path(first.path).read_bytes())
    manifest.records.append(first.model_copy(update={"path": str(copy)}))
    result = validate_dataset(manifest, config, tmp_path / "out", progress=False)
    per_pump = by_key(result, "duration[pump]")
    assert not per_pump.success and len(per_pump.failing) == 7 and all(c.startswith("pump/") for c in per_pump.failing)
    assert by_key(result, "duration").success  # fan clips (1 s) are inside the global range
    assert sorted(by_key(result, "unique_name").failing) == sorted([f"fan/train/{first.name}", f"fan/copy/{first.name}"])


def test_disallowed_values_and_reader_problems(tmp_path):
    manifest = make_clean(tmp_path / "data", machines=("fan",))
    # a record that skipped pydantic validation (as a hand-edited CSV could produce upstream)
    bad = manifest.records[3].model_dump()
    bad.update(label="broken", name="section_00_source_test_broken_0099_a_1.wav")
    bad["path"] = str(Path(bad["path"]).with_name(bad["name"]))
    write_audio(bad["path"], noise(99), SR)
    manifest.records.append(ClipRecord.model_construct(**bad))
    manifest.problems.append(
        ManifestProblem(path=str(tmp_path / "data" / "fan" / "test" / "weird.wav"), reason="file name fits no DCASE naming")
    )
    result = validate_dataset(manifest, CONFIG, tmp_path / "out", progress=False)
    assert by_key(result, "label_allowed").failing == [f"fan/test/{bad['name']}"]
    assert by_key(result, "reader").failing == ["fan/test/weird.wav"] and not by_key(result, "reader").success
    assert "fan/test/weird.wav" in result.failing_clips
    quarantined = validate_dataset(manifest, CONFIG, tmp_path / "q", quarantine=True, progress=False)
    assert quarantined.success
    assert {q.clip_id for q in quarantined.quarantined} == {f"fan/test/{bad['name']}", "fan/test/weird.wav"}
    # the kept manifest is clean: a later stage validating it again without quarantine passes
    again = validate_dataset(quarantined.kept_manifest, CONFIG, tmp_path / "again", quarantine=False, progress=False)
    assert again.success and again.n_clips == quarantined.n_kept


def test_clip_stats_reads_native_rate_and_flags_unreadable(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, np.stack([noise(1, sr=44100), noise(2, sr=44100)], axis=1), 44100, subtype="PCM_16")
    stats = clip_stats(str(path))
    assert (stats.stat_sample_rate, stats.stat_channels, stats.stat_frames) == (44100, 2, 44100)
    assert stats.rms == pytest.approx(0.1, rel=0.05) and stats.nonfinite == 0 and stats.clipping_ratio == 0
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"")
    flagged = clip_stats(str(broken))
    assert not flagged.readable and flagged.read_error


def test_with_the_dcase_reader(tmp_path):
    reader = pytest.importorskip("asdflow.data.dcase_reader")
    manifest = make_clean(tmp_path / "data", machines=("fan",))
    (tmp_path / "data" / "fan" / "train" / "notes_about_fan.wav").write_bytes(b"junk")
    read = reader.build_manifest(tmp_path / "data", progress=False)
    assert len(read) == len(manifest)
    result = validate_dataset(read, CONFIG, tmp_path / "out", progress=False)
    assert not result.success and list(result.failing_clips) == ["fan/train/notes_about_fan.wav"]
    assert validate_dataset(read, CONFIG, tmp_path / "q", quarantine=True, progress=False).success


# -- a plant's data: no labelled anomalies; an evaluation set: no labels at all ----------------------


def test_a_dataset_without_test_anomalies_passes_the_minimum_test_rule(tmp_path):
    layout = [row for row in CLEAN_LAYOUT if row[2] != "anomaly"]
    result = validate_dataset(make_clean(tmp_path, layout=layout), CONFIG, tmp_path / "out", progress=False)
    assert result.success, [e.key for e in result.failed_expectations()]


def test_unlabelled_test_clips_count_as_one_group_and_an_empty_test_split_still_fails(tmp_path):
    layout = [row for row in CLEAN_LAYOUT if row[0] == "train"]
    manifest = make_clean(tmp_path, machines=("fan",), layout=layout)
    for index in range(3):  # DCASE 2023 evaluation naming: no domain, no label
        name = f"section_00_{index:04d}.wav"
        write_audio(tmp_path / "fan" / "test" / name, noise(50 + index), SR)
        manifest.records.append(record(tmp_path, "fan", "test", None, None, name, naming="eval"))
    assert validate_dataset(manifest, CONFIG, tmp_path / "out", progress=False).success

    no_test = Manifest(root=manifest.root, records=[r for r in manifest.records if r.split == "train"])
    result = validate_dataset(no_test, CONFIG, tmp_path / "out2", progress=False)
    assert not result.success and "min_test" in {e.key for e in result.failed_expectations()}


def test_isolate_leaves_a_failing_machine_type_out_and_keeps_the_others(tmp_path):
    from asdflow.validation import validate_stage

    make_clean(tmp_path / "data", machines=("fan",))
    for split, domain, label, index in CLEAN_LAYOUT[:2]:  # pump: two 8 kHz source train clips, no test
        write_audio(tmp_path / "data" / "pump" / split / clip_name(split, domain, label, index), noise(index), 8000)
    with pytest.raises(DataError, match="sample rate"):
        validate_stage(tmp_path / "data", CONFIG, tmp_path / "strict")
    result = validate_stage(tmp_path / "data", CONFIG, tmp_path / "fleet", isolate=True)
    assert result.kept_manifest.machine_types() == ["fan"]
    assert set(result.failed_machine_types) == {"pump"}
    assert {"sample_rate", "both_domains[pump/train]"} <= set(result.failed_machine_types["pump"])
    saved = json.loads((tmp_path / "fleet" / "validation.json").read_text())
    assert set(saved["failed_machine_types"]) == {"pump"}
    # nothing passes: no isolation, the run stops
    with pytest.raises(DataError):
        validate_stage(tmp_path / "data" / "pump", CONFIG, tmp_path / "none", isolate=True)


def test_the_validated_manifest_carries_the_fetch_step_s_lineage(tmp_path):
    from asdflow.data.versioning import DataLineage, read_lineage, write_lineage
    from asdflow.validation import validate_stage

    make_clean(tmp_path / "data", machines=("fan",))
    lineage = DataLineage(project="/p", requested="HEAD", commit="a" * 40, data_hash="b" * 32,
                          data_hash_source="dvc@commit")
    write_lineage(tmp_path / "data", lineage)
    validate_stage(tmp_path / "data", CONFIG, tmp_path / "report", manifest_dir=tmp_path / "manifest")
    assert read_lineage(tmp_path / "manifest") == lineage
