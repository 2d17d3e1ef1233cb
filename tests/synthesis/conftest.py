"""Shared for the synthesis tests: one tiny fan dataset, its prompt table, one tiny fine-tuned Tango."""

from __future__ import annotations

from pathlib import Path

import pytest

MACHINE = "fan"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared machine they only contend."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synth_config(tmp_path_factory):
    from asdflow.config import load_config

    store = tmp_path_factory.mktemp("tango_mlruns")
    return load_config(profile="tiny", overrides={
        "progress": False,
        "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": str(store / "artifacts")},
        "synth": {"machine_types": [MACHINE], "n_train_source": 4, "n_train_target": 2, "n_test_per_condition": 1},
        # two strategies that need no audio analysis keep the tests fast; the rest is the same code path
        "synthesis": {"strategies": ["template", "metadata"], "max_clips": 4},
    })


@pytest.fixture(scope="session")
def fan_data(tmp_path_factory, synth_config) -> Path:
    from asdflow.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("tango_data")
    synthesize_dataset(synth_config.synth, root, progress=False)
    return root


@pytest.fixture(scope="session")
def fan_manifest(fan_data):
    from asdflow.data.dcase_reader import build_manifest

    return build_manifest(fan_data, progress=False)


@pytest.fixture(scope="session")
def clap():
    from asdflow.prompts.clap import tiny_clap

    return tiny_clap(0)


@pytest.fixture(scope="session")
def prompt_table(fan_manifest, synth_config, clap):
    from asdflow.prompts import build_prompt_table

    return build_prompt_table(fan_manifest, MACHINE, synth_config, ["template", "metadata"], scorers=[clap])


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory, fan_manifest, synth_config, prompt_table):
    from asdflow.synthesis.finetune import finetune_tango

    out = tmp_path_factory.mktemp("tango_finetune")
    return finetune_tango(fan_manifest, MACHINE, synth_config, out, prompt_table)
