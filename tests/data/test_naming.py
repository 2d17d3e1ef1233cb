"""parse_clip_name on every DCASE naming, including the real 2023 names."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from asdflow.data.naming import parse_attributes, parse_clip_name

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "dcase2023t2_dev"


@pytest.mark.parametrize(
    ("name", "attributes"),
    [
        # DCASE 2023 names of every machine type of the real set
        ("section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav", {"car": "C2", "spd": "31V", "mic": "1"}),
        ("section_00_target_test_anomaly_0007_car_A2_spd_6_mic_2.wav", {"car": "A2", "spd": "6", "mic": "2"}),
        ("section_00_source_test_normal_0001_vel_16_loc_A.wav", {"vel": "16", "loc": "A"}),
        ("section_00_target_test_normal_0003_m-n_W.wav", {"m-n": "W"}),
        ("section_00_source_train_normal_0004_volt_1.5_wt_130.wav", {"volt": "1.5", "wt": "130"}),
        ("section_00_source_train_normal_0005_vel_490_ac_0.05.wav", {"vel": "490", "ac": "0.05"}),
        ("section_00_source_test_anomaly_0049_pat_00.wav", {"pat": "00"}),
        # no attributes at all, and the DCASE 2024 marker for it
        ("section_00_source_test_normal_0000.wav", {}),
        ("section_01_target_train_normal_0003_noAttribute.wav", {}),
        # 2021 style: a value-less trailing token
        ("section_00_source_train_normal_0000_strength_1_ambient.wav", {"strength": "1", "tag": "ambient"}),
    ],
)
def test_dcase2021_plus_names(name: str, attributes: dict[str, str]) -> None:
    parsed = parse_clip_name(name)
    assert parsed is not None
    assert parsed.naming == "dcase2021+"
    assert parsed.attributes == attributes
    assert list(parsed.attributes) == list(attributes)  # order kept


def test_dcase2021_plus_fields() -> None:
    parsed = parse_clip_name("section_02_target_test_anomaly_0042_car_A1_spd_28V_mic_1.wav")
    assert parsed is not None
    assert (parsed.section, parsed.domain, parsed.split, parsed.label, parsed.index) == ("02", "target", "test", "anomaly", "0042")
    assert parsed.supplemental_kind is None
    assert parsed.attribute_string == "car_A1_spd_28V_mic_1"


def test_eval_names_are_unlabelled_test_clips() -> None:
    for name, section in [("section_03_0012.wav", "03"), ("id_05_00000123.wav", "05")]:
        parsed = parse_clip_name(name)
        assert parsed is not None
        assert parsed.naming == "eval"
        assert parsed.section == section
        assert parsed.split == "test"
        assert parsed.domain is None and parsed.label is None
        assert parsed.attributes == {}


def test_dcase2021_eval_names_keep_their_domain_and_no_label() -> None:
    for name, domain in [("section_03_source_test_0000.wav", "source"), ("section_05_target_test_0199.WAV", "target")]:
        parsed = parse_clip_name(name)
        assert parsed is not None, name
        assert (parsed.naming, parsed.split, parsed.domain, parsed.label) == ("eval", "test", domain, None)
    assert parse_clip_name("section_03_source_test_0000.wav").section == "03"
    assert parse_clip_name("section_03_source_train_0000.wav") is None  # an eval clip is a test clip


def test_dcase2020_names_map_id_to_section_and_source_domain() -> None:
    parsed = parse_clip_name("anomaly_id_04_00000017.wav")
    assert parsed is not None
    assert (parsed.naming, parsed.section, parsed.label, parsed.domain, parsed.index) == ("dcase2020", "04", "anomaly", "source", "00000017")
    assert parsed.split is None  # 2020 names do not say the split: the folder does
    assert parse_clip_name("normal_id_00_00000000.wav").label == "normal"


def test_supplemental_names() -> None:
    clean = parse_clip_name("section_00_source_supplemental_clean_0003_spd_28V.wav")
    noise = parse_clip_name("section_01_target_supplemental_noise_0010.wav")
    assert clean is not None and noise is not None
    assert (clean.naming, clean.split, clean.supplemental_kind, clean.domain, clean.label) == ("supplemental", "supplemental", "clean", "source", None)
    assert clean.attributes == {"spd": "28V"}
    assert (noise.section, noise.supplemental_kind, noise.domain, noise.attributes) == ("01", "noise", "target", {})


@pytest.mark.parametrize(
    "name",
    [
        "section_0_source_train_normal_0000.wav",  # one-digit section
        "section_00_source_train_normal.wav",  # no index
        "section_00_sauce_train_normal_0000.wav",  # unknown domain
        "section_00_source_validation_normal_0000.wav",  # unknown split
        "section_00_source_train_broken_0000.wav",  # unknown label
        "section_00_source_train_normal_0000_pat__00.wav",  # empty attribute token
        "section_00_source_train_normal_0000.flac",
        "normal_00000000.wav",
        "recording.wav",
        "",
    ],
)
def test_unparseable_names_give_none(name: str) -> None:
    assert parse_clip_name(name) is None


def test_attribute_rules() -> None:
    assert parse_attributes("a_1_a_2_a_3") == {"a": "1", "a_2": "2", "a_3": "3"}  # repeated keys kept, renamed
    assert parse_attributes("tag_x_y") == {"tag": "x", "tag_2": "y"}
    assert parse_attributes("noAttributes") == {}
    assert parse_attributes("") == {}
    assert parse_attributes("a__b") is None


def test_wav_extension_case_insensitive() -> None:
    parsed = parse_clip_name("section_00_source_train_normal_0000_pat_00.WAV")
    assert parsed is not None and parsed.attributes == {"pat": "00"}


@pytest.mark.real_data
def test_every_real_name_parses_as_labels_csv_says() -> None:
    labels = REAL / "labels.csv"
    if not labels.exists():
        pytest.skip(f"{labels} absent")
    rows = list(csv.DictReader(labels.open()))
    assert len(rows) == 226
    for row in rows:
        parsed = parse_clip_name(Path(row["path"]).name)
        assert parsed is not None, row["path"]
        assert f"section_{parsed.section}" == row["section"]
        assert (parsed.domain, parsed.split, parsed.label) == (row["domain"], row["split"], row["label"])
        assert parsed.attribute_string == row["attributes"]
        assert "_".join(f"{k}_{v}" for k, v in parsed.attributes.items()) == row["attributes"]
