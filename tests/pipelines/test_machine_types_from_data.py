"""`asdflow pipeline run --local | submit`: without --machine-type, every machine type in the data.

The data is a real git + DVC project (revision A: fan, valve; revision B adds bearing);
the local run itself is replaced by a recorder (tests/pipelines/test_local_runs.py runs
it for real), the submissions go to the recording KFP server of conftest.py.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from asdflow.cli_pipeline import pipeline_app
from asdflow.errors import ConfigError
from tests.data.dvc_project import DcaseDvcProject

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git absent")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[DcaseDvcProject, str, str]:
    project = DcaseDvcProject(tmp_path_factory.mktemp("pipeline_data"))
    rev_a = project.commit("fan", "valve")
    rev_b = project.commit("bearing")
    return project, rev_a, rev_b


@pytest.fixture()
def local_runs(monkeypatch) -> list[dict]:
    """What `run --local` asks pipelines.local.run_locally for, instead of running it."""
    import pipelines.local

    calls: list[dict] = []

    def record(config, machine_types, project, work_dir, data_version, fleet=False):
        calls.append({"machine_types": list(machine_types), "data_version": data_version, "fleet": fleet})
        return SimpleNamespace(results=[], runs=[], failures={})

    monkeypatch.setattr(pipelines.local, "run_locally", record)
    return calls


def run(*args: str):
    return CliRunner().invoke(pipeline_app, ["run", "--local", "--profile", "tiny", *args])


def test_local_run_defaults_to_the_machine_types_of_the_data(data, local_runs, tmp_path, monkeypatch):
    project, rev_a, rev_b = data
    monkeypatch.chdir(tmp_path)  # the MLflow store of the summary line lands here
    result = run("--project", str(project.path))
    assert result.exit_code == 0, result.output
    assert f"machine types from the data at {rev_b}: bearing, fan, valve" in result.output
    assert local_runs[-1] == {"machine_types": ["bearing", "fan", "valve"], "data_version": rev_b, "fleet": False}

    result = run("--project", str(project.path), "--data-version", rev_a, "--pipeline", "fleet")
    assert result.exit_code == 0, result.output
    assert f"machine types from the data at {rev_a}: fan, valve" in result.output
    assert local_runs[-1] == {"machine_types": ["fan", "valve"], "data_version": rev_a, "fleet": True}


def test_local_run_machine_type_narrows_and_must_be_in_the_data(data, local_runs, tmp_path, monkeypatch):
    project, rev_a, _ = data
    monkeypatch.chdir(tmp_path)
    result = run("--project", str(project.path), "-m", "valve", "-m", "valve")
    assert result.exit_code == 0, result.output
    assert local_runs[-1]["machine_types"] == ["valve"]
    assert "machine types from --machine-type, all in the data at" in result.output

    result = run("--project", str(project.path), "--data-version", rev_a, "-m", "bearing")
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"--machine-type bearing: not in the data at {rev_a} (found: fan, valve)"
    assert len(local_runs) == 1, "nothing ran"


def test_local_run_of_a_plain_folder_reads_the_workspace(local_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "slider" / "train").mkdir(parents=True)
    result = run("--project", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "machine types from the data at workspace: slider" in result.output
    assert local_runs == [{"machine_types": ["slider"], "data_version": "workspace", "fleet": False}]


def test_submit_defaults_to_the_machine_types_of_the_data(data, kfp_server):
    project, rev_a, _ = data
    result = CliRunner().invoke(pipeline_app, ["submit", "--host", kfp_server.url, "--project", str(project.path)])
    assert result.exit_code == 0, result.output
    assert "machine types from the data at HEAD: bearing, fan, valve" in result.output
    runs = [c.body["runtime_config"]["parameters"] for c in kfp_server.mutations() if c.path.endswith("/runs")]
    assert [(r["machine_type"], r["data_version"]) for r in runs] == [("bearing", "HEAD"), ("fan", "HEAD"),
                                                                      ("valve", "HEAD")]

    kfp_server.forget_calls()
    result = CliRunner().invoke(pipeline_app, ["submit", "--host", kfp_server.url, "--project", str(project.path),
                                               "--data-version", rev_a, "--pipeline", "fleet"])
    assert result.exit_code == 0, result.output
    assert f"machine types from the data at {rev_a}: every one the fleet pipeline finds" in result.output
    (fleet,) = [c.body["runtime_config"]["parameters"] for c in kfp_server.mutations() if c.path.endswith("/runs")]
    assert fleet["machine_types"] == "" and fleet["data_version"] == rev_a  # "": the fleet lists the data itself
