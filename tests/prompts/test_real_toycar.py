"""Two real DCASE 2023 ToyCar clips: the metadata caption reads their file-name attributes right."""

from __future__ import annotations

import pytest

from asdflow.data.dcase_reader import build_manifest
from asdflow.prompts import write_prompt_table

EXPECTED = {
    "section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav":
        "This is the normal sound of a toy car with model C2 and speed 31V, recorded by microphone 1.",
    "section_00_source_train_normal_0835_car_D2_spd_34V_mic_1.wav":
        "This is the normal sound of a toy car with model D2 and speed 34V, recorded by microphone 1.",
}


def test_metadata_captions_of_real_toycar_clips(real_data, tiny_config, tmp_path):
    source = real_data / "dcase2023t2_dev" / "ToyCar" / "train"
    clips = [source / name for name in EXPECTED]
    if not all(c.is_file() for c in clips):
        pytest.skip(f"the two ToyCar clips are absent from {source}")
    train = tmp_path / "data" / "ToyCar" / "train"
    train.mkdir(parents=True)
    for clip in clips:
        (train / clip.name).symlink_to(clip)
    manifest = build_manifest(tmp_path / "data", compute_md5=False, progress=False)
    run = write_prompt_table(tmp_path / "out", "ToyCar", tiny_config, manifest=manifest,
                             strategies=["template", "metadata", "spectral"])
    rows = run.table.set_index(["clip", "strategy"])["text"]
    for name, caption in EXPECTED.items():
        assert rows[(name, "metadata")] == caption
        assert rows[(name, "template")] == "The normal condition machine sound of toy car."
        assert rows[(name, "spectral")].startswith("The normal condition machine sound of toy car, with ")
    assert run.summary["problems"] == [] and run.summary["clips_without_attributes"] == 0
