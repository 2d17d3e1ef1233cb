"""fetch_data records which data it read: a real git + DVC project with two data versions and a
local-directory remote, fetched by an older revision, by HEAD through a git URL, and as the workspace."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import Dataset

import components
from asdflow.config import DataVersionConfig
from asdflow.data.audio import md5_of, write_audio
from asdflow.data.versioning import LINEAGE_FILE, DataLineage, ensure_dvc_repo, read_lineage, version_data
from asdflow.pipeline_ops import encode_overrides

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def write_clip(data: Path, name: str, seed: int) -> None:
    wave = 0.1 * np.random.default_rng(seed).standard_normal(1600).astype(np.float32)
    write_audio(data / "fan" / "train" / name, wave, 16000)


def clips(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): md5_of(p) for p in sorted(folder.rglob("*.wav"))}


def test_fetch_reads_the_resolved_commit_and_records_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    for key, value in (("user.name", "asdflow test"), ("user.email", "test@asdflow.invalid"),
                       ("commit.gpgsign", "false")):
        git(project, "config", key, value)
    cfg = DataVersionConfig(local_remote_url=str(tmp_path / "remote"), object_store_url=str(tmp_path / "objstore"))
    write_clip(project / "data", "section_00_source_train_normal_0000.wav", seed=0)
    ensure_dvc_repo(project, cfg)
    v1 = version_data(project, commit=True, config=cfg)
    first = clips(project / "data")
    write_clip(project / "data", "section_00_source_train_normal_0001.wav", seed=1)
    v2 = version_data(project, commit=True, config=cfg)
    second = clips(project / "data")
    (project / "data.dvc").write_text((project / "data.dvc").read_text().replace(v2.md5, "f" * 32 + ".dir"))
    overrides = encode_overrides({"progress": False, "data": cfg.model_dump()})
    settings = {"config_profile": "tiny", "config_overrides": overrides}

    older = Dataset(name="data", uri=str(tmp_path / "older"))
    returned = components.fetch_data.python_func(project=str(project), data_version="HEAD~1", data=older, **settings)
    lineage = DataLineage.model_validate_json(returned[0])
    assert (lineage.requested, lineage.commit, lineage.data_hash) == ("HEAD~1", v1.rev, v1.md5)
    assert len(lineage.commit) == 40 and lineage.data_hash_source == "dvc@commit"
    assert clips(Path(older.path)) == first and read_lineage(older.path) == lineage
    assert (Path(older.path) / LINEAGE_FILE).is_file()

    # a cluster step has no checkout: HEAD of the git URL, its data.dvc as committed (not the edited one)
    head = Dataset(name="data", uri=str(tmp_path / "head"))
    returned = components.fetch_data.python_func(project=f"file://{project}", data_version="HEAD", data=head,
                                                 **settings)
    lineage = DataLineage.model_validate_json(returned[0])
    assert (lineage.commit, lineage.data_hash) == (v2.rev, v2.md5) == (git(project, "rev-parse", "HEAD"), v2.md5)
    assert clips(Path(head.path)) == second


def test_fetching_the_workspace_says_so(fetched, settings):
    lineage = read_lineage(fetched.path)
    assert (lineage.requested, lineage.commit, lineage.project) == ("workspace", "workspace", str(settings.project))
    assert lineage.data_hash is None and not lineage.committed  # the tiny project has no data.dvc
