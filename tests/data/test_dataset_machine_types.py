"""asdflow.data.dataset_machine_types: the machine types a dataset holds at a revision, for real
(a git repository with `dvc init`, data pushed to a local-directory remote)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asdflow.data.dataset_machine_types import machine_types_at
from asdflow.data.versioning import WORKSPACE
from asdflow.errors import DataError
from tests.data.dvc_project import CLIP, DcaseDvcProject, git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")


@pytest.fixture(scope="module")
def revisions(tmp_path_factory) -> tuple[DcaseDvcProject, str, str]:
    """Revision A: fan (train) and valve (test only); revision B adds bearing."""
    project = DcaseDvcProject(tmp_path_factory.mktemp("machine_types"))
    project.add_machine("valve", split="test")
    rev_a = project.commit("fan")
    rev_b = project.commit("bearing")
    return project, rev_a, rev_b


def test_each_revision_lists_its_own_machine_types(revisions):
    project, rev_a, rev_b = revisions
    assert machine_types_at(project.path, project.config, rev_a) == ["fan", "valve"]
    assert machine_types_at(project.path, project.config, rev_b) == ["bearing", "fan", "valve"]
    assert machine_types_at(project.path, project.config, rev_a[:8]) == ["fan", "valve"]  # any git revision
    assert machine_types_at(project.path, project.config, "HEAD") == ["bearing", "fan", "valve"]


def test_workspace_is_the_folder_as_it_is(revisions, tmp_path):
    project, rev_a, _ = revisions
    copy = tmp_path / "copy"
    shutil.copytree(project.path, copy)  # the shared project stays as it was committed
    (copy / "data" / "ToyCar" / "test").mkdir(parents=True)  # an empty test folder still names a machine
    (copy / "data" / "notes").mkdir()  # a folder without train/test is not a machine type
    (copy / "data" / "notes" / "README").write_text("x")
    (copy / "data" / ".cache" / "train").mkdir(parents=True)  # hidden folders are not data
    (copy / "data" / "pump" / "supplemental").mkdir(parents=True)  # supplemental alone is no machine type
    assert machine_types_at(copy, project.config, WORKSPACE) == ["ToyCar", "bearing", "fan", "valve"]
    assert machine_types_at(copy, project.config) == ["ToyCar", "bearing", "fan", "valve"]  # the default
    # the committed revisions do not see the uncommitted folders
    assert machine_types_at(copy, project.config, rev_a) == ["fan", "valve"]


def test_a_project_without_git_or_dvc_has_only_the_workspace(tmp_path):
    (tmp_path / "data" / "fan" / "train").mkdir(parents=True)
    (tmp_path / "data" / "slider" / "source_test").mkdir(parents=True)  # DCASE 2021's test folders count
    assert machine_types_at(tmp_path) == ["fan", "slider"]
    with pytest.raises(DataError, match=r"data at revision 'HEAD': .* is not a DVC repository"):
        machine_types_at(tmp_path, rev="HEAD")


def test_without_the_cache_the_listing_comes_from_the_remote_and_a_git_url_works(revisions, tmp_path):
    project, rev_a, rev_b = revisions
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.path), str(clone))  # a fresh checkout: no DVC cache, no data
    assert not (clone / "data").exists() and not (clone / ".dvc" / "cache").exists()
    assert machine_types_at(clone, project.config, rev_a) == ["fan", "valve"]
    assert not (clone / "data").exists(), "nothing is checked out"
    assert machine_types_at(f"file://{project.path}", project.config, rev_b) == ["bearing", "fan", "valve"]


def test_clear_errors_name_the_folder_and_the_revision(revisions, tmp_path):
    project, rev_a, _ = revisions
    config = project.config
    with pytest.raises(DataError, match=r"data at revision 'no-such-rev': unknown Git revision"):
        machine_types_at(project.path, config, "no-such-rev")
    first = git(project.path, "rev-list", "--max-parents=0", "HEAD")
    with pytest.raises(DataError, match=rf"data at revision '{first}': no such folder there"):
        machine_types_at(project.path, config, first)  # before data.dvc was committed

    empty = tmp_path / "empty"
    (empty / "data" / "notes").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"no machine type in {empty / 'data'} at revision 'workspace'"):
        machine_types_at(empty)
    with pytest.raises(DataError, match=rf"data folder not found: {tmp_path / 'absent' / 'data'}"):
        machine_types_at(tmp_path / "absent")
    with pytest.raises(DataError, match="'workspace' needs a local project folder"):
        machine_types_at("https://git.example.invalid/x.git")

    # neither the cache nor the remote holds the data: said so, with the revision
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.path), str(clone))
    (tmp_path / "empty-remote").mkdir()
    (clone / ".dvc" / "config.local").write_text(f'[\'remote "local"\']\n    url = {tmp_path / "empty-remote"}\n')
    with pytest.raises(DataError, match=rf"{clone / 'data'} at revision '{rev_a}': .*neither the DVC cache nor "
                                        "the remote holds this version"):
        machine_types_at(clone, config, rev_a)


def test_the_clip_names_are_dcase_names():
    from asdflow.data.naming import parse_clip_name

    assert all(parse_clip_name(name) is not None for name in CLIP.values())
