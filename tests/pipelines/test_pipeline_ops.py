"""asdflow.pipeline_ops: config as pipeline parameters, and the schedule reconciliation plan."""

from __future__ import annotations

import pytest

from asdflow.errors import ConfigError
from asdflow.pipeline_ops import (
    MANAGED_PREFIX,
    DesiredRecurringRun,
    ExistingRecurringRun,
    cluster_project,
    component_config,
    decode_overrides,
    desired_recurring_runs,
    encode_overrides,
    ensure_pipelines_importable,
    plan_schedules,
    project_root,
)
from asdflow.registry.tracking import resolve_tracking
from asdflow.schedules import RecurringSchedules, ScheduleSpec, SchedulesFile


def test_overrides_round_trip_and_rebuild_the_config():
    overrides = {"gate": {"min_improvement": 0.25}, "detector": {"baseline_ae": {"epochs": 2}}}
    text = encode_overrides(overrides)
    assert decode_overrides(text) == overrides
    assert encode_overrides(overrides) == encode_overrides(dict(reversed(list(overrides.items()))))
    config = component_config("tiny", text)
    assert config.profile == "tiny" and config.gate.min_improvement == 0.25
    assert config.detector.baseline_ae.epochs == 2
    assert config.synth.n_train_source == 8  # the tiny profile's value survives
    assert decode_overrides("") == {} and decode_overrides("gate: {absolute_floor: 0.6}") == {
        "gate": {"absolute_floor": 0.6}}


@pytest.mark.parametrize("text, fragment", [("[1, 2]", "must be a mapping"), ("{a: [", "neither JSON nor YAML"),
                                            ('{"gate": {"metrik": 1}}', "gate.metrik")])
