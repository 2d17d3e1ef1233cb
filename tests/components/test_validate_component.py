"""validate_data through .python_func: a manifest for later stages, reports, and a hard stop on bad clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import Artifact, Dataset

import components
from asdflow.data.audio import write_audio
from asdflow.data.manifest import Manifest
from asdflow.errors import DataError

SILENT = "section_00_source_test_normal_9999_speed_1000_load_50_bg_factory.wav"


def test_manifest_names_the_fetched_clips_of_the_machine_type(validated, fetched):
    manifest, report = validated
    loaded = Manifest.load(manifest.path)
    assert loaded.machine_types() == ["fan"] and len(loaded) > 0
    assert all(Path(r.path).is_relative_to(fetched.path) and Path(r.path).is_file() for r in loaded.records)
    assert {r.split for r in loaded.records} == {"train", "test", "supplemental"}
    assert manifest.metadata == {"n_clips": len(loaded), "n_quarantined": 0, "machine_types": ["fan"],
                                 "failed_machine_types": []}
    summary = json.loads((Path(report.path) / "validation.json").read_text())
    assert summary["success"] is True
    assert (Path(report.path) / "validation.html").stat().st_size > 0


@pytest.fixture
def data_with_a_silent_clip(fetched, tmp_path) -> Dataset:
    root = tmp_path / "data"
    shutil.copytree(Path(fetched.path) / "fan", root / "fan")
    write_audio(root / "fan" / "test" / SILENT, np.zeros(16000, dtype=np.float32), 16000)
    return Dataset(name="data", uri=str(root))


def test_a_silent_clip_stops_the_step_and_is_named(settings, data_with_a_silent_clip, tmp_path):
    manifest, report = Dataset(uri=str(tmp_path / "m")), Artifact(uri=str(tmp_path / "r"))
    with pytest.raises(DataError, match=SILENT.removesuffix(".wav")):
        components.validate_data.python_func(data=data_with_a_silent_clip, machine_type="fan", manifest=manifest,
                                             report=report, **settings.kwargs())
    assert not (tmp_path / "m" / "manifest.csv").exists(), "no manifest for later stages after a failure"
    assert SILENT in (tmp_path / "r" / "validation.json").read_text()


def test_quarantine_leaves_the_silent_clip_out_and_goes_on(settings, data_with_a_silent_clip, tmp_path):
    manifest, report = Dataset(uri=str(tmp_path / "m")), Artifact(uri=str(tmp_path / "r"))
    components.validate_data.python_func(data=data_with_a_silent_clip, machine_type="fan", manifest=manifest,
                                         report=report, **settings.with_overrides(validation={"quarantine": True}))
    kept = Manifest.load(manifest.path)
    assert SILENT not in {r.name for r in kept.records} and len(kept) > 0
    assert manifest.metadata["n_quarantined"] == 1
    quarantined = json.loads((tmp_path / "r" / "quarantine.json").read_text())
    assert SILENT in json.dumps(quarantined)
