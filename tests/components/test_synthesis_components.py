"""tango_finetune and generate_synthetic_normals through .python_func, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Model

import components
from tests.components.conftest import MACHINE, artifact


@pytest.fixture(scope="module")
def synthesis_kwargs(settings):
    # few steps and clips, two prompt strategies: the code path of every profile, at test size
    return settings.with_overrides(synthesis={"steps": 2, "checkpoint_every": 1, "clips_per_strategy": 1,
                                              "strategies": ["template", "metadata"]},
                                   prompts={"strategies": ["template", "metadata"]})


@pytest.fixture(scope="module")
def prompts(settings, fetched, validated, synthesis_kwargs):
    table = artifact(Dataset, settings.work / "prompts_for_tango" / "prompts")
    components.build_prompts.python_func(data=fetched, manifest=validated[0], machine_type=MACHINE, prompts=table,
                                         **synthesis_kwargs)
    return table


@pytest.fixture(scope="module")
def tango(settings, fetched, validated, prompts, synthesis_kwargs):
    model = artifact(Model, settings.work / "tango_finetune" / "model")
    version = components.tango_finetune.python_func(data=fetched, manifest=validated[0], prompts=prompts,
                                                    machine_type=MACHINE, model=model, **synthesis_kwargs)
    return model, version


def test_tango_finetune_saves_and_registers_the_model(tango, registry):
    model, version = tango
    meta = json.loads((Path(model.path) / "model" / "tango.json").read_text())
    assert meta["machine_type"] == MACHINE and meta["steps"] == 2 and model.metadata["version"] == meta["version"]
    assert version and str(registry.get_model_version_by_alias(f"tango-{MACHINE}", "challenger").version) == version
    assert sorted(p.name for p in (Path(model.path) / "checkpoints").iterdir()) == ["step_0000001.pt",
                                                                                  "step_0000002.pt"]


def test_generate_writes_synthetic_training_clips_and_a_quality_report(settings, fetched, validated, prompts, tango,
                                                                       synthesis_kwargs):
    from asdflow.jobs import load_dataset

    synthetic = artifact(Dataset, settings.work / "generate" / "synthetic")
    quality = artifact(Artifact, settings.work / "generate" / "quality")
    components.generate_synthetic_normals.python_func(data=fetched, manifest=validated[0], prompts=prompts,
                                                      model=tango[0], machine_type=MACHINE, synthetic=synthetic,
                                                      quality=quality, **synthesis_kwargs)
    manifest = load_dataset(synthetic.path, progress=False)
    assert len(manifest) == synthetic.metadata["n_clips"] == 2
    assert all(r.synthetic and r.split == "train" and r.label == "normal" for r in manifest.records)
    assert synthetic.metadata["model_version"] == tango[0].metadata["version"]
    assert len(pd.read_csv(Path(synthetic.path) / MACHINE / "metadata.csv")) == 2
    report = json.loads((Path(quality.path) / f"quality_{MACHINE}.json").read_text())
    assert report["n_clips"] == 2 and quality.metadata["synth_n_clips"] == 2