def test_bad_overrides_are_config_errors(text, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        component_config("tiny", text)


def test_cluster_tracking_uri_comes_from_the_secret_unless_overridden(monkeypatch):
    from asdflow import config as config_module

    # the variable as the pod started with it (read once by asdflow.config; MLflow rewrites it later)
    monkeypatch.setattr(config_module, "_PROCESS_ENVIRONMENT", {})
    assert component_config("tiny", "{}").tracking.tracking_uri == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setattr(config_module, "_PROCESS_ENVIRONMENT", {"MLFLOW_TRACKING_URI": "http://mlflow.asdflow.svc:5000"})
    cluster = component_config("full", "{}")
    assert cluster.tracking.tracking_uri == "http://mlflow.asdflow.svc:5000"
    assert resolve_tracking(cluster.tracking).artifact_location == ""  # the server decides where artifacts go
    local = component_config("tiny", encode_overrides({"tracking": {"tracking_uri": "sqlite:////tmp/x.db"}}))
    assert local.tracking.tracking_uri == "sqlite:////tmp/x.db"


def desired(name="fan", cron="0 0 2 * * MON", enabled=True, **parameters) -> DesiredRecurringRun:
    return DesiredRecurringRun(
        name=f"{MANAGED_PREFIX}{name}", machine_type=name, cron=cron, max_concurrency=1, no_catchup=True,
        enabled=enabled, parameters={"machine_type": name, **parameters}, service_account="runner",
        pipeline_digest="d1",
    )


def existing_of(want: DesiredRecurringRun, run_id: str = "r1", **changes) -> ExistingRecurringRun:
    fields = dict(id=run_id, name=want.name, description=want.description(), cron=want.cron,
                  max_concurrency=want.max_concurrency, no_catchup=want.no_catchup, enabled=True)
    fields.update(changes)
    return ExistingRecurringRun(**fields)


def actions(plan) -> list[tuple[str, str]]:
    return [(a.action, a.name.removeprefix(MANAGED_PREFIX)) for a in plan.actions]


def test_plan_creates_keeps_and_deletes():
    fan, pump = desired("fan"), desired("pump")
    plan = plan_schedules([fan, pump], [existing_of(fan), ExistingRecurringRun(id="x", name=f"{MANAGED_PREFIX}old"),
                                        ExistingRecurringRun(id="y", name="not-managed")])
    assert actions(plan) == [("keep", "fan"), ("create", "pump"), ("delete", "old")]
    assert [a.action for a in plan.changes] == ["create", "delete"]


def test_plan_recreates_on_any_change_of_definition():
    fan = desired("fan")
    for changed in (desired("fan", cron="0 0 3 * * MON"), desired("fan", data_version="v2"),
                    fan.model_copy(update={"pipeline_digest": "d2"}), fan.model_copy(update={"service_account": "x"})):
        plan = plan_schedules([changed], [existing_of(fan)])
        assert actions(plan) == [("recreate", "fan")], changed
        assert plan.actions[0].existing_id == "r1"
    # one not made by asdflow (no fingerprint) is replaced as well
    assert actions(plan_schedules([fan], [existing_of(fan, description="hand made")])) == [("recreate", "fan")]


def test_plan_enables_disables_and_never_creates_a_disabled_schedule():
    fan = desired("fan")
    off = desired("fan", enabled=False)
    assert actions(plan_schedules([fan], [existing_of(fan, enabled=False)])) == [("enable", "fan")]
    assert actions(plan_schedules([off], [existing_of(fan)])) == [("disable", "fan")]
    assert actions(plan_schedules([off], [existing_of(fan, enabled=False)])) == [("keep", "fan")]
    assert actions(plan_schedules([off], [])) == [("absent", "fan")]
    assert plan_schedules([off], []).changes == []


def test_plan_removes_duplicates_keeping_the_up_to_date_one():
    fan = desired("fan")
    stale = existing_of(fan, run_id="a", cron="0 0 9 * * *")
    good = existing_of(fan, run_id="b")
    plan = plan_schedules([fan], [stale, good])
    assert [(a.action, a.existing_id) for a in plan.actions] == [("delete", "a"), ("keep", "b")]


def test_desired_runs_from_expanded_schedules():
    schedules = RecurringSchedules(schedules=[
        ScheduleSpec(machine_type="fan", cron="0 0 2 * * MON"),
        ScheduleSpec(machine_type="valve", cron="0 0 3 1 * *", data_revision="pinned:v1", profile="demo",
                     enabled=False),
    ])
    fan, valve = desired_recurring_runs(schedules, {"project": "git@x:y.git", "machine_type": "ignored"}, "d", "sa")
    assert fan.name == f"{MANAGED_PREFIX}fan" and fan.enabled and not valve.enabled
    assert fan.parameters == {"project": "git@x:y.git", "machine_type": "fan", "config_profile": "full",
                              "data_version": "HEAD"}
    assert valve.parameters["data_version"] == "v1" and valve.parameters["config_profile"] == "demo"
    assert (fan.max_concurrency, fan.no_catchup) == (1, True)
    assert fan.fingerprint() != valve.fingerprint()
    assert fan.fingerprint() == fan.model_copy(update={"enabled": False}).fingerprint()


def test_plan_narrowed_to_some_machine_types_leaves_the_others_alone():
    fan, pump = desired("fan"), desired("pump")
    existing = [existing_of(fan), existing_of(pump, run_id="r2")]
    assert actions(plan_schedules([fan], existing)) == [("keep", "fan"), ("delete", "pump")]
    assert actions(plan_schedules([fan], existing, delete_unlisted=False)) == [("keep", "fan")]


def test_one_rule_expanded_over_the_data_reconciles_idempotently():
    """The schedules file's rule + an override -> the runs; applying the plan, then planning again, keeps all."""
    schedules = SchedulesFile.model_validate({
        "rule": {"cron": "0 0 2 * * MON", "stagger_minutes": 30},
        "overrides": {"valve": {"data_revision": "pinned:v1", "cron": "0 0 3 1 * *"}, "ToyCar": {"enabled": False}},
    })

    def runs_for(machine_types):
        return desired_recurring_runs(schedules.expand(machine_types), {"project": "p"}, "d", "sa")

    runs = {r.machine_type: r for r in runs_for(["fan", "valve", "bearing", "ToyCar"])}
    assert {m: (r.cron, r.parameters["data_version"], r.enabled) for m, r in runs.items()} == {
        "ToyCar": ("0 0 2 * * MON", "HEAD", False), "bearing": ("0 30 2 * * MON", "HEAD", True),
        "fan": ("0 0 3 * * MON", "HEAD", True), "valve": ("0 0 3 1 * *", "v1", True)}

    on_server = [existing_of(r, run_id=r.machine_type) for r in runs.values() if r.enabled]
    plan = plan_schedules(list(runs.values()), on_server)
    assert plan.changes == [] and actions(plan) == [("absent", "ToyCar"), ("keep", "bearing"), ("keep", "fan"),
                                                    ("keep", "valve")]
    # bearing leaves the data: its run is deleted and fan moves up into its slot (the stagger closes the gap)
    plan = plan_schedules(runs_for(["fan", "valve", "ToyCar"]), on_server)
    assert actions(plan) == [("absent", "ToyCar"), ("recreate", "fan"), ("keep", "valve"), ("delete", "bearing")]
    assert plan.actions[1].reason == "cron '0 0 3 * * MON' -> '0 30 2 * * MON'"


def test_cluster_project_and_the_checkout():
    import subprocess

    assert cluster_project("https://git.example.invalid/x.git") == "https://git.example.invalid/x.git"
    origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=project_root(),
                            capture_output=True, text=True, check=False).stdout.strip()
    assert cluster_project(None) == (origin or ".")
    assert ensure_pipelines_importable() == project_root()
    assert (project_root() / "pipelines" / "training.py").is_file()


def test_local_runs_share_one_absolute_store(tmp_path, monkeypatch):
    from asdflow.config import load_config
    from asdflow.pipeline_ops import local_tracking_overrides

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = local_tracking_overrides(load_config(profile="tiny"), tmp_path)["tracking"]
    assert tracking == {"tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
                        "artifact_location": str(tmp_path / "mlruns" / "artifacts")}
