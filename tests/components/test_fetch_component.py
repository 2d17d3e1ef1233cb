"""fetch_data through .python_func: the data folder at a revision, as an artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

import components
from asdflow.data.audio import md5_of
from asdflow.errors import DataError
from kfp.dsl import Dataset


def test_fetch_copies_the_workspace_data(settings, fetched):
    source, copy = settings.project / "data", Path(fetched.path)
    copied = sorted(p.relative_to(copy) for p in copy.rglob("*.wav"))
    assert copied == sorted(p.relative_to(source) for p in source.rglob("*.wav")) and copied
    assert all(md5_of(source / name) == md5_of(copy / name) for name in copied[:5])
    assert fetched.metadata == {"project": str(settings.project), "data_version": "workspace"}


def test_fetch_of_a_revision_needs_a_dvc_project(settings, tmp_path):
    data = Dataset(name="data", uri=str(tmp_path / "data"))
    with pytest.raises(DataError, match="not a DVC repository"):
        components.fetch_data.python_func(project=str(settings.project), data_version="v999", data=data,
                                          **settings.kwargs())
