"""separation_train, denoise_data and train_detector(extra_train=...) through .python_func, on the tiny profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import Dataset, Metrics, Model

import components
from asdflow.data.manifest import Manifest
from asdflow.separation.model import load_separator
from asdflow.separation.stages import STAGE_FILE
from tests.components.conftest import MACHINE, artifact

SEPARATION = {"steps": 2, "eval_mixtures": 2, "segment_seconds": 0.25}


@pytest.fixture(scope="module")
def separator_trained(settings, fetched, validated):
    separator = artifact(Model, settings.work / "separation_train" / "separator")
    metrics = artifact(Metrics, settings.work / "separation_train" / "metrics")
    version = components.separation_train.python_func(
        data=fetched, manifest=validated[0], machine_type=MACHINE, separator=separator, metrics=metrics,
        **settings.with_overrides(separation=SEPARATION))
    return version, separator, metrics


@pytest.fixture(scope="module")
def denoised(settings, fetched, validated, separator_trained):
    separated = artifact(Dataset, settings.work / "denoise" / "separated")
    components.denoise_data.python_func(data=fetched, manifest=validated[0], separator=separator_trained[1],
                                        machine_type=MACHINE, separated=separated, **settings.kwargs())
    return separated


def test_separation_train_outputs_the_separator_and_registers_it(separator_trained, registry):
    version, separator, metrics = separator_trained
    _, info = load_separator(separator.path)
    assert info["config"]["steps"] == SEPARATION["steps"] and info["machine_types"] == [MACHINE]
    assert separator.metadata["version"] == info["version"]
    stage = json.loads((Path(separator.path) / STAGE_FILE).read_text())
    assert stage["evaluation"]["held_out"] is True
    assert metrics.metadata["si_snri_db"] == pytest.approx(stage["evaluation"]["scores"]["separator_si_snri_db"])
    assert "wiener_si_snri_db" in metrics.metadata
    registered = registry.get_model_version_by_alias(f"sep-{MACHINE}", "current")
    assert str(registered.version) == version and registered.tags["separator_version"] == info["version"]


def test_denoise_writes_the_separated_dataset_with_its_manifest(denoised, validated):
    original = Manifest.load(validated[0].path).select(machine_type=MACHINE)
    separated = Manifest.load(denoised.path)  # the artifact is both `data` and `manifest` downstream
    wanted = sorted(r.name for r in original.records if r.split in ("train", "test"))
    assert sorted(r.name for r in separated.records) == wanted
    assert all(Path(r.path).is_relative_to(denoised.path) and Path(r.path).is_file() for r in separated.records)
    assert (Path(denoised.path) / "separation_manifest.json").is_file()
    assert denoised.metadata["n_clips"] == len(wanted) and denoised.metadata["n_problems"] == 0


def test_train_takes_the_separated_clips_as_extra_training_data(settings, fetched, validated, denoised):
    detector = artifact(Model, settings.work / "train_extra" / "detector")
    components.train_detector.python_func(data=fetched, manifest=validated[0], machine_type=MACHINE,
                                          detector=detector, extra_train=denoised, **settings.kwargs())
    fit = json.loads((Path(detector.path) / "detector.json").read_text())["fit_info"]
    n_train = len(Manifest.load(validated[0].path).select(machine_type=MACHINE, split="train").records)
    assert fit["n_clips"] == 2 * n_train


def test_score_clips_scores_the_separated_copies_under_the_same_names(tmp_path, trained, scored, denoised):
    import pandas as pd

    from asdflow.jobs import score_clips

    # under separation.use: separated the pipeline hands the denoised dataset itself to scoring
    result = score_clips(trained.path, Manifest.load(denoised.path), MACHINE, tmp_path, progress=False)
    separated = pd.read_csv(result.scores_csv).set_index("name")["score"]
    original = pd.read_csv(Path(scored.path) / "scores.csv").set_index("name")["score"]
    assert sorted(separated.index) == sorted(original.index)
    assert (separated - original[separated.index]).abs().max() > 0  # other audio, other scores
