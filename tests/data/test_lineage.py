"""Data lineage, resolved for real: a git repo in tmp_path whose data.dvc changes between two commits,
and a working copy whose data.dvc differs from both (the file the old code read)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from asdflow.data.versioning import (
    LINEAGE_FILE,
    WORKSPACE,
    DataLineage,
    read_lineage,
    resolve_data_lineage,
    write_lineage,
)
from asdflow.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")

HASH_V1, HASH_V2, HASH_WORKING = "1" * 32 + ".dir", "2" * 32 + ".dir", "3" * 32 + ".dir"


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def pointer(md5: str) -> str:
    return f"outs:\n- md5: {md5}\n  size: 10\n  nfiles: 1\n  hash: md5\n  path: data\n"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """data.dvc committed at v1 (tagged) and v2 (HEAD), then edited in the working copy, uncommitted."""
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)  # a DVC repo as far as lineage goes: it reads data.dvc only
    git(root, "init", "-q")
    git(root, "config", "user.name", "asdflow test")
    git(root, "config", "user.email", "test@asdflow.invalid")
    git(root, "config", "commit.gpgsign", "false")
    for md5, tag in ((HASH_V1, "v1"), (HASH_V2, "v2")):
        (root / "data.dvc").write_text(pointer(md5))
        git(root, "add", "data.dvc")
        git(root, "commit", "-q", "-m", f"data: {md5}")
        git(root, "tag", tag)
    (root / "data.dvc").write_text(pointer(HASH_WORKING))
    return root


def test_a_revision_resolves_to_its_commit_and_the_hash_committed_there(project):
    v1, v2 = git(project, "rev-parse", "v1"), git(project, "rev-parse", "v2")
    for requested, commit, md5 in (("HEAD", v2, HASH_V2), ("v1", v1, HASH_V1), (v1[:8], v1, HASH_V1),
                                   ("HEAD~1", v1, HASH_V1)):
        lineage = resolve_data_lineage(project, requested)
        assert (lineage.requested, lineage.commit, lineage.data_hash) == (requested, commit, md5), requested
        assert lineage.committed and lineage.data_hash_source == "dvc@commit" and lineage.base_commit is None
    assert len(v1) == 40


def test_a_git_url_resolves_like_the_checkout(project):
    lineage = resolve_data_lineage(f"file://{project}", "v1")
    assert (lineage.commit, lineage.data_hash) == (git(project, "rev-parse", "v1"), HASH_V1)
    assert lineage.project == f"file://{project}"
    with pytest.raises(DataError, match=f"unknown git revision 'v9' in file://{project}"):
        resolve_data_lineage(f"file://{project}", "v9")
    with pytest.raises(DataError, match="cannot read revision 'HEAD' of file:///nonexistent/repo"):
        resolve_data_lineage("file:///nonexistent/repo", "HEAD")


def test_the_workspace_is_recorded_as_such_with_head_beside_it(project, tmp_path):
    lineage = resolve_data_lineage(project, WORKSPACE)
    assert (lineage.commit, lineage.data_hash, lineage.data_hash_source) == (WORKSPACE, HASH_WORKING, "dvc-workspace")
    assert lineage.base_commit == git(project, "rev-parse", "HEAD") and not lineage.committed

    plain = tmp_path / "plain"  # no git, no data.dvc: nothing to name but the folder
    plain.mkdir()
    bare = resolve_data_lineage(plain, WORKSPACE)
    assert (bare.commit, bare.data_hash, bare.data_hash_source, bare.base_commit) == (WORKSPACE, None, None, None)
    with pytest.raises(DataError, match="revision 'workspace' needs a local project folder"):
        resolve_data_lineage("https://example.invalid/repo.git", WORKSPACE)


def test_errors_name_the_revision_and_the_project(project, tmp_path):
    with pytest.raises(DataError, match=f"unknown git revision 'v9' in {project}"):
        resolve_data_lineage(project, "v9")
    first = git(project, "rev-list", "--max-parents=0", "HEAD")
    git(project, "rm", "-q", "--force", "data.dvc")
    git(project, "commit", "-q", "-m", "data gone")
    with pytest.raises(DataError, match=f"revision {git(project, 'rev-parse', 'HEAD')} of {project} has no data.dvc"):
        resolve_data_lineage(project, "HEAD")
    assert resolve_data_lineage(project, first).data_hash == HASH_V1
    with pytest.raises(DataError, match="not a DVC repository"):
        resolve_data_lineage(tmp_path, "HEAD")


def test_lineage_file_round_trips_and_a_broken_one_is_named(tmp_path):
    lineage = DataLineage(requested="HEAD", commit="a" * 40, data_hash=HASH_V1, data_hash_source="dvc@commit",
                          project="/p")
    assert read_lineage(tmp_path) is None
    path = write_lineage(tmp_path, lineage)
    assert path.name == LINEAGE_FILE and path.name.startswith(".")  # a dot file: never taken for a clip
    assert read_lineage(tmp_path) == lineage
    path.write_text('{"requested": "HEAD"}')
    with pytest.raises(DataError, match=f"{path}: not a data lineage record"):
        read_lineage(tmp_path)
