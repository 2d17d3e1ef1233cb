"""A real git + DVC project in a temporary folder, its data in the DCASE layout, for tests.

`DcaseDvcProject.commit(...)` adds machine folders (one short wav each), `dvc add`s and
pushes the data to a local-directory remote and commits data.dvc: the revision a
pipeline would read. Imported by the tests that need committed data revisions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from asdflow.config import DataVersionConfig
from asdflow.data.audio import write_audio
from asdflow.data.versioning import ensure_dvc_repo, version_data

CLIP = {"train": "section_00_source_train_normal_0000.wav", "test": "section_00_source_test_normal_0000.wav"}


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


class DcaseDvcProject:
    """A git repository initialised with `dvc init`, with a remote under `root/remote`."""

    def __init__(self, root: Path) -> None:
        self.path = root / "project"
        self.path.mkdir(parents=True)
        self.config = DataVersionConfig(local_remote_url=str(root / "remote"), object_store_url=str(root / "objstore"))
        git(self.path, "init", "-q")
        for key, value in (("user.name", "asdflow test"), ("user.email", "test@asdflow.invalid"),
                           ("commit.gpgsign", "false")):
            git(self.path, "config", key, value)
        (self.path / "README").write_text("a project\n")
        git(self.path, "add", "README")
        git(self.path, "commit", "-q", "-m", "start")
        ensure_dvc_repo(self.path, self.config)

    @property
    def data(self) -> Path:
        return self.path / self.config.data_dir

    def add_machine(self, machine_type: str, split: str = "train") -> None:
        """One 10 ms clip in `<data>/<machine_type>/<split>/`."""
        write_audio(self.data / machine_type / split / CLIP[split], np.zeros(160, dtype=np.float32), 16000)

    def commit(self, *machine_types: str, split: str = "train") -> str:
        """Add these machine folders, version the data (dvc add + push + git commit); the revision."""
        for machine_type in machine_types:
            self.add_machine(machine_type, split)
        return version_data(self.path, commit=True, config=self.config).rev
