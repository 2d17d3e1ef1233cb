"""build_manifest on a tiny DCASE layout made here, and on the real DCASE 2023 clips."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdflow.data.audio import write_audio
from asdflow.data.dcase_reader import build_manifest, summarize_manifest, write_manifest_report
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "dcase2023t2_dev"


def _clip(path: Path, seconds: float = 0.5, sr: int = 16000, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    wav = rng.uniform(-0.3, 0.3, size=(int(sr * seconds), channels)).astype(np.float32)
    return write_audio(path, wav[:, 0] if channels == 1 else wav, sr)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    fan = root / "fan"
    _clip(fan / "train" / "section_00_source_train_normal_0000_m-n_W.wav", seed=1)
    _clip(fan / "train" / "section_00_target_train_normal_0000_m-n_X.wav", seed=2)
    _clip(fan / "train" / "section_00_source_test_normal_0001_m-n_W.wav", seed=3)  # test name in train/
    _clip(fan / "train" / "recording_42.wav", seed=4)  # fits no naming
    (fan / "train" / "notes.txt").write_text("not audio, ignored")
    (fan / "train" / "section_00_source_train_normal_0009.flac").write_bytes(b"fLaC")  # audio, not wav
    _clip(fan / "train" / "extra" / "section_00_source_train_normal_0010.wav", seed=5)  # too deep
    _clip(fan / "test" / "section_00_source_test_anomaly_0000_m-n_W.wav", seed=6)
    _clip(fan / "test" / "section_00_0001.wav", seed=7)  # unlabelled eval clip
    _clip(fan / "test" / "section_01_target_test_normal_0002_m-n_Y.wav", sr=22050, channels=2, seconds=0.25, seed=8)
    (fan / "test" / "section_00_source_test_normal_0003_m-n_W.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    sf.write(str(fan / "test" / "section_00_source_test_normal_0004_m-n_W.wav"), np.zeros(0), 16000, subtype="PCM_16")
    _clip(fan / "supplemental" / "section_00_source_supplemental_clean_0000_m-n_W.wav", seed=9)
    _clip(fan / "supplemental" / "section_00_target_supplemental_noise_0001.wav", seed=10)
    (fan / "attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "fan/train/section_00_source_train_normal_0000_m-n_W.wav,m-n,W,load,high\n"  # root-relative
        "test/section_00_source_test_anomaly_0000_m-n_W.wav,m-n,V,,\n"  # machine-relative, overrides W
        "train/section_00_source_train_normal_0099_m-n_W.wav,m-n,W,,\n"  # no such file
        "test/section_00_source_test_normal_0003_m-n_W.wav,m-n,W,,\n"  # the corrupt one: already a problem
        "train/notes.txt,m-n,W,,\n"  # exists, but is no clip
        "section_00_target_train_normal_0000_m-n_X.wav,m-n,X,mic,2\n"  # a bare clip name
    )
    pump = root / "pump"  # DCASE 2020 naming
    _clip(pump / "train" / "normal_id_00_00000000.wav", seed=11)
    _clip(pump / "test" / "anomaly_id_02_00000001.wav", seed=12)
    _clip(pump / "supplemental" / "normal_id_00_00000002.wav", seed=13)  # not a supplemental name
    valve = root / "valve"  # DCASE 2021 domain folders
    _clip(valve / "source_test" / "section_00_source_test_normal_0000_pat_00.wav", seed=14)
    _clip(valve / "target_test" / "section_00_source_test_normal_0001_pat_01.wav", seed=15)  # domain mismatch
    _clip(root / "loose.wav", seed=16)  # outside any machine folder
    (root / ".download").mkdir()
    _clip(root / ".download" / "section_00_source_train_normal_0000.wav", seed=17)  # hidden: not data
    return root


def _problems(manifest: Manifest, root: Path) -> dict[str, str]:
    return {str(Path(p.path).relative_to(root)): p.reason for p in manifest.problems}


def test_records_and_every_field(dataset: Path) -> None:
    manifest = build_manifest(dataset, progress=False)
    names = [(r.machine_type, str(Path(r.path).relative_to(dataset))) for r in manifest.records]
    assert names == [
        ("fan", "fan/supplemental/section_00_source_supplemental_clean_0000_m-n_W.wav"),
        ("fan", "fan/supplemental/section_00_target_supplemental_noise_0001.wav"),
        ("fan", "fan/test/section_00_0001.wav"),
        ("fan", "fan/test/section_00_source_test_anomaly_0000_m-n_W.wav"),
        ("fan", "fan/test/section_01_target_test_normal_0002_m-n_Y.wav"),
        ("fan", "fan/train/section_00_source_train_normal_0000_m-n_W.wav"),
        ("fan", "fan/train/section_00_target_train_normal_0000_m-n_X.wav"),
        ("pump", "pump/test/anomaly_id_02_00000001.wav"),
        ("pump", "pump/train/normal_id_00_00000000.wav"),
        ("valve", "valve/source_test/section_00_source_test_normal_0000_pat_00.wav"),
    ]
    assert manifest.root == str(dataset)
    by_name = {r.name: r for r in manifest.records}

    train = by_name["section_00_source_train_normal_0000_m-n_W.wav"]
    assert Path(train.path).is_absolute() and Path(train.path).exists()
    assert (train.section, train.domain, train.split, train.label, train.naming) == ("00", "source", "train", "normal", "dcase2021+")
    assert train.attributes == {"m-n": "W", "load": "high"}  # from attributes_00.csv
    assert (train.sample_rate, train.channels, train.duration) == (16000, 1, 0.5)
    assert train.md5 == hashlib.md5(Path(train.path).read_bytes()).hexdigest()
    assert train.supplemental_kind is None and train.synthetic is False

    assert by_name["section_00_target_train_normal_0000_m-n_X.wav"].attributes == {"m-n": "X", "mic": "2"}  # bare csv name
    assert by_name["section_00_source_test_anomaly_0000_m-n_W.wav"].attributes == {"m-n": "V"}  # csv wins

    stereo = by_name["section_01_target_test_normal_0002_m-n_Y.wav"]
    assert (stereo.section, stereo.domain, stereo.label, stereo.split) == ("01", "target", "normal", "test")
    assert (stereo.sample_rate, stereo.channels, stereo.duration) == (22050, 2, pytest.approx(0.25, abs=1e-4))

    unlabelled = by_name["section_00_0001.wav"]
    assert (unlabelled.naming, unlabelled.split, unlabelled.domain, unlabelled.label) == ("eval", "test", None, None)
    assert not unlabelled.is_labelled

    clean = by_name["section_00_source_supplemental_clean_0000_m-n_W.wav"]
    noise = by_name["section_00_target_supplemental_noise_0001.wav"]
    assert (clean.split, clean.supplemental_kind, clean.label, clean.naming) == ("supplemental", "clean", None, "supplemental")
    assert (noise.supplemental_kind, noise.domain, noise.attributes) == ("noise", "target", {})

    old = by_name["anomaly_id_02_00000001.wav"]
    assert (old.naming, old.section, old.domain, old.split, old.label) == ("dcase2020", "02", "source", "test", "anomaly")
    assert by_name["normal_id_00_00000000.wav"].split == "train"  # the folder gives a 2020 clip its split

    assert by_name["section_00_source_test_normal_0000_pat_00.wav"].split == "test"  # source_test/ -> test


def test_every_problem_is_listed_with_its_reason(dataset: Path) -> None:
    problems = _problems(build_manifest(dataset, progress=False), dataset)
    expected = {
        "fan/train/section_00_source_test_normal_0001_m-n_W.wav": "split mismatch",
        "fan/train/recording_42.wav": "fits no DCASE naming",
        "fan/train/section_00_source_train_normal_0009.flac": "not a wav file",
        "fan/train/extra/section_00_source_train_normal_0010.wav": "not in the DCASE layout",
        "fan/test/section_00_source_test_normal_0003_m-n_W.wav": "not a readable audio file",
        "fan/test/section_00_source_test_normal_0004_m-n_W.wav": "empty audio",
        "fan/train/section_00_source_train_normal_0099_m-n_W.wav": "listed in attributes_00.csv (line 4) but missing on disk",
        "pump/supplemental/normal_id_00_00000002.wav": "split mismatch",
        "valve/target_test/section_00_source_test_normal_0001_pat_01.wav": "domain mismatch",
        "loose.wav": "outside any machine folder",
        "fan/train/notes.txt": "listed in attributes_00.csv (line 6) but is not a clip of this dataset",
    }
    assert set(problems) == set(expected)
    for path, fragment in expected.items():
        assert fragment in problems[path], (path, problems[path])
    # every wav on disk (hidden ones aside) is either a record or a problem
    manifest = build_manifest(dataset, progress=False)
    accounted = {Path(r.path) for r in manifest.records} | {Path(p.path) for p in manifest.problems}
    on_disk = {p for p in dataset.rglob("*.wav") if ".download" not in p.parts}
    assert on_disk <= accounted


def test_machine_type_selection_and_single_machine_root(dataset: Path) -> None:
    only_pump = build_manifest(dataset, machine_types=["pump"], progress=False)
    assert only_pump.machine_types() == ["pump"] and len(only_pump) == 2
    assert [Path(p.path).name for p in only_pump.problems] == ["loose.wav", "normal_id_00_00000002.wav"]
    with pytest.raises(DataError, match="no folder for machine type\\(s\\) drill"):
        build_manifest(dataset, machine_types=["drill"], progress=False)
    single = build_manifest(dataset / "pump", progress=False)  # a machine folder as root
    assert single.machine_types() == ["pump"] and len(single) == 2


def test_without_headers_or_md5(dataset: Path) -> None:
    manifest = build_manifest(dataset, machine_types=["fan"], read_headers=False, compute_md5=False, progress=False)
    assert all(r.sample_rate is None and r.md5 is None and r.duration is None for r in manifest.records)
    # unread headers cannot catch the corrupt and the empty file: they stay records
    assert len(manifest.records) == 9


def test_bad_roots_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_manifest(tmp_path / "nowhere", progress=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        build_manifest(tmp_path / "file.txt", progress=False)
    empty = tmp_path / "empty"
    (empty / "fan" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no audio clips found"):
        build_manifest(empty, progress=False)


def test_malformed_attributes_csv_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _clip(root / "fan" / "train" / "section_00_source_train_normal_0000_m-n_W.wav")
    (root / "fan" / "attributes_00.csv").write_text("name,attr\nx,y\n")
    manifest = build_manifest(root, progress=False)
    assert len(manifest) == 1 and manifest.records[0].attributes == {"m-n": "W"}
    assert [(Path(p.path).name, "no 'file_name' column" in p.reason) for p in manifest.problems] == [("attributes_00.csv", True)]


def test_manifest_round_trip_and_report(dataset: Path, tmp_path: Path) -> None:
    manifest = build_manifest(dataset, progress=False)
    manifest.save(tmp_path / "out")
    again = Manifest.load(tmp_path / "out")
    # pandas writes floats with 16 significant digits: the duration may move in its last bit
    assert [r.model_dump(exclude={"duration"}) for r in again.records] == [r.model_dump(exclude={"duration"}) for r in manifest.records]
    assert [r.duration for r in again.records] == pytest.approx([r.duration for r in manifest.records], rel=1e-12)
    assert again.problems == manifest.problems
    report_path = write_manifest_report(manifest, tmp_path / "out")
    report = json.loads(report_path.read_text())
    assert report == json.loads(json.dumps(summarize_manifest(manifest)))
    assert report["clips"] == 10 and report["problem_count"] == 11
    fan = report["machine_types"]["fan"]
    assert fan["split"] == {"supplemental": 2, "test": 3, "train": 2}
    assert fan["split/domain/label"]["test/None/None"] == 1
    assert fan["section"] == {"00": 6, "01": 1}


def test_order_is_deterministic(dataset: Path) -> None:
    first = build_manifest(dataset, progress=False)
    second = build_manifest(dataset, progress=False)
    assert first.model_dump() == second.model_dump()


@pytest.mark.real_data
def test_real_dcase2023_clips_match_labels_csv() -> None:
    labels = REAL / "labels.csv"
    if not labels.exists():
        pytest.skip(f"{labels} absent")
    manifest = build_manifest(REAL, progress=False)
    assert manifest.problems == []
    rows = {row["path"]: row for row in csv.DictReader(labels.open())}
    assert len(manifest) == len(rows) == 226
    root = REAL.resolve()
    for record in manifest.records:
        row = rows[Path(record.path).resolve().relative_to(root).as_posix()]
        assert record.machine_type == row["machine"]
        assert f"section_{record.section}" == row["section"]
        assert (record.domain, record.split, record.label) == (row["domain"], row["split"], row["label"])
        assert "_".join(f"{k}_{v}" for k, v in record.attributes.items()) == row["attributes"]
        assert (record.sample_rate, record.channels) == (int(row["sr"]), int(row["channels"]))
        assert record.duration == pytest.approx(float(row["duration_s"]))
        assert record.md5 == row["md5"]
        assert record.naming == "dcase2021+"
    valve_test = manifest.select(machine_type="valve", split="test")
    assert len(valve_test) == 200
    for domain, patterns in (("source", {"00", "01"}), ("target", {"02", "03"})):
        assert {r.attributes["pat"] for r in valve_test.records if r.domain == domain} == patterns
