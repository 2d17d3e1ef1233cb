"""DVC data versioning, run for real: git repos in tmp_path, a real local-directory remote."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from asdflow.cli_data_version import data_version
from asdflow.config import DataVersionConfig
from asdflow.data.audio import md5_of, write_audio
from asdflow.data.versioning import (
    WORKSPACE,
    current_data_version,
    ensure_dvc_repo,
    materialize_data,
    version_data,
)
from asdflow.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def write_clips(data: Path, names: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        write_audio(data / "fan" / "train" / name, 0.1 * rng.standard_normal(1600).astype(np.float32), 16000)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): md5_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "asdflow test")
    git(root, "config", "user.email", "test@asdflow.invalid")
    git(root, "config", "commit.gpgsign", "false")
    (root / "README").write_text("a project\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "start")
    write_clips(root / "data", ["section_00_source_train_normal_0000.wav", "section_00_source_train_normal_0001.wav",
                                "section_00_target_train_normal_0000.wav"], seed=0)
    return root


@pytest.fixture()
def cfg(tmp_path: Path) -> DataVersionConfig:
    return DataVersionConfig(local_remote_url=str(tmp_path / "remote"), object_store_url=str(tmp_path / "objstore"))


def test_version_change_and_materialize_each_revision_from_the_remote(project, cfg, tmp_path):
    ensure_dvc_repo(project, cfg)
    dvc_config = (project / ".dvc" / "config").read_text()
    ensure_dvc_repo(project, cfg)  # idempotent
    assert (project / ".dvc" / "config").read_text() == dvc_config
    assert "check_update = false" in dvc_config and "analytics = false" in dvc_config

    first_files = snapshot(project / "data")
    v1 = version_data(project, "data", commit=True, config=cfg)
    assert v1.rev == git(project, "rev-parse", "HEAD")
    assert git(project, "log", "-1", "--format=%s") == f"data: {v1.md5}"
    assert (v1.n_files, v1.path, v1.remote, v1.remote_url) == (3, "data", "local", str(tmp_path / "remote"))
    assert v1.size == sum((project / "data" / name).stat().st_size for name in first_files)
    assert v1.md5 == yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]  # as MLflow tags it
    committed = set(git(project, "show", "--name-only", "--format=", "HEAD").splitlines())
    assert {"data.dvc", ".dvc/config", ".gitignore"} <= committed and not any(p.startswith("data/") for p in committed)
    assert git(project, "status", "--porcelain", "--", "data.dvc", ".dvc") == ""
    assert current_data_version(project, cfg) == v1
    assert (tmp_path / "remote" / "files" / "md5").is_dir()

    # The same data again: no new commit, the same revision.
    assert version_data(project, commit=True, config=cfg).rev == v1.rev

    # Change the data: a new clip, one clip rewritten.
    write_clips(project / "data", ["section_00_source_train_normal_0002.wav"], seed=1)
    write_clips(project / "data", ["section_00_source_train_normal_0000.wav"], seed=2)
    second_files = snapshot(project / "data")
    v2 = version_data(project, message="added clip 0002", commit=True, config=cfg)
    assert v2.rev != v1.rev and v2.md5 != v1.md5 and v2.n_files == 4
    assert git(project, "log", "-1", "--format=%B").splitlines()[::2] == [f"data: {v2.md5}", "added clip 0002"]
    assert current_data_version(project, cfg).rev == v2.rev

    # Workspace copy and cache gone: every version comes back from the remote alone.
    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    out1 = materialize_data(project, v1.rev, tmp_path / "at_v1", cfg)
    (tmp_path / "at_v2").mkdir()  # an empty destination is fine
    out2 = materialize_data(project, v2.rev[:10], tmp_path / "at_v2", cfg)
    assert snapshot(out1) == first_files
    assert snapshot(out2) == second_files
    assert not (project / "data").exists()  # the workspace is left alone
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]  # no staging left behind

    # A step with no checkout reads the same revision through the git URL.
    out3 = materialize_data(f"file://{project}", v1.rev, tmp_path / "via_url", cfg)
    assert snapshot(out3) == first_files


def test_workspace_version_and_materialize(project, cfg, tmp_path):
    ensure_dvc_repo(project, cfg)
    version = version_data(project, config=cfg)  # no commit asked for
    assert version.rev == WORKSPACE and not version.committed
    assert current_data_version(project, cfg).rev == WORKSPACE
    out = materialize_data(project, WORKSPACE, tmp_path / "copy", cfg)
    assert snapshot(out) == snapshot(project / "data")


def test_errors_name_the_revision_and_the_remote(project, cfg, tmp_path):
    with pytest.raises(DataError, match="not a DVC repository"):
        version_data(project, config=cfg)
    ensure_dvc_repo(project, cfg)
    with pytest.raises(DataError, match="no data.dvc"):
        current_data_version(project, cfg)
    version = version_data(project, commit=True, config=cfg)

    with pytest.raises(DataError, match="unknown git revision 'no-such-rev'"):
        materialize_data(project, "no-such-rev", tmp_path / "out", cfg)
    first_commit = git(project, "rev-list", "--max-parents=0", "HEAD")
    with pytest.raises(DataError, match=f"revision {first_commit} .* has no data.dvc"):
        materialize_data(project, first_commit, tmp_path / "out", cfg)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        materialize_data(project, version.rev, tmp_path / "full", cfg)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(DataError, match="DVC remote 'minio' is not configured"):
        materialize_data(project, version.rev, tmp_path / "out", cfg.model_copy(update={"remote": "minio"}))

    # Objects missing from both the cache and the remote.
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(tmp_path / "remote")
    names_both = re.escape(f"revision {version.rev} from DVC remote 'local' ({tmp_path / 'remote'})")
    with pytest.raises(DataError, match=names_both + ".*was it pushed"):
        materialize_data(project, version.rev, tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unreachable_remote_fails_before_commit(project, cfg, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    bad = cfg.model_copy(update={"local_remote_url": str(tmp_path / "a-file" / "remote")})
    ensure_dvc_repo(project, bad)
    head = git(project, "rev-parse", "HEAD")
    with pytest.raises(DataError, match=r"pushing data \(\w+\.dir\) to DVC remote 'local'"):
        version_data(project, commit=True, config=bad)
    assert git(project, "rev-parse", "HEAD") == head  # no commit names data the remote lacks


def test_object_store_remote_is_chosen_by_config(project, cfg, tmp_path, monkeypatch):
    # The object-store remote is declared beside the local one; a config selects it. A
    # local folder stands in for the bucket URL (the same DVC code path minus the SDK).
    ensure_dvc_repo(project, cfg)
    store = cfg.model_copy(update={"remote": "s3"})
    version = version_data(project, commit=True, config=store)
    assert version.remote == "s3" and (tmp_path / "objstore" / "files" / "md5").is_dir()
    assert not (tmp_path / "remote").exists()

    # $DVC_REMOTE_URL (the cluster Secret) overrides the object store's URL.
    monkeypatch.setenv("DVC_REMOTE_URL", str(tmp_path / "bucket"))
    write_clips(project / "data", ["section_00_source_train_normal_0009.wav"], seed=9)
    files = snapshot(project / "data")
    moved = version_data(project, commit=True, config=store)
    assert moved.remote_url == str(tmp_path / "bucket") and (tmp_path / "bucket" / "files" / "md5").is_dir()
    assert git(project, "status", "--porcelain", "--", ".dvc") == ""  # the override stays in git-ignored config.local
    shutil.rmtree(project / ".dvc" / "cache")
    assert snapshot(materialize_data(project, moved.rev, tmp_path / "out", store)) == files


def test_outside_git_only_the_workspace_exists(tmp_path, cfg):
    folder = tmp_path / "plain"
    write_clips(folder / "data", ["section_00_source_train_normal_0000.wav"], seed=0)
    ensure_dvc_repo(folder, cfg)
    assert (folder / ".dvc").is_dir() and not (folder / ".git").exists()
    assert version_data(folder, config=cfg).rev == WORKSPACE
    with pytest.raises(DataError, match="not in a git repository"):
        version_data(folder, commit=True, config=cfg)
    with pytest.raises(DataError, match="not a git repository"):
        materialize_data(folder, "HEAD", tmp_path / "out", cfg)


def test_cli_prints_revision_and_md5(project, cfg, tmp_path, capsys):
    ensure_dvc_repo(project, cfg)
    version = version_data(project, commit=True, config=cfg)
    config_file = tmp_path / "asdflow.yaml"
    config_file.write_text(json.dumps({"data": cfg.model_dump()}))  # JSON is YAML
    data_version(project, config=config_file, profile="tiny", as_json=False)
    printed = capsys.readouterr().out
    assert f"revision: {version.rev}" in printed and f"md5: {version.md5}" in printed
    data_version(project, config=config_file, profile="tiny", as_json=True)
    assert json.loads(capsys.readouterr().out)["rev"] == version.rev


def test_project_dvc_setup_matches_the_config_defaults():
    from configobj import ConfigObj

    defaults = DataVersionConfig()
    project_config = ConfigObj(str(REPO_ROOT / ".dvc" / "config")).dict()
    assert project_config["core"]["remote"] == defaults.remote == defaults.local_remote
    assert project_config[f'remote "{defaults.local_remote}"']["url"] == defaults.local_remote_url
    assert project_config[f'remote "{defaults.object_store_remote}"']["url"] == defaults.object_store_url
    assert project_config["core"]["analytics"] == project_config["core"]["check_update"] == "false"
    ignored = (REPO_ROOT / ".dvc" / ".gitignore").read_text().split()
    assert {"/cache", "/tmp", "/config.local"} <= set(ignored)
    assert "/data/" in (REPO_ROOT / ".gitignore").read_text().split()  # the audio never enters git


def test_data_dir_must_stay_inside_the_project():
    with pytest.raises(ValueError, match="inside the project"):
        DataVersionConfig(data_dir="../elsewhere")
