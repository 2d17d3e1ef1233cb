"""Fixtures shared across the suite: tiny configs and a tiny synthetic dataset, made once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT / ".." / "shared" / "data" / "real"
# components/ and pipelines/ are imported from the repo root, as KFP and the CLI do.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def tiny_config():
    from asdflow.config import load_config

    return load_config(profile="tiny", overrides={"progress": False})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config) -> Path:
    """fan + pump, tiny counts, obvious anomalies (severity 1): a detector must separate them."""
    from asdflow.data.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("tiny_dataset")
    synth = tiny_config.synth.model_copy(update={"severity": 1.0, "n_train_source": 12})
    synthesize_dataset(synth, root, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_manifest(tiny_dataset):
    from asdflow.data.dcase_reader import build_manifest

    return build_manifest(tiny_dataset, progress=False)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL_DATA / "dcase2023t2_dev").is_dir():
        pytest.skip(f"real DCASE clips absent: {REAL_DATA} (../shared beside the repo)")
    return REAL_DATA
