"""Golden checks on the compiled pipeline YAML: what kfp.local ignores and a cluster obeys.

The pipelines are built from a config whose cluster section differs from every
default (images, GPU node pool, Secrets), so a value that was hard-coded instead of
read from the config shows up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from asdflow.cli_pipeline import pipeline_app
from asdflow.config import load_config
from pipelines.compile import compile_pipeline, package_digest
from pipelines.fleet import build_fleet_pipeline
from pipelines.training import build_training_pipeline

CLUSTER = {
    "image_cpu": "registry.example.invalid/asd:7-cpu",
    "image_gpu": "registry.example.invalid/asd:7-cuda",
    "mlflow_secret": "tracking-creds",
    "mlflow_secret_keys": ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"],
    "dvc_secret": "data-remote-creds",
    "dvc_secret_keys": ["DVC_REMOTE_URL", "GOOGLE_APPLICATION_CREDENTIALS"],
    "gpu": {
        "accelerator_type": "nvidia.com/gpu",
        "accelerator_limit": 2,
        "node_selector_key": "example.com/pool",
        "node_selector_value": "a100-pool",
        "toleration_key": "example.com/dedicated",
        "toleration_value": "training",
        "toleration_effect": "NoExecute",
    },
}
TRAIN = "exec-train-detector"
# the default config trains two families (detector.families: twfr, baseline_ae): one chain each
TRAINS = {TRAIN, f"{TRAIN}-2"}
MLFLOW_STEPS = {"exec-register-challenger", "exec-register-challenger-2", "exec-gate-challenger", "exec-promote-champion"}
DATA_STEPS = {"exec-fetch-data"}
EXECUTORS = {"exec-fetch-data", "exec-validate-data", *TRAINS, "exec-score-clips", "exec-score-clips-2",
             "exec-evaluate-scores", "exec-evaluate-scores-2", *MLFLOW_STEPS}


@pytest.fixture(scope="module")
def config():
    return load_config(profile="full", overrides={"cluster": CLUSTER})


def compiled(pipeline, path: Path) -> tuple[dict, dict]:
    compile_pipeline(pipeline, path)
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def all_tasks(spec: dict) -> list[dict]:
    tasks = list(spec["root"]["dag"]["tasks"].values())
    for component in spec["components"].values():
        tasks += list(component.get("dag", {}).get("tasks", {}).values())
    return tasks


@pytest.fixture(scope="module")
def training(config, tmp_path_factory):
    return compiled(build_training_pipeline(config), tmp_path_factory.mktemp("compiled") / "training.yaml")


def test_images_come_from_the_config(training):
    spec, _ = training
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == EXECUTORS
    for name, executor in executors.items():
        expected = CLUSTER["image_gpu"] if name in TRAINS else CLUSTER["image_cpu"]
        assert executor["container"]["image"] == expected, name
        # the image provides asdflow and kfp: nothing is pip-installed when a step starts
        assert "pip install" not in " ".join(executor["container"]["command"]), name


def test_only_training_asks_for_the_gpu_node_pool(training):
    spec, platform = training
    gpu = CLUSTER["gpu"]
    for name, executor in spec["deploymentSpec"]["executors"].items():
        accelerator = executor["container"].get("resources", {}).get("accelerator")
        if name in TRAINS:
            assert accelerator["resourceType"] == gpu["accelerator_type"]
            assert int(accelerator["resourceCount"]) == gpu["accelerator_limit"]
        else:
            assert accelerator is None, name
    for train in TRAINS:
        assert platform[train]["nodeSelector"]["labels"] == {gpu["node_selector_key"]: gpu["node_selector_value"]}
        assert platform[train]["tolerations"] == [{
            "key": gpu["toleration_key"], "operator": "Equal", "value": gpu["toleration_value"],
            "effect": gpu["toleration_effect"],
        }]
    for name, settings in platform.items():
        if name not in TRAINS:
            assert "nodeSelector" not in settings and "tolerations" not in settings, name


def test_secrets_are_mounted_where_needed_and_nowhere_else(training):
    _, platform = training
    for name in EXECUTORS:
        mounted = {s["secretName"]: [(k["secretKey"], k["envVar"]) for k in s["keyToEnv"]]
                   for s in platform.get(name, {}).get("secretAsEnv", [])}
        expected = {}
        if name in MLFLOW_STEPS:
            expected[CLUSTER["mlflow_secret"]] = [(k, k) for k in CLUSTER["mlflow_secret_keys"]]
        if name in DATA_STEPS:
            expected[CLUSTER["dvc_secret"]] = [(k, k) for k in CLUSTER["dvc_secret_keys"]]
        assert mounted == expected, name


def test_parameters_caching_and_the_gate_condition(training, config):
    spec, _ = training
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert "defaultValue" not in inputs["machine_type"]
    assert inputs["data_version"]["defaultValue"] == "HEAD"
    assert inputs["config_profile"]["defaultValue"] == config.profile == "full"
    assert set(spec["root"]["outputDefinitions"]["parameters"]) == {"verdict", "challenger_version"}
    tasks = all_tasks(spec)
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks), "registry steps must never be cached"
    conditions = [t["triggerPolicy"]["condition"] for t in tasks if t.get("triggerPolicy", {}).get("condition")]
    assert conditions == ["inputs.parameter_values['pipelinechannel--gate-challenger-Output'] == 'promote'"]
    promote = next(t for t in tasks if t["componentRef"]["name"] == "comp-promote-champion")
    assert promote["inputs"]["artifacts"]["decision"]


def test_each_component_calls_its_asdflow_function(training):
    spec, _ = training
    calls = {
        "exec-fetch-data": "materialize_data(",
        "exec-validate-data": "validate_stage(",
        TRAIN: "train_detector(",
        "exec-score-clips": "score_clips(",
        "exec-evaluate-scores": "evaluate_clips(",
        "exec-register-challenger": "register_stage(",
        "exec-gate-challenger": "run_gate(",
        "exec-promote-champion": "apply_decision_file(",
    }
    for name, call in calls.items():
        assert call in "\n".join(spec["deploymentSpec"]["executors"][name]["container"]["command"]), name


def test_without_gpu_training_stays_on_cpu(config, tmp_path):
    spec, platform = compiled(build_training_pipeline(config, gpu=False), tmp_path / "cpu.yaml")
    train = spec["deploymentSpec"]["executors"][TRAIN]["container"]
    assert train["image"] == CLUSTER["image_cpu"] and "resources" not in train
    assert "nodeSelector" not in platform.get(TRAIN, {}) and "tolerations" not in platform.get(TRAIN, {})


def test_fleet_fans_out_over_machine_types_with_the_same_settings(config, tmp_path):
    spec, platform = compiled(build_fleet_pipeline(config, parallelism=2), tmp_path / "fleet.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    # fetched and validated once, then one branch per machine type that validation found
    (loop_name,) = [n for n, t in tasks.items() if "parameterIterator" in t]
    loop = tasks[loop_name]
    assert sorted(n for n in tasks if n != loop_name) == ["fetch-data", "validate-data"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--validate-data-Output"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    assert tasks["validate-data"]["inputs"]["parameters"]["isolate"]["runtimeValue"]["constant"] is True
    defaults = spec["root"]["inputDefinitions"]["parameters"]["machine_types"]
    assert defaults["defaultValue"] == "", "every machine type the data holds"
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert "fetch-data" not in inner and "validate-data" not in inner and "train-detector" in inner
    assert platform[TRAIN]["nodeSelector"]["labels"] == {
        CLUSTER["gpu"]["node_selector_key"]: CLUSTER["gpu"]["node_selector_value"]}
    assert set(spec["deploymentSpec"]["executors"]) == EXECUTORS


def test_project_config_compiles_its_own_gpu_pool(tmp_path):
    project = load_config(profile="full")
    _, platform = compiled(build_training_pipeline(project), tmp_path / "project.yaml")
    gpu = project.cluster.gpu
    assert platform[TRAIN]["nodeSelector"]["labels"] == {gpu.node_selector_key: gpu.node_selector_value}
    assert platform[TRAIN]["tolerations"][0]["key"] == gpu.toleration_key


def test_cli_compile_is_deterministic(tmp_path):
    runner = CliRunner()
    paths = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path in paths:
        result = runner.invoke(pipeline_app, ["compile", "--out", str(path), "--profile", "full"])
        assert result.exit_code == 0, result.output
        assert package_digest(path)[:16] in result.output
    assert paths[0].read_bytes() == paths[1].read_bytes(), "the schedule fingerprint relies on stable packages"
    result = runner.invoke(pipeline_app, ["compile", "--out", str(tmp_path / "x.yaml"), "--pipeline", "nightly"])
    assert "nightly" in str(result.exception)
