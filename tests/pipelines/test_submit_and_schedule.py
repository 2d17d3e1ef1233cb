"""`asdflow pipeline submit|schedule` against a recording KFP API server on 127.0.0.1 (conftest.py).

What is checked is what a cluster would receive: the calls, their bodies (pipeline
spec, parameters, service account, cron, concurrency, catch-up, mode), and that
reconciling twice changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from asdflow.cli_pipeline import pipeline_app
from asdflow.config import load_config
from asdflow.errors import ConfigError, DataError
from asdflow.pipeline_ops import MANAGED_PREFIX, decode_overrides
from tests.data.dvc_project import DcaseDvcProject, git

GIT_PROJECT = "https://git.example.invalid/asdflow.git"


@pytest.fixture(scope="module")
def data_project(tmp_path_factory) -> DcaseDvcProject:
    """A git + DVC project whose committed data holds fan, pump and valve (schedules read it)."""
    project = DcaseDvcProject(tmp_path_factory.mktemp("schedules_data"))
    project.commit("fan", "pump", "valve")
    return project


def invoke(*args: str):
    result = CliRunner().invoke(pipeline_app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def write_schedules(path: Path, cron: str, overrides: dict[str, dict] | None = None, **rule) -> Path:
    rule = {"cron": cron, "stagger_minutes": 30, "data_revision": "latest", "profile": "full", "enabled": True,
            "max_concurrency": 1, "no_catchup": True, **rule}
    path.write_text(yaml.safe_dump({"rule": rule, "overrides": overrides or {}}, sort_keys=False))
    return path


def test_submit_creates_the_experiment_once_and_one_run_per_machine_type(kfp_server):
    config = load_config()
    invoke("submit", "--host", kfp_server.url, "-m", "fan", "-m", "pump", "--project", GIT_PROJECT,
           "--data-version", "v7")
    creates = [c for c in kfp_server.mutations() if c.path.endswith("/experiments")]
    assert [c.body["display_name"] for c in creates] == ["asdflow"]
    runs = [c.body for c in kfp_server.mutations() if c.path.endswith("/runs")]
    assert [r["runtime_config"]["parameters"]["machine_type"] for r in runs] == ["fan", "pump"]
    experiment_id = next(iter(kfp_server.experiments))
    for run in runs:
        assert run["experiment_id"] == experiment_id
        assert run["service_account"] == config.cluster.service_account
        assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "asdflow-training"
        # the cluster settings travel with the spec: the training step lands on the GPU pool
        train = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
            "exec-train-detector"]
        assert train["nodeSelector"]["labels"] == {config.cluster.gpu.node_selector_key:
                                                   config.cluster.gpu.node_selector_value}
        parameters = run["runtime_config"]["parameters"]
        assert parameters["project"] == GIT_PROJECT and parameters["data_version"] == "v7"
        assert parameters["config_profile"] == config.profile
        assert decode_overrides(parameters["config_overrides"]) == {}

    kfp_server.forget_calls()
    invoke("submit", "--host", kfp_server.url, "--pipeline", "fleet", "-m", "fan", "-m", "pump",
           "--project", GIT_PROJECT)
    assert not [c for c in kfp_server.mutations() if c.path.endswith("/experiments")], "the experiment is reused"
    (fleet,) = [c.body for c in kfp_server.mutations() if c.path.endswith("/runs")]
    assert fleet["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "asdflow-fleet"
    assert fleet["runtime_config"]["parameters"]["machine_types"] == "fan,pump"
    assert fleet["runtime_config"]["parameters"]["data_version"] == "HEAD"


def test_submit_passes_the_users_config_as_overrides(kfp_server, tmp_path):
    user = tmp_path / "cluster.yaml"
    user.write_text("gate:\n  min_improvement: 0.02\ncluster:\n  service_account: other-runner\n")
    invoke("submit", "--host", kfp_server.url, "-m", "fan", "--config", str(user), "--profile", "full")
    (run,) = [c.body for c in kfp_server.mutations() if c.path.endswith("/runs")]
    assert run["service_account"] == "other-runner"
    assert run["runtime_config"]["parameters"]["config_profile"] == "full"
    assert decode_overrides(run["runtime_config"]["parameters"]["config_overrides"]) == {
        "gate": {"min_improvement": 0.02}, "cluster": {"service_account": "other-runner"}}


def test_schedule_reconciles_idempotently(kfp_server, tmp_path):
    data = DcaseDvcProject(tmp_path / "data")  # this test changes its data
    data.commit("fan", "pump", "valve")
    project = str(data.path)
    experiment_id = kfp_server.seed_experiment("asdflow")
    unmanaged = kfp_server.seed_recurring_run(experiment_id, "someone-elses-nightly")
    stale = kfp_server.seed_recurring_run(experiment_id, f"{MANAGED_PREFIX}old-machine")
    other_experiment = kfp_server.seed_experiment("not-ours")
    elsewhere = kfp_server.seed_recurring_run(other_experiment, f"{MANAGED_PREFIX}fan")
    # one rule: fan 02:00, pump 02:30 (staggered, on pinned data), valve its own cron but disabled
    schedules = write_schedules(tmp_path / "schedules.yaml", "0 0 2 * * MON", {
        "pump": {"data_revision": "pinned:v3"},
        "valve": {"cron": "0 0 3 1 * *", "enabled": False},
    })
    config = load_config()

    # dry run: a plan, no change on the server
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project).output
    assert "machine types from the data at HEAD: fan, pump, valve" in out
    assert kfp_server.mutations() == []
    planned = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.startswith(MANAGED_PREFIX)}
    assert planned == {f"{MANAGED_PREFIX}fan": "create", f"{MANAGED_PREFIX}pump": "create",
                       f"{MANAGED_PREFIX}valve": "absent", f"{MANAGED_PREFIX}old-machine": "delete"}
    assert "3 change(s) planned" in out

    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project,
                 "--apply").output
    assert "applied 3 change(s)" in out
    runs = kfp_server.by_name()
    assert set(runs) == {"someone-elses-nightly", f"{MANAGED_PREFIX}fan", f"{MANAGED_PREFIX}pump"}
    assert unmanaged in kfp_server.recurring and stale not in kfp_server.recurring
    assert elsewhere in kfp_server.recurring, "runs of other experiments are not ours to touch"
    fan, pump = runs[f"{MANAGED_PREFIX}fan"], runs[f"{MANAGED_PREFIX}pump"]
    assert fan["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * MON"
    assert pump["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * MON"
    for run in (fan, pump):
        assert run["max_concurrency"] == "1" and run["no_catchup"] is True and run["mode"] == "ENABLE"
        assert run["service_account"] == config.cluster.service_account
        assert run["experiment_id"] == experiment_id
        assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "asdflow-training"
        assert run["runtime_config"]["parameters"]["config_profile"] == "full"
        assert run["runtime_config"]["parameters"]["project"] == project
    assert fan["runtime_config"]["parameters"]["data_version"] == "HEAD"  # latest: the newest committed data
    assert pump["runtime_config"]["parameters"]["data_version"] == "v3"

    # the second apply changes nothing (listing pages through 4 runs, 2 at a time)
    kfp_server.forget_calls()
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project,
                 "--apply").output
    assert kfp_server.mutations() == [] and "nothing to change" in out
    assert sum(1 for c in kfp_server.calls if c.path.endswith("/recurringruns") and c.method == "GET") >= 2

    # a changed cron is re-created, a disabled schedule disabled, both once
    write_schedules(schedules, "0 0 4 * * MON", {"pump": {"data_revision": "pinned:v3", "enabled": False},
                                                 "valve": {"enabled": False}})
    kfp_server.forget_calls()
    invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project, "--apply")
    verbs = sorted((c.method, c.path.rsplit("/", 1)[-1].partition(":")[2] or c.path.rsplit("/", 1)[-1])
                   for c in kfp_server.mutations())
    assert verbs == [("DELETE", fan["recurring_run_id"]), ("POST", "disable"), ("POST", "recurringruns")]
    runs = kfp_server.by_name()
    assert runs[f"{MANAGED_PREFIX}fan"]["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * MON"
    assert runs[f"{MANAGED_PREFIX}pump"]["mode"] == "DISABLE"
    kfp_server.forget_calls()
    invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project, "--apply")
    assert kfp_server.mutations() == []

    # a new pipeline parameter (another project: a fresh clone, its data read from the DVC remote)
    # re-creates the enabled run only
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", project, str(clone))
    kfp_server.forget_calls()
    invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", str(clone), "--apply")
    assert [c.method for c in kfp_server.mutations()] == ["DELETE", "POST"]
    assert kfp_server.by_name()[f"{MANAGED_PREFIX}fan"]["runtime_config"]["parameters"]["project"] == str(clone)

    # pump leaves the data: its run is deleted; a machine type added gets one (staggered after fan)
    shutil.rmtree(data.data / "pump")
    data.commit("bearing")
    kfp_server.forget_calls()
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project,
                 "--apply").output
    assert "machine types from the data at HEAD: bearing, fan, valve" in out
    runs = kfp_server.by_name()
    assert set(runs) == {"someone-elses-nightly", f"{MANAGED_PREFIX}bearing", f"{MANAGED_PREFIX}fan"}
    assert runs[f"{MANAGED_PREFIX}bearing"]["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * MON"
    assert runs[f"{MANAGED_PREFIX}fan"]["trigger"]["cron_schedule"]["cron"] == "0 30 4 * * MON"
    kfp_server.forget_calls()
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project,
                 "--apply").output
    assert kfp_server.mutations() == [] and "nothing to change" in out


def test_schedule_narrowed_to_one_machine_type_leaves_the_others_alone(kfp_server, tmp_path, data_project):
    project = str(data_project.path)
    schedules = write_schedules(tmp_path / "schedules.yaml", "0 0 2 * * MON", {"nope": {"enabled": False}})
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project,
                 "--apply").output
    assert "the override for 'nope' is unused: no such machine type in the data at HEAD" in out
    before = kfp_server.by_name()
    assert set(before) == {f"{MANAGED_PREFIX}{m}" for m in ("fan", "pump", "valve")}

    write_schedules(schedules, "0 0 5 * * MON")  # every time moves, but only pump is reconciled
    kfp_server.forget_calls()
    invoke("schedule", "--host", kfp_server.url, "--file", str(schedules), "--project", project, "-m", "pump",
           "--apply")
    assert [c.method for c in kfp_server.mutations()] == ["DELETE", "POST"]
    after = kfp_server.by_name()
    assert after[f"{MANAGED_PREFIX}pump"]["trigger"]["cron_schedule"]["cron"] == "0 30 5 * * MON"  # its slot kept
    for other in ("fan", "valve"):
        assert after[f"{MANAGED_PREFIX}{other}"] == before[f"{MANAGED_PREFIX}{other}"]

    result = CliRunner().invoke(pipeline_app, ["schedule", "--host", kfp_server.url, "--file", str(schedules),
                                               "--project", project, "-m", "bearing"])
    assert isinstance(result.exception, ConfigError)
    assert "--machine-type bearing: not in the data (found: fan, pump, valve)" in str(result.exception)


def test_schedule_refuses_an_invalid_cron_before_reaching_the_server(kfp_server, tmp_path):
    schedules = write_schedules(tmp_path / "schedules.yaml", "0 2 * * *")
    result = CliRunner().invoke(pipeline_app, ["schedule", "--host", kfp_server.url, "--file", str(schedules),
                                               "--apply"])
    assert isinstance(result.exception, ConfigError)
    assert "lacks the leading seconds field" in str(result.exception)
    assert kfp_server.calls == []


def test_project_schedules_file_plans_against_an_empty_server(kfp_server, data_project):
    root = Path(__file__).resolve().parents[2]
    out = invoke("schedule", "--host", kfp_server.url, "--file", str(root / "infra" / "schedules.yaml"),
                 "--project", str(data_project.path)).output
    planned = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(MANAGED_PREFIX)}
    assert planned == {f"{MANAGED_PREFIX}{m}": "create" for m in ("fan", "pump", "valve")}
    assert "3 change(s) planned" in out
    assert kfp_server.mutations() == []


def test_schedule_says_when_the_data_cannot_be_listed(kfp_server, tmp_path):
    schedules = write_schedules(tmp_path / "schedules.yaml", "0 0 2 * * MON")
    result = CliRunner().invoke(pipeline_app, ["schedule", "--host", kfp_server.url, "--file", str(schedules),
                                               "--project", str(tmp_path)])
    assert isinstance(result.exception, DataError)
    assert f"{tmp_path / 'data'} at revision 'HEAD': {tmp_path} is not a DVC repository" in str(result.exception)
    assert kfp_server.calls == []


def test_server_errors_are_one_line(kfp_server, tmp_path, monkeypatch):
    from pipelines.compile import compile_pipeline
    from pipelines.remote import PipelineServerError, connect, submit_run
    from pipelines.training import build_training_pipeline

    package = compile_pipeline(build_training_pipeline(load_config()), tmp_path / "training.yaml")
    monkeypatch.setattr(kfp_server, "_create_run", lambda body: (400, {"error": "invalid pipeline spec"}))
    with pytest.raises(PipelineServerError, match="answered 400.*invalid pipeline spec"):
        submit_run(kfp_server.url, package, {"machine_type": "fan"}, experiment="asdflow", run_name="r",
                   service_account=None)
    with pytest.raises(PipelineServerError, match="cannot reach Kubeflow Pipelines at http://127.0.0.1:9"):
        connect("http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(PipelineServerError, match="http://... or https://"):
        connect("127.0.0.1:8888")
