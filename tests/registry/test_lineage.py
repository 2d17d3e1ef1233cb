"""What a registered run records about its code and data, on a real SQLite store and a real git repo:
data.dvc committed at two revisions and edited in the working copy (what the old code read)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from asdflow.data.manifest import Manifest
from asdflow.data.versioning import resolve_data_lineage, write_lineage
from asdflow.errors import DataError
from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest
from asdflow.registry.stages import register_stage
from asdflow.registry.tracking import GIT_COMMIT_ENV, git_commit, manifest_digest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")

MACHINE = "fan"
HASH_V1, HASH_V2, HASH_WORKING = "1" * 32 + ".dir", "2" * 32 + ".dir", "3" * 32 + ".dir"
IMAGE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def data_repo(tmp_path: Path) -> Path:
    """data.dvc committed at v1 and v2 (HEAD), then edited in the working copy, uncommitted."""
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "config", "user.name", "asdflow test")
    git(root, "config", "user.email", "test@asdflow.invalid")
    git(root, "config", "commit.gpgsign", "false")
    for md5, tag in ((HASH_V1, "v1"), (HASH_V2, "v2"), (HASH_WORKING, None)):
        (root / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 10\n  nfiles: 1\n  path: data\n")
        if tag:
            git(root, "add", "data.dvc")
            git(root, "commit", "-q", "-m", f"data: {md5}")
            git(root, "tag", tag)
    return root


class StageInputs:
    """The folders the register step gets: a manifest whose root is the fetched folder, scores, a report."""

    def __init__(self, tmp_path: Path, material):
        self.fetched = tmp_path / "fetched"
        self.fetched.mkdir()
        fan = Manifest(root=str(self.fetched), records=material.fan.records)
        self.manifest = tmp_path / "manifest"
        fan.save(self.manifest)
        self.train = fan.select(split="train")
        self.scores = tmp_path / "scores"
        self.scores.mkdir()
        scores = material.good.scores
        pd.DataFrame({"name": list(scores), "score": list(scores.values())}).to_csv(self.scores / "scores.csv",
                                                                                   index=False)
        self.evaluation = tmp_path / "evaluation"
        self.evaluation.mkdir()
        truth = ground_truth_from_manifest(fan.select(split="test"))
        evaluate_scores(truth, scores).save(self.evaluation / "evaluation.json")
        self.detector = material.good.directory

    def register(self, config, **kwargs):
        return register_stage(self.detector, self.manifest, self.scores, self.evaluation, MACHINE, config, **kwargs)


@pytest.fixture()
def inputs(tmp_path, material) -> StageInputs:
    return StageInputs(tmp_path, material)


def run_and_version_tags(config, registered) -> tuple[dict[str, str], dict[str, str]]:
    client = mlflow.MlflowClient(config.tracking.tracking_uri, registry_uri=config.tracking.tracking_uri)
    version = client.get_model_version(registered.name, registered.version)
    return client.get_run(registered.run_id).data.tags, dict(version.tags)


def test_git_commit_prefers_the_image_commit_then_git(data_repo, tmp_path, monkeypatch):
    head = git(data_repo, "rev-parse", "HEAD")
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    assert git_commit(data_repo) == head
    assert git_commit(tmp_path / "no_such_dir") is None
    monkeypatch.setenv(GIT_COMMIT_ENV, IMAGE_COMMIT)
    assert git_commit(data_repo) == IMAGE_COMMIT and git_commit(tmp_path) == IMAGE_COMMIT
    for placeholder in ("unknown", " "):  # an image built without the build argument
        monkeypatch.setenv(GIT_COMMIT_ENV, placeholder)
        assert git_commit(data_repo) == head


def test_the_run_records_the_commit_fetched_and_the_hash_there(inputs, data_repo, sqlite_config, monkeypatch):
    v1 = git(data_repo, "rev-parse", "v1")
    write_lineage(inputs.fetched, resolve_data_lineage(data_repo, "HEAD~1"))
    # the working directory and project both hold a data.dvc naming other data, and a git HEAD at v2
    monkeypatch.chdir(data_repo)
    monkeypatch.setenv(GIT_COMMIT_ENV, IMAGE_COMMIT)
    registered = inputs.register(sqlite_config, data_version="HEAD~1", project_dir=data_repo)

    run, version = run_and_version_tags(sqlite_config, registered)
    assert (run["data_version"], run["data_revision_requested"], run["data_lineage"]) == (v1, "HEAD~1", "fetched")
    assert (run["dvc_data_hash"], run["data_hash_source"]) == (HASH_V1, "dvc@commit")
    assert run["git_commit"] == run["mlflow.source.git.commit"] == IMAGE_COMMIT
    assert "git_dirty" not in run  # the image's commit says nothing of the checkout around it
    assert "data_base_commit" not in run
    assert (version["data_version"], version["dvc_data_hash"], version["git_commit"]) == (v1, HASH_V1, IMAGE_COMMIT)


def test_the_lineage_handed_over_wins_and_a_foreign_one_is_refused(inputs, data_repo, sqlite_config, monkeypatch):
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    write_lineage(inputs.fetched, resolve_data_lineage(data_repo, "v1"))
    handed = resolve_data_lineage(data_repo, "HEAD").model_dump_json()  # the fetch component's output
    registered = inputs.register(sqlite_config, data_version="HEAD", data_lineage=handed)
    run, _ = run_and_version_tags(sqlite_config, registered)
    assert (run["data_version"], run["dvc_data_hash"]) == (git(data_repo, "rev-parse", "v2"), HASH_V2)

    client = mlflow.MlflowClient(sqlite_config.tracking.tracking_uri)
    experiment = client.get_run(registered.run_id).info.experiment_id
    runs_before = len(client.search_runs([experiment]))
    with pytest.raises(DataError, match=r"data_version is 'v2' but the lineage file in .*fetched says the data "
                                        r"was fetched for 'v1'"):
        inputs.register(sqlite_config, data_version="v2")
    assert len(client.search_runs([experiment])) == runs_before  # refused before anything was logged


def test_without_a_lineage_the_request_and_the_clips_digest_are_recorded(inputs, data_repo, sqlite_config,
                                                                          monkeypatch):
    monkeypatch.chdir(data_repo)
    monkeypatch.setenv(GIT_COMMIT_ENV, "unknown")  # an image built without the build argument: git decides
    registered = inputs.register(sqlite_config, data_version="HEAD", project_dir=data_repo)
    run, version = run_and_version_tags(sqlite_config, registered)
    assert (run["data_version"], run["data_revision_requested"], run["data_lineage"]) == ("HEAD", "HEAD", "unrecorded")
    assert (run["dvc_data_hash"], run["data_hash_source"]) == (manifest_digest(inputs.train), "manifest")
    assert HASH_WORKING not in (run["dvc_data_hash"], version["dvc_data_hash"])
    assert run["git_commit"] == git(data_repo, "rev-parse", "HEAD") and run["git_dirty"] == "true"


def test_workspace_data_records_the_commit_it_sat_beside(inputs, data_repo, sqlite_config, monkeypatch):
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    write_lineage(inputs.fetched, resolve_data_lineage(data_repo, "workspace"))
    registered = inputs.register(sqlite_config, data_version="workspace")
    run, _ = run_and_version_tags(sqlite_config, registered)
    assert (run["data_version"], run["data_lineage"]) == ("workspace", "fetched")
    assert (run["dvc_data_hash"], run["data_hash_source"]) == (HASH_WORKING, "dvc-workspace")
    assert run["data_base_commit"] == git(data_repo, "rev-parse", "HEAD")
