"""The compiled training pipeline with the separation steps: present and GPU-placed when the config
enables separation, absent when it does not, and the detector steps fed as `separation.use` says."""

from __future__ import annotations

import pytest

from asdflow.config import load_config
from pipelines.training import build_training_pipeline
from tests.pipelines.test_compile import CLUSTER, compiled

SEP_TRAIN = "exec-separation-train"
DENOISE = "exec-denoise-data"
DETECTOR_STEPS = ("train-detector", "score-clips", "gate-challenger")


def build(tmp_path, enabled: bool, use: str = "both", gpu: bool = True):
    config = load_config(profile="full", overrides={"cluster": CLUSTER,
                                                     "separation": {"enabled": enabled, "use": use}})
    return compiled(build_training_pipeline(config, gpu=gpu), tmp_path / f"training-{enabled}-{use}-{gpu}.yaml")


def tasks(spec: dict) -> dict:
    return spec["root"]["dag"]["tasks"]


def producer(task: dict, name: str) -> tuple[str, str]:
    ref = task["inputs"]["artifacts"][name]["taskOutputArtifact"]
    return ref["producerTask"], ref["outputArtifactKey"]


def test_enabled_separation_trains_on_the_gpu_pool_and_denoises(tmp_path):
    spec, platform = build(tmp_path, enabled=True)
    executors = spec["deploymentSpec"]["executors"]
    assert {SEP_TRAIN, DENOISE} <= set(executors)
    gpu = CLUSTER["gpu"]
    accelerator = executors[SEP_TRAIN]["container"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == gpu["accelerator_type"]
    assert int(accelerator["resourceCount"]) == gpu["accelerator_limit"]
    assert executors[SEP_TRAIN]["container"]["image"] == CLUSTER["image_gpu"]
    assert platform[SEP_TRAIN]["nodeSelector"]["labels"] == {gpu["node_selector_key"]: gpu["node_selector_value"]}
    assert platform[SEP_TRAIN]["tolerations"] == [{
        "key": gpu["toleration_key"], "operator": "Equal", "value": gpu["toleration_value"],
        "effect": gpu["toleration_effect"]}]
    # it registers sep-<mt>: the MLflow Secret, and nothing of the GPU pool on the denoise step
    assert [s["secretName"] for s in platform[SEP_TRAIN]["secretAsEnv"]] == [CLUSTER["mlflow_secret"]]
    assert executors[DENOISE]["container"]["image"] == CLUSTER["image_cpu"]
    assert "resources" not in executors[DENOISE]["container"] and DENOISE not in platform
    command = "\n".join(executors[SEP_TRAIN]["container"]["command"])
    assert "separation_train_stage(" in command
    assert "denoise_stage(" in "\n".join(executors[DENOISE]["container"]["command"])
    dag = tasks(spec)
    assert producer(dag["separation-train"], "manifest") == ("validate-data", "manifest")
    assert producer(dag["denoise-data"], "separator") == ("separation-train", "separator")
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in dag.values())


@pytest.mark.parametrize("use", ["original", "separated", "both"])
def test_detector_steps_read_what_separation_use_says(tmp_path, use):
    spec, _ = build(tmp_path, enabled=True, use=use)
    dag = tasks(spec)
    expected = {"original": ("validate-data", "manifest"), "both": ("validate-data", "manifest"),
                "separated": ("denoise-data", "separated")}[use]
    data = {"original": ("fetch-data", "data"), "both": ("fetch-data", "data"),
            "separated": ("denoise-data", "separated")}[use]
    for name in DETECTOR_STEPS:
        if name == "gate-challenger":  # the gate scores the original clips through each model's whole path
            assert producer(dag[name], "manifest") == ("validate-data", "manifest"), name
            assert producer(dag[name], "data") == ("fetch-data", "data"), name
            continue
        assert producer(dag[name], "manifest") == expected, name
        assert producer(dag[name], "data") == data, name
    # a detector trained on separated clips is registered with its separator (served = gated)
    separator = dag["register-challenger"]["inputs"]["artifacts"].get("separator")
    assert (producer(dag["register-challenger"], "separator") == ("separation-train", "separator")
            if use == "separated" else separator is None)
    extra = dag["train-detector"]["inputs"]["artifacts"].get("extra_train")
    if use == "both":
        assert producer(dag["train-detector"], "extra_train") == ("denoise-data", "separated")
    else:
        assert extra is None


def test_disabled_separation_leaves_no_trace(tmp_path):
    spec, platform = build(tmp_path, enabled=False)
    assert not {SEP_TRAIN, DENOISE} & set(spec["deploymentSpec"]["executors"])
    assert not {SEP_TRAIN, DENOISE} & set(platform)
    assert not any("separation" in name or "denoise" in name for name in tasks(spec))
    assert "extra_train" not in tasks(spec)["train-detector"]["inputs"].get("artifacts", {})
    assert producer(tasks(spec)["train-detector"], "manifest") == ("validate-data", "manifest")


def test_without_gpu_the_separator_trains_on_cpu(tmp_path):
    spec, platform = build(tmp_path, enabled=True, gpu=False)
    container = spec["deploymentSpec"]["executors"][SEP_TRAIN]["container"]
    assert container["image"] == CLUSTER["image_cpu"] and "resources" not in container
    assert "nodeSelector" not in platform.get(SEP_TRAIN, {}) and "tolerations" not in platform.get(SEP_TRAIN, {})
