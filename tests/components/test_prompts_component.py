"""build_prompts through .python_func on the tiny profile: the prompt table as a Dataset artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Dataset

import components
from asdflow.errors import ConfigError
from asdflow.pipeline_ops import encode_overrides

MACHINE = "fan"


def dataset(path: Path) -> Dataset:
    return Dataset(name=path.name, uri=str(path))


@pytest.fixture(scope="module")
def inputs(tiny_dataset, tiny_manifest, tmp_path_factory):
    manifest_dir = tmp_path_factory.mktemp("prompts_manifest")
    tiny_manifest.select(machine_type=MACHINE).save(manifest_dir)
    return dataset(tiny_dataset), dataset(manifest_dir)


def run(inputs, out: Path, **overrides) -> Dataset:
    data, manifest = inputs
    prompts = dataset(out)
    components.build_prompts.python_func(data=data, manifest=manifest, machine_type=MACHINE, config_profile="tiny",
                                         config_overrides=encode_overrides({"progress": False, **overrides}),
                                         prompts=prompts)
    return prompts


def test_tiny_profile_writes_every_strategy(inputs, tmp_path):
    prompts = run(inputs, tmp_path / "prompts")
    table = pd.read_csv(Path(prompts.path) / "prompts.csv")
    assert list(table.columns) == ["clip", "machine_type", "strategy", "text", "score"]
    assert table.groupby("strategy").size().to_dict() == {"clap_ranked": 8, "metadata": 8, "spectral": 8, "template": 8}
    assert prompts.metadata == {"machine_type": MACHINE, "n_clips": 8,
                                "rows_per_strategy": {"template": 8, "spectral": 8, "metadata": 8, "clap_ranked": 8}}
    summary = json.loads((Path(prompts.path) / "prompts_summary.json").read_text())
    assert summary["clap"]["checkpoints"] == ["tiny-random"]


def test_a_transformers_clap_from_a_local_directory(inputs, tmp_path):
    """The same random weights written to disk and read by the transformers backend score exactly as the
    in-memory random backend of the tiny profile."""
    from asdflow.prompts.clap import save_tiny_clap

    model_dir = save_tiny_clap(tmp_path / "clap", seed=0)
    checkpoint = {"name": "local", "backend": "transformers", "path": str(model_dir)}
    disk = run(inputs, tmp_path / "disk", prompts={"strategies": ["clap_ranked"], "clap": {"checkpoints": [checkpoint]}})
    memory = run(inputs, tmp_path / "memory", prompts={"strategies": ["clap_ranked"]})
    a, b = (pd.read_csv(Path(p.path) / "prompts.csv") for p in (disk, memory))
    assert len(a) == 8 and list(a["text"]) == list(b["text"])
    pd.testing.assert_series_equal(a["score"], b["score"], atol=1e-5)


def test_a_missing_clap_checkpoint_stops_the_step(inputs, tmp_path):
    checkpoint = {"name": "630k-best", "backend": "laion_clap", "path": str(tmp_path / "630k-best.pt")}
    with pytest.raises(ConfigError, match="CLAP checkpoint not found"):
        run(inputs, tmp_path / "p", prompts={"clap": {"checkpoints": [checkpoint]}})
    assert not (tmp_path / "p" / "prompts.csv").exists()
